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

# The first admin: a password generated once and kept next to the data
# (mode 0600), so the quickstart can print it every time.
pwfile=$root/.run/admin-password
mkdir -p "$(dirname "$pwfile")"
if [[ ! -s $pwfile ]]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(18))' > "$pwfile")
fi
export HARNESS_ADMIN_EMAIL=${HARNESS_ADMIN_EMAIL:-admin@harness.local}
export HARNESS_ADMIN_PASSWORD=${HARNESS_ADMIN_PASSWORD:-$(cat "$pwfile")}

# Sandboxes run as their own unprivileged account, never as harnessd's uid
# (they would own harnessd's files). As root: create it (idempotent). Not
# root: harnessd cannot switch uids, so sandboxes run as yours (development
# mode, said loudly).
sandbox_args=()
if [[ $(id -u) -eq 0 ]]; then
  scripts/sandbox-account.sh create harness-sandbox >/dev/null
else
  echo "run.sh: not root: sandboxes run as your own uid (--sandbox-allow-same-uid, development only)" >&2
  sandbox_args=(--sandbox-allow-same-uid 1)
fi

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

build/server/harnessd --listen "$grpc_addr" --data-dir "$data" "${sandbox_args[@]}" &
pids+=($!)
# harnessd creates $data/gateway.key at start; the gateway signs the client
# addresses it forwards with it (logins are throttled per client address).
build/gateway/harness-gateway --listen "$http_addr" --grpc-target "$grpc_addr" \
  --gateway-secret-file "$data/gateway.key" &
pids+=($!)
sleep 1
cat <<MSG

Harness is running: gRPC on $grpc_addr, REST gateway on http://$http_addr, data in $data
Admin: $HARNESS_ADMIN_EMAIL / password in $pwfile (created at the first start of an empty data dir)

Try:
  build/clients/harnessctl --server $grpc_addr demo --email $HARNESS_ADMIN_EMAIL --password "\$(cat $pwfile)"
  curl -i http://$http_addr/api/v1/auth/login -H 'content-type: application/json' \\
       -d "{\"email\":\"$HARNESS_ADMIN_EMAIL\",\"password\":\"\$(cat $pwfile)\"}"
  grpcurl -plaintext $grpc_addr list     # reflection; then e.g. grpcurl -plaintext $grpc_addr grpc.health.v1.Health/Check
Ctrl-C stops both.
MSG
wait -n "${pids[@]}" || true
stop
