#!/usr/bin/env bash
# Installs what is missing, builds, and runs harnessd + harness-gateway on
# embedded defaults (local auth, SQLite, bwrap sandboxes), data in ./.run.
# Ctrl-C stops both cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)"

data=${HARNESS_DATA_DIR:-$root/.run/data}
mkdir -p "$data"
grpc_addr=${HARNESS_LISTEN:-127.0.0.1:50051}
http_addr=${HARNESS_GATEWAY_LISTEN:-127.0.0.1:8080}

pids=()
stop() {
  trap - INT TERM
  echo
  echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  exit 0
}
trap stop INT TERM

build/server/harnessd --listen "$grpc_addr" --data-dir "$data" &
pids+=($!)
if [[ -x build/gateway/harness-gateway ]]; then
  build/gateway/harness-gateway --listen "$http_addr" --grpc-target "$grpc_addr" &
  pids+=($!)
fi
sleep 1
cat <<MSG

Harness is running: gRPC on $grpc_addr, REST gateway on http://$http_addr
The admin password was printed above on first start (or set HARNESS_ADMIN_EMAIL/HARNESS_ADMIN_PASSWORD).
Try:
  build/clients/harnessctl --server $grpc_addr demo
  curl -i -X POST http://$http_addr/api/v1/auth/login -H 'content-type: application/json' \\
       -d '{"email":"admin@localhost","password":"<admin password>"}'
  grpcurl -plaintext $grpc_addr list          # or: grpcurl -plaintext $grpc_addr grpc.health.v1.Health/Check
Ctrl-C stops both.
MSG
wait -n "${pids[@]}" || true
stop
