# syntax=docker/dockerfile:1
# ComfyUI as a ServiceInstance, with kubepilot's executor adapter on board: the same image runs
# ComfyUI (the entrypoint) and, as a sidecar in the same pod, the adapter that executes
# GenerationJobs through ComfyUI's API (command: python -m kubepilot_workers.adapters).
# GPU. Build from the repository root:
#   docker build -f images/comfyui.Dockerfile -t kubepilot/comfyui:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG COMFYUI_COMMIT=3b5e0426fa8521eebbc8920a41221100c96628b0
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/kubepilot/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv git ca-certificates libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
RUN git clone https://github.com/comfyanonymous/ComfyUI.git /opt/ComfyUI \
 && git -C /opt/ComfyUI checkout --detach "${COMFYUI_COMMIT}" \
 && rm -rf /opt/ComfyUI/.git \
 && python3.11 -m venv /opt/ComfyUI/venv \
 && /opt/ComfyUI/venv/bin/pip install --no-compile torch==2.13.0 -r /opt/ComfyUI/requirements.txt
# ComfyUI finds its models on the models volume, in the type folders the downloader writes.
RUN printf '%s\n' \
      'kubepilot:' \
      '    base_path: /models' \
      '    checkpoints: checkpoints' \
      '    diffusion_models: diffusion_models' \
      '    unet: unet' \
      '    loras: loras' \
      '    vae: vae' \
      '    text_encoders: text_encoders' \
      '    clip: clip' \
      '    clip_vision: clip_vision' \
      '    controlnet: controlnet' \
      '    upscale_models: upscale_models' \
      '    embeddings: embeddings' \
      > /opt/ComfyUI/extra_model_paths.yaml
# The adapter lives in its own virtualenv, so its dependencies never touch ComfyUI's.
RUN --mount=type=bind,target=/tmp/src,rw \
    python3.11 -m venv /opt/kubepilot \
 && /opt/kubepilot/bin/pip install --no-compile "/tmp/src[adapters]"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin kubepilot \
 && mkdir -p /opt/ComfyUI/output /opt/ComfyUI/input /opt/ComfyUI/temp /opt/ComfyUI/user \
 && chown -R 10001:10001 /opt/ComfyUI/output /opt/ComfyUI/input /opt/ComfyUI/temp /opt/ComfyUI/user /opt/ComfyUI/custom_nodes
USER 10001
WORKDIR /opt/ComfyUI
LABEL io.kubepilot.adapter-command="python -m kubepilot_workers.adapters"
EXPOSE 8188
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8188/system_stats', timeout=4)"]
ENTRYPOINT ["/opt/ComfyUI/venv/bin/python", "/opt/ComfyUI/main.py", "--listen", "0.0.0.0", "--port", "8188"]
