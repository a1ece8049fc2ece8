#!/bin/sh
# HealthService benchmark: Heartbeat throughput under h2load (10,000 tasks,
# authenticated), stall-detection lag p50/p99 with 100,000 tasks armed, and
# harnessd RSS per 100,000 tasks. See tasks_bench.py.
#   HS_BUILD_DIR=/path/to/build bench/tasks_bench.sh [--requests 40000] [--bulk 100000]
set -eu
# every harnessd started here scrapes on a free port, not the default 9090
export HARNESS_METRICS_LISTEN=${HARNESS_METRICS_LISTEN:-127.0.0.1:0}
here=$(cd "$(dirname "$0")" && pwd)
export HS_SOURCE_DIR="${HS_SOURCE_DIR:-$here/..}"
export HS_BUILD_DIR="${HS_BUILD_DIR:-$HS_SOURCE_DIR/build}"
[ -x "$HS_BUILD_DIR/server/harnessd" ] || { echo "no harnessd in $HS_BUILD_DIR (set HS_BUILD_DIR)" >&2; exit 2; }
[ -d "$HS_BUILD_DIR/pygen" ] || { echo "no python stubs in $HS_BUILD_DIR/pygen (build the tests)" >&2; exit 2; }
command -v h2load >/dev/null || { echo "h2load needed (nghttp2-client)" >&2; exit 2; }
echo "machine: $(uname -srm), $(nproc) cpus, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
exec /usr/bin/python3 "$here/tasks_bench.py" "$@"
