#!/usr/bin/env bash
# Benchmark: a cheap unary RPC (grpc.health.v1.Health/Check) under h2load,
# 50 connections x 20 streams, against harnessd and against gRPC's own C++
# async server on the same libgrpc (the yardstick).
#   bench/rpc_health.sh [requests]      (default 400000)
# Needs: scripts/deps.sh --bench (h2load, g++, libgrpc++-dev) and a build in build/.
set -euo pipefail
# every harnessd started here scrapes on a free port, not the default 9090
export HARNESS_METRICS_LISTEN=${HARNESS_METRICS_LISTEN:-127.0.0.1:0}
cd "$(dirname "$0")/.."
N=${1:-400000}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

[[ -x build/server/harnessd ]] || { echo "build first: cmake -S . -B build && cmake --build build"; exit 1; }
g++ -O2 -o "$out/cpp_async_health" bench/cpp_async_health.cc $(pkg-config --cflags --libs grpc++)

# gRPC frame of an empty HealthCheckRequest: flag 0, length 0.
printf '\x00\x00\x00\x00\x00' > "$out/req.bin"

load() { # port
  h2load -n "$N" -c 50 -m 20 -t 1 -d "$out/req.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$1/grpc.health.v1.Health/Check" > "$out/h2load.txt"
  grep -E "^finished in|^requests:|^status codes:|time for request:" "$out/h2load.txt"
}
# VmHWM is the lifetime peak (for harnessd's local auth backend it includes
# the one argon2id hash made at start: 64 MiB for a moment, by design);
# VmRSS is what the process holds right after the load.
peak_rss() { awk '/VmHWM|VmRSS/ {printf "%s %s kB  ", $1, $2} END {print ""}' "/proc/$1/status"; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for level in warn info; do
  p=$(port)
  build/server/harnessd --listen 127.0.0.1:$p --data-dir "$out/data-$level" --log-level $level 2>"$out/hd-$level.log" >/dev/null &
  pid=$!
  sleep 1
  echo "== harnessd (log-level $level, 2 cq threads)"
  load $p
  echo "peak RSS: $(peak_rss $pid)"
  kill -TERM $pid; wait $pid
done

p=$(port)
"$out/cpp_async_health" 127.0.0.1:$p 2 2>/dev/null &
pid=$!
sleep 1
echo "== C++ async generic server (2 cq threads), same libgrpc"
load $p
echo "peak RSS: $(peak_rss $pid)"
kill -TERM $pid; wait $pid 2>/dev/null || true
