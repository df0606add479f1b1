#!/usr/bin/env bash
# The local stack on a fresh machine: installs kubepilot into .venv (once; then only what changed)
# and runs `kubepilot dev`: the devcluster with the CRDs applied, the operator (workers run as local
# processes), the node agent and the gateway with every API profile. Foreground; Ctrl-C stops all.
#
#   bash scripts/dev.sh [kubepilot dev options]     # e.g. --hf-endpoint http://127.0.0.1:8900
# State, volumes, settings and logs: .dev/ (or $KUBEPILOT_DEV_DIR), kept across runs.
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir=${KUBEPILOT_DEV_DIR:-$PWD/.dev}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --editable '.[dev]'
.venv/bin/python -m pip install --quiet --no-deps 'spandrel==0.4.2'
export PATH="$PWD/.venv/bin:$PATH"
exec kubepilot dev --data-dir "$data_dir" "$@"
