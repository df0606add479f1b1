#!/usr/bin/env bash
# The test command: installs what the tests need into .venv, then runs every quality gate
# (ruff, mypy --strict, import-linter, CRD drift) and the test suite. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned to the CPU-capable 2.13.0 by the extras; an unpinned torch would pull CUDA.
.venv/bin/python -m pip install --quiet --editable '.[dev]'
# Without its torchvision dependency: see the note on the generator extra in pyproject.toml.
.venv/bin/python -m pip install --quiet --no-deps 'spandrel==0.4.2'
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy --strict"
packages=()
for init in crds/kubepilot_api operator/kubepilot_operator gateway/kubepilot_gateway \
            images/kubepilot_workers devcluster/kubepilot_devcluster devcluster/kubepilot_dev; do
  if [ -f "$init/__init__.py" ]; then packages+=(-p "$(basename "$init")"); fi
done
mypy "${packages[@]}"
echo "== import-linter"
lint-imports
echo "== CRDs are current"
kubepilot crds check
# Prometheus (Debian's package) for the dashboard test; the test runs its own server, not the unit.
if ! command -v prometheus >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
echo "== pytest"
# -m "not gpu": GPU tests run on a GPU machine (scripts/test-gpu.sh); CI has none.
pytest -m "not gpu" "$@"
