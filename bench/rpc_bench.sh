#!/bin/sh
# RPC hot path benchmark (issue 15): server CPU per request of harnessd's
# Check, GetTask, ListTasks and Heartbeat (1 and 1,000 tasks) against the
# bare C-core echo and gRPC's C++ async server, same run. See rpc_bench.py.
#   HS_BUILD_DIR=/path/to/build bench/rpc_bench.sh [--requests 200000] [--rounds 3]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export HS_SOURCE_DIR="${HS_SOURCE_DIR:-$here/..}"
export HS_BUILD_DIR="${HS_BUILD_DIR:-$HS_SOURCE_DIR/build}"
[ -x "$HS_BUILD_DIR/server/harnessd" ] || { echo "no harnessd in $HS_BUILD_DIR (set HS_BUILD_DIR)" >&2; exit 2; }
[ -d "$HS_BUILD_DIR/pygen" ] || { echo "no python stubs in $HS_BUILD_DIR/pygen (build the tests)" >&2; exit 2; }
command -v h2load >/dev/null || { echo "h2load needed (nghttp2-client)" >&2; exit 2; }
echo "machine: $(uname -srm), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
exec /usr/bin/python3 "$here/rpc_bench.py" "$@"
