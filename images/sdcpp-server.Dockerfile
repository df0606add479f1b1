# syntax=docker/dockerfile:1
# stable-diffusion.cpp's sd-server built with CUDA, as a ServiceInstance, with kubepilot's executor
# adapter on board (sidecar command: python -m kubepilot_workers.adapters). The operator appends
# the model arguments (-m /models/..., --lora-model-dir /models/loras). GPU. Build from the
# repository root:
#   docker build -f images/sdcpp-server.Dockerfile -t kubepilot/sdcpp-server:0.1.0 .
FROM nvidia/cuda:12.8.1-devel-ubuntu22.04 AS build
# A commit with the native async API (/sdcpp/v1/img_gen, jobs, cancel) the adapter uses.
ARG SDCPP_COMMIT=11bff8dc1d683c0f9909466884f083c1b94eda01
ARG CUDA_ARCHITECTURES="80;86;89;90"
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends git cmake build-essential ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN git clone https://github.com/leejet/stable-diffusion.cpp.git /src \
 && git -C /src checkout --detach "${SDCPP_COMMIT}" \
 && git -C /src submodule update --init --recursive
# The web UI needs pnpm to build; the adapter only uses the API, so it is left out.
RUN cmake -S /src -B /src/build -DSD_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSD_SERVER_BUILD_FRONTEND=OFF \
      "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
 && cmake --build /src/build --config Release --target sd-server -j "$(nproc)"

FROM nvidia/cuda:12.8.1-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/kubepilot/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/bin/sd-server /usr/local/bin/sd-server
RUN --mount=type=bind,target=/tmp/src,rw \
    python3.11 -m venv /opt/kubepilot \
 && /opt/kubepilot/bin/pip install --no-compile "/tmp/src[adapters]"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin kubepilot
USER 10001
WORKDIR /home/kubepilot
LABEL io.kubepilot.adapter-command="python -m kubepilot_workers.adapters"
EXPOSE 7862
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7862/sdcpp/v1/capabilities', timeout=4)"]
ENTRYPOINT ["sd-server", "--listen-ip", "0.0.0.0", "--listen-port", "7862"]
