#!/bin/sh
# Issue 19's bench: 100,000 tasks over 3 harnessd nodes on one PostgreSQL 15
# vs one harnessd on SQLite, same run: start-up with the tasks (and leases)
# in the store, RegisterTask/s, Heartbeat/s (at the holder; spread over the
# nodes), detection lag of silent tasks, idle CPU, RSS. See nodes_bench.py.
#   HS_BUILD_DIR=/path/to/build bench/nodes_bench.sh [--bulk 96000] [--silent 1000] [--only pg]
set -eu
export HARNESS_METRICS_LISTEN=${HARNESS_METRICS_LISTEN:-127.0.0.1:0}
here=$(cd "$(dirname "$0")" && pwd)
export HS_SOURCE_DIR="${HS_SOURCE_DIR:-$here/..}"
export HS_BUILD_DIR="${HS_BUILD_DIR:-$HS_SOURCE_DIR/build}"
[ -x "$HS_BUILD_DIR/server/harnessd" ] || { echo "no harnessd in $HS_BUILD_DIR (set HS_BUILD_DIR)" >&2; exit 2; }
[ -d "$HS_BUILD_DIR/pygen" ] || { echo "no python stubs in $HS_BUILD_DIR/pygen (build the tests)" >&2; exit 2; }
command -v h2load >/dev/null || { echo "h2load needed (nghttp2-client)" >&2; exit 2; }
echo "machine: $(uname -srm), $(nproc) cpus, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec /usr/bin/python3 "$here/nodes_bench.py" "$@"
