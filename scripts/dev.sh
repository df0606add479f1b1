#!/usr/bin/env bash
# The local stack: the devcluster (Kubernetes API + Job/Deployment/DaemonSet controllers + process
# kubelet) with the kubepilot CRDs applied, and the operator reconciling them with the real workers
# running as pods. The gateway with its five API profiles joins it when it lands (see README).
# Runs in the foreground; Ctrl-C stops everything.
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
.venv/bin/python -m pip install --quiet --no-deps 'spandrel==0.4.2'
export PATH="$PWD/.venv/bin:$PATH"

mkdir -p "$data_dir"/volumes/{models,datasets,outputs}
kubepilot devcluster --port "$port" --data-dir "$data_dir" &
cluster=$!
operator=""
gateway=""
cleanup() {
  [ -n "$gateway" ] && kill -TERM "$gateway" 2>/dev/null && wait "$gateway" 2>/dev/null
  [ -n "$operator" ] && kill -TERM "$operator" 2>/dev/null && wait "$operator" 2>/dev/null
  kill -TERM "$cluster" 2>/dev/null; wait "$cluster" 2>/dev/null
}
trap cleanup EXIT INT TERM

export KUBECONFIG="$data_dir/kubeconfig"
for _ in $(seq 1 100); do
  if [ -f "$KUBECONFIG" ] && kubectl version >/dev/null 2>&1; then break; fi
  sleep 0.2
done
kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=30s >/dev/null 2>&1 || true

# The operator's settings for this machine: the three volumes are host folders whose mount path
# equals the folder (the devcluster runs pods as local processes), the intake on loopback.
settings="$data_dir/operator-settings.yaml"
volumes="$data_dir/volumes"
cat >"$settings" <<YAML
operatorNamespace: default
storage:
  models: {hostPath: $volumes/models, mountPath: $volumes/models, operatorPath: $volumes/models}
  datasets: {hostPath: $volumes/datasets, mountPath: $volumes/datasets, operatorPath: $volumes/datasets}
  outputs: {hostPath: $volumes/outputs, mountPath: $volumes/outputs, operatorPath: $volumes/outputs}
intake: {host: 127.0.0.1, port: ${KUBEPILOT_INTAKE_PORT:-8081}}
healthPort: ${KUBEPILOT_HEALTH_PORT:-8082}
# Pods share this machine's network: a multi-pod TrainingRun's rank 0 listens on another port than
# the Service in front of it.
rendezvous: {servicePort: 29400, listenPort: 29500}
YAML
kubepilot operator --settings "$settings" >"$data_dir/operator.log" 2>&1 &
operator=$!
# The gateway: every API profile built so far on its native port, all of them under /p/<profile>
# on the combined port.
kubepilot gateway --namespace default --combined-port "${KUBEPILOT_GATEWAY_PORT:-9000}" \
  >"$data_dir/gateway.log" 2>&1 &
gateway=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:${KUBEPILOT_INTAKE_PORT:-8081}/healthz" 2>/dev/null | grep -q '"leader": true'; then break; fi
  sleep 0.2
done

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:${KUBEPILOT_GATEWAY_PORT:-9000}/healthz" 2>/dev/null | grep -q '"synced": *true'; then break; fi
  sleep 0.2
done

cat <<MSG

kubepilot is up: devcluster on http://127.0.0.1:$port, operator reconciling (log: $data_dir/operator.log).
  export KUBECONFIG=$KUBECONFIG
  kubectl get nodes
  kubectl apply -f examples/ && kubectl get kubepilot -w
  kubectl describe modelpull sdxl-base
  curl -s http://127.0.0.1:${KUBEPILOT_INTAKE_PORT:-8081}/metrics | grep ^kubepilot_
Volumes (models, datasets, outputs) are folders under $volumes.
Gateway (log: $data_dir/gateway.log): ControlPilot's service endpoints on http://127.0.0.1:7878
(curl -s http://127.0.0.1:7878/api/services), every profile under http://127.0.0.1:${KUBEPILOT_GATEWAY_PORT:-9000}/p/<profile>.
The rest of the ControlPilot API and the other four profiles are still to come.
Ctrl-C stops the gateway, the operator, the devcluster and its pods.
MSG
wait $cluster
