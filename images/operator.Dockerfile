# syntax=docker/dockerfile:1
# kubepilot operator: the kopf controller that reconciles ModelPull, TrainingRun, GenerationJob and
# ServiceInstance. No GPU. Build from the repository root:
#   docker build -f images/operator.Dockerfile -t kubepilot/operator:0.1.0 .
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
 && /opt/kubepilot/bin/pip install --no-compile ".[operator]"

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/kubepilot/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/kubepilot /opt/kubepilot
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin kubepilot
USER 10001
# Liveness endpoint of the operator (kopf --liveness); the Deployment's probes use the same port.
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["kubepilot", "operator"]
