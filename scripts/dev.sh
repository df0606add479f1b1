#!/usr/bin/env bash
# The local stack. Today: the devcluster (Kubernetes API + Job/Deployment/DaemonSet controllers +
# process kubelet) with the kubepilot CRDs applied. The operator and the gateway with its five API
# profiles join it when they land (see README). Runs in the foreground; Ctrl-C stops everything.
#
#   bash scripts/dev.sh [PORT]        # default 6443; state in .dev/ (kept across restarts)
set -euo pipefail
cd "$(dirname "$0")/.."

port=${1:-6443}
data_dir=${KUBEPILOT_DEV_DIR:-$PWD/.dev}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --editable '.[dev]'
export PATH="$PWD/.venv/bin:$PATH"

mkdir -p "$data_dir"
kubepilot devcluster --port "$port" --data-dir "$data_dir" &
cluster=$!
trap 'kill -TERM $cluster 2>/dev/null; wait $cluster 2>/dev/null' EXIT INT TERM

export KUBECONFIG="$data_dir/kubeconfig"
for _ in $(seq 1 100); do
  if [ -f "$KUBECONFIG" ] && kubectl version >/dev/null 2>&1; then break; fi
  sleep 0.2
done
kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=30s >/dev/null 2>&1 || true

cat <<MSG

kubepilot devcluster is up on http://127.0.0.1:$port (state in $data_dir).
  export KUBECONFIG=$KUBECONFIG
  kubectl get nodes
  kubectl apply -f examples/ && kubectl get kubepilot
  kubectl explain modelpull.spec.source
The operator and the gateway are not built yet: kubepilot objects are stored and validated,
but nothing reconciles them. Ctrl-C stops the devcluster and its pods.
MSG
wait $cluster
