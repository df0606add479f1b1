# syntax=docker/dockerfile:1
# code-server (VS Code in the browser) as a ServiceInstance on a GPU node, with Python 3.11 and
# git for working on training scripts. The operator passes the password through $PASSWORD.
# Build from the repository root:
#   docker build -f images/code-server.Dockerfile -t kubepilot/code-server:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG CODE_SERVER_VERSION=4.96.4
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates git python3.11 python3.11-venv tini \
 && curl -fsSL -o /tmp/code-server.deb \
      "https://github.com/coder/code-server/releases/download/v${CODE_SERVER_VERSION}/code-server_${CODE_SERVER_VERSION}_amd64.deb" \
 && dpkg -i /tmp/code-server.deb \
 && rm -f /tmp/code-server.deb \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 10001 --create-home --shell /bin/bash kubepilot
USER 10001
WORKDIR /home/kubepilot
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["tini", "--", "code-server", "--bind-addr", "0.0.0.0:8080", "--auth", "password", "--disable-telemetry"]
