# syntax=docker/dockerfile:1
# ControlPilot's Copilot sidecar as a ServiceInstance (serviceType copilot): the GitHub Copilot CLI
# (npm @github/copilot, which needs Node 22) behind kubepilot's sidecar API (/health, /status,
# /chat) on port 7879. No GPU. The GitHub token arrives in the environment (COPILOT_GITHUB_TOKEN,
# from the gateway's copilot-token Secret through envFromSecrets). The operator mounts the volumes
# at /models, /datasets and /outputs and names them with --volume; the sidecar links them into
# /workspace, the root every /chat cwd must lie under. Build from the repository root:
#   docker build -f images/copilot.Dockerfile -t kubepilot/copilot:0.1.0 .
FROM node:22.12.0-bookworm-slim AS node

FROM python:3.11.11-slim-bookworm
ARG COPILOT_CLI_VERSION=1.0.102
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/kubepilot/bin:$PATH NPM_CONFIG_UPDATE_NOTIFIER=false COPILOT_WORKSPACE=/workspace
# Node and npm from the official image (the CLI needs Node 22 or later and npm 10 or later); git and
# the usual shell tools are what the agent works with in the workspace.
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates tini procps \
 && rm -rf /var/lib/apt/lists/* \
 && npm install --global --omit=dev "@github/copilot@${COPILOT_CLI_VERSION}" \
 && npm cache clean --force \
 && test -x "$(command -v copilot)"
# The sidecar uses the adapters extra's FastAPI and uvicorn.
RUN --mount=type=bind,target=/tmp/src,rw \
    python -m venv /opt/kubepilot \
 && /opt/kubepilot/bin/pip install --no-compile "/tmp/src[adapters]"
RUN useradd --uid 10001 --create-home --shell /bin/bash kubepilot \
 && mkdir -p /workspace \
 && chown 10001:10001 /workspace
USER 10001
WORKDIR /workspace
EXPOSE 7879
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7879/health', timeout=4)"]
# tini reaps what the CLI's tools leave behind. The operator's catalog command replaces this
# entrypoint (with the same program and the volumes).
ENTRYPOINT ["tini", "--", "python", "-m", "kubepilot_workers.copilot", "--host", "0.0.0.0", "--port", "7879"]
