# syntax=docker/dockerfile:1
# kubepilot gateway: the FastAPI REST and WebSocket API in front of the custom resources.
# No GPU. Build from the repository root:
#   docker build -f images/gateway.Dockerfile -t kubepilot/gateway:0.1.0 .
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
 && /opt/kubepilot/bin/pip install --no-compile ".[gateway]"

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/kubepilot/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/kubepilot /opt/kubepilot
# ControlPilot's /api/docs, /api/changelog and /api/docs/file serve the project's own markdown.
COPY README.md CHANGELOG.md /opt/kubepilot/share/kubepilot/docs/
COPY docs /opt/kubepilot/share/kubepilot/docs/docs
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin kubepilot
USER 10001
# The profiles' native ports (ControlPilot, ComfyUI-Docker, OneTrainer, sd.cpp Studio, HomePilot),
# then the combined port: every profile under /p/<profile>, and /healthz, which answers once the
# cache has synced.
EXPOSE 7878 8080 8000 3000 8001
EXPOSE 9000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/healthz', timeout=4)"]
ENTRYPOINT ["kubepilot", "gateway"]
