# syntax=docker/dockerfile:1
# The HomePilot application (ruslanmv/HomePilot, its FastAPI backend only) as a ServiceInstance
# (serviceType homepilot): conversations, projects, personas, stories, the studio and agentic tools,
# which the gateway's HomePilot profile proxies to, on port 8000. No GPU: its image work goes to
# ComfyUI (COMFY_BASE_URL) or, through the gateway, to GenerationJobs; its LLM is another service
# (LLM_BASE_URL / OLLAMA_BASE_URL); both arrive through the ServiceInstance's env. The commit is
# the one whose API the profile follows. The operator's catalog command replaces the entrypoint:
# it binds the pod's IP and puts the uploads and the data folder (SQLite) on the outputs volume.
# Runs no code of ours. Build from the repository root:
#   docker build -f images/homepilot.Dockerfile -t kubepilot/homepilot:0.1.0 .
FROM python:3.11.11-slim-bookworm
ARG HOMEPILOT_COMMIT=00d22de3f50e43eefa1b327354607da165c2c8c1
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/HomePilot/venv/bin:$PATH DATA_DIR=/opt/HomePilot/backend/data
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
RUN git clone https://github.com/ruslanmv/HomePilot.git /opt/HomePilot \
 && git -C /opt/HomePilot checkout --detach "${HOMEPILOT_COMMIT}" \
 && rm -rf /opt/HomePilot/.git /opt/HomePilot/frontend \
 && python -m venv /opt/HomePilot/venv \
 && /opt/HomePilot/venv/bin/pip install --no-compile -r /opt/HomePilot/backend/requirements.txt
# Run outside the operator (docker run), the data stays in the image's own writable folder.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin kubepilot \
 && mkdir -p /opt/HomePilot/backend/data/uploads \
 && chown -R 10001:10001 /opt/HomePilot/backend/data
USER 10001
# uvicorn imports app.main from here.
WORKDIR /opt/HomePilot/backend
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["tini", "--", "python", "-m", "uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
