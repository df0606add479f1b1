# syntax=docker/dockerfile:1
# kohya-ss sd-scripts driven by kubepilot's trainer: the entrypoint is our trainer, which writes
# sd-scripts' TOML files and runs `accelerate launch` on them, reporting progress and checkpoints.
# sd-scripts has its own virtualenv (its pinned requirements), ours another; both are on PATH.
# GPU, a Job. Build from the repository root:
#   docker build -f images/kohya.Dockerfile -t kubepilot/kohya:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG SD_SCRIPTS_COMMIT=2379bb27e82bc98a770841b398319745a050f555
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/kubepilot/bin:/opt/sd-scripts/venv/bin:$PATH KOHYA_DIR=/opt/sd-scripts HF_HUB_OFFLINE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev git ca-certificates \
      libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
# requirements.txt ends with "-e .", so it is installed from inside the checkout.
RUN git clone https://github.com/kohya-ss/sd-scripts.git /opt/sd-scripts \
 && git -C /opt/sd-scripts checkout --detach "${SD_SCRIPTS_COMMIT}" \
 && rm -rf /opt/sd-scripts/.git \
 && python3.11 -m venv /opt/sd-scripts/venv \
 && cd /opt/sd-scripts \
 && venv/bin/pip install --no-compile torch==2.13.0 -r requirements.txt
RUN --mount=type=bind,target=/tmp/src,rw \
    python3.11 -m venv /opt/kubepilot \
 && /opt/kubepilot/bin/pip install --no-compile "/tmp/src[adapters]"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin kubepilot
USER 10001
WORKDIR /home/kubepilot
LABEL io.kubepilot.adapter-command="python -m kubepilot_workers.trainer"
ENTRYPOINT ["python", "-m", "kubepilot_workers.trainer"]
