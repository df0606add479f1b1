# syntax=docker/dockerfile:1
# JupyterLab as a ServiceInstance: a GPU notebook server with torch, on the models and datasets
# volumes. The operator passes the token and base URL as arguments. Build from the repository root:
#   docker build -f images/jupyter.Dockerfile -t kubepilot/jupyter:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PATH=/opt/jupyter/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv git ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/jupyter \
 && pip install --no-compile jupyterlab==4.3.5 ipykernel==6.29.5 ipywidgets==8.1.5 torch==2.13.0
RUN useradd --uid 10001 --create-home --shell /bin/bash kubepilot
USER 10001
WORKDIR /home/kubepilot
EXPOSE 8888
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api', timeout=4)"]
ENTRYPOINT ["tini", "--", "jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]
