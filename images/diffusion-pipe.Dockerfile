# syntax=docker/dockerfile:1
# tdrussell/diffusion-pipe driven by kubepilot's trainer: the entrypoint is our trainer, which
# writes diffusion-pipe's dataset and training TOML and runs `deepspeed train.py` on them.
# diffusion-pipe has its own virtualenv (its requirements, DeepSpeed included), ours another.
# The devel base carries nvcc for DeepSpeed's run-time op builds. GPU, a Job. Build from the
# repository root:
#   docker build -f images/diffusion-pipe.Dockerfile -t kubepilot/diffusion-pipe:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04
ARG DIFFUSION_PIPE_COMMIT=f0aff7fa2112034de613392cdca96c3bfdf794e1
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 DS_BUILD_OPS=0 HF_HUB_OFFLINE=1 \
    PATH=/opt/kubepilot/bin:/opt/diffusion-pipe/venv/bin:$PATH DIFFUSION_PIPE_DIR=/opt/diffusion-pipe
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev git ca-certificates \
      ffmpeg libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
# Its model code for some architectures comes from git submodules (ComfyUI, HunyuanVideo).
RUN git clone https://github.com/tdrussell/diffusion-pipe.git /opt/diffusion-pipe \
 && git -C /opt/diffusion-pipe checkout --detach "${DIFFUSION_PIPE_COMMIT}" \
 && git -C /opt/diffusion-pipe submodule update --init --recursive \
 && rm -rf /opt/diffusion-pipe/.git \
 && python3.11 -m venv /opt/diffusion-pipe/venv \
 && /opt/diffusion-pipe/venv/bin/pip install --no-compile torch==2.13.0 -r /opt/diffusion-pipe/requirements.txt
RUN --mount=type=bind,target=/tmp/src,rw \
    python3.11 -m venv /opt/kubepilot \
 && /opt/kubepilot/bin/pip install --no-compile "/tmp/src[adapters]"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin kubepilot
USER 10001
WORKDIR /home/kubepilot
LABEL io.kubepilot.adapter-command="python -m kubepilot_workers.trainer"
ENTRYPOINT ["python", "-m", "kubepilot_workers.trainer"]
