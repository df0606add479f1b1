# syntax=docker/dockerfile:1
# kubepilot generator: diffusers image generation, one-shot (a Job per GenerationJob) or as a
# server executing GenerationJobs for a ServiceInstance. GPU. Build from the repository root:
#   docker build -f images/generator.Dockerfile -t kubepilot/generator:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/kubepilot/bin:$PATH \
    HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/kubepilot
# torch==2.13.0 comes pinned through the ml extra; its PyPI Linux wheel pulls the CUDA libraries as nvidia-* wheels.
RUN --mount=type=bind,target=/tmp/src,rw \
    pip install --no-compile "/tmp/src[generator]"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin kubepilot
USER 10001
WORKDIR /home/kubepilot
# Server mode serves the executor API here; a one-shot Job serves nothing and Kubernetes ignores this check.
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/v1/health', timeout=4)"]
ENTRYPOINT ["python", "-m", "kubepilot_workers.generator"]
