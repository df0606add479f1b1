# syntax=docker/dockerfile:1
# kubepilot downloader: pulls one ModelPull's files (Hugging Face, Civitai, URLs) into the models
# volume and reports progress. A Job, no GPU, no server. Build from the repository root:
#   docker build -f images/downloader.Dockerfile -t kubepilot/downloader:0.1.0 .
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
 && /opt/kubepilot/bin/pip install --no-compile ".[downloader]"

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/kubepilot/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_DISABLE_TELEMETRY=1
COPY --from=build /opt/kubepilot /opt/kubepilot
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin kubepilot
USER 10001
ENTRYPOINT ["python", "-m", "kubepilot_workers.downloader"]
