#!/usr/bin/env bash
# GPU checks, outside the test command and CI (which never have a GPU). Run on a machine with an
# NVIDIA GPU where the project is installed with a CUDA build of torch (`pip install -e '.[dev]'`).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== tests marked gpu (real NVML in the node agent)"
pytest -q -m gpu tests/
echo "== generator pipelines on the GPU"
KUBEPILOT_TEST_DEVICE=cuda pytest -q tests/workers/test_generator_pipelines.py
echo "== benchmarks: SD-1.5-sized random UNet at 512x512, trainer loop"
python bench/generator_bench.py --sd15-random --size 512 --steps 20 --device cuda --dtype float16
python bench/trainer_bench.py --steps 200 --rounds 4
