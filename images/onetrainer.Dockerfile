# syntax=docker/dockerfile:1
# Nerogar/OneTrainer driven by kubepilot's trainer: the entrypoint is our trainer, which writes a
# OneTrainer config and runs it with OneTrainer's own Python (ONETRAINER_PYTHON). OneTrainer
# pins its own torch and torchvision in requirements-cuda.txt; they stay in its virtualenv, apart
# from ours. GPU, a Job. Build from the repository root:
#   docker build -f images/onetrainer.Dockerfile -t kubepilot/onetrainer:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG ONETRAINER_COMMIT=bab144146d096c645a8e74e8c530517f43414931
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 \
    PATH=/opt/kubepilot/bin:$PATH ONETRAINER_DIR=/opt/OneTrainer ONETRAINER_PYTHON=/opt/OneTrainer/venv/bin/python
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev git ca-certificates \
      libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
RUN git clone https://github.com/Nerogar/OneTrainer.git /opt/OneTrainer \
 && git -C /opt/OneTrainer checkout --detach "${ONETRAINER_COMMIT}" \
 && rm -rf /opt/OneTrainer/.git \
 && python3.11 -m venv /opt/OneTrainer/venv \
 && cd /opt/OneTrainer \
 && venv/bin/pip install --no-compile -r requirements-global.txt -r requirements-cuda.txt
RUN --mount=type=bind,target=/tmp/src,rw \
    python3.11 -m venv /opt/kubepilot \
 && /opt/kubepilot/bin/pip install --no-compile "/tmp/src[adapters]"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin kubepilot
USER 10001
WORKDIR /home/kubepilot
LABEL io.kubepilot.adapter-command="python -m kubepilot_workers.trainer"
ENTRYPOINT ["python", "-m", "kubepilot_workers.trainer"]
