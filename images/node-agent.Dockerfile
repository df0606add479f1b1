# syntax=docker/dockerfile:1
# kubepilot node agent: a DaemonSet reporting GPU (NVML) and disk usage on /metrics and
# /v1/snapshot. The NVIDIA container runtime mounts the driver's libnvidia-ml into the pod, so the
# image itself needs no CUDA. Build from the repository root:
#   docker build -f images/node-agent.Dockerfile -t kubepilot/node-agent:0.1.0 .
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY crds crds
COPY operator operator
COPY gateway gateway
COPY images images
COPY devcluster devcluster
RUN python -m venv /opt/kubepilot \
 && /opt/kubepilot/bin/pip install --no-compile ".[node-agent]"

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/kubepilot/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=utility
COPY --from=build /opt/kubepilot /opt/kubepilot
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin kubepilot
USER 10001
EXPOSE 9400
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9400/metrics', timeout=4)"]
ENTRYPOINT ["python", "-m", "kubepilot_workers.nodeagent"]
