# syntax=docker/dockerfile:1
# kubepilot trainer: the built-in LoRA trainer (torch + peft, DeepSpeed ZeRO for several GPUs or
# pods). A Job, GPU, no server. The devel base carries nvcc, which DeepSpeed needs to JIT-build its
# fused ops at run time. Build from the repository root:
#   docker build -f images/trainer.Dockerfile -t kubepilot/trainer:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/kubepilot/bin:$PATH \
    DS_BUILD_OPS=0 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/kubepilot
RUN --mount=type=bind,target=/tmp/src,rw \
    pip install --no-compile "/tmp/src[trainer]"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin kubepilot
USER 10001
WORKDIR /home/kubepilot
ENTRYPOINT ["python", "-m", "kubepilot_workers.trainer"]
