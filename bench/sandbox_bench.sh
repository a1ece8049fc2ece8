#!/bin/sh
# Sandbox control-plane benchmark (bwrap for real, firecracker driver against
# the API emulator). See sandbox_bench.py and README.sandbox.md.
#   HS_BUILD_DIR=/path/to/build bench/sandbox_bench.sh [--n 200] [--alive 100]
set -eu
# every harnessd started here scrapes on a free port, not the default 9090
export HARNESS_METRICS_LISTEN=${HARNESS_METRICS_LISTEN:-127.0.0.1:0}
here=$(cd "$(dirname "$0")" && pwd)
export HS_SOURCE_DIR="${HS_SOURCE_DIR:-$here/..}"
export HS_BUILD_DIR="${HS_BUILD_DIR:-$HS_SOURCE_DIR/build}"
[ -x "$HS_BUILD_DIR/server/harnessd" ] || { echo "no harnessd in $HS_BUILD_DIR (set HS_BUILD_DIR)" >&2; exit 2; }
[ -d "$HS_BUILD_DIR/pygen" ] || { echo "no python stubs in $HS_BUILD_DIR/pygen (build the tests)" >&2; exit 2; }
command -v bwrap >/dev/null || { echo "bubblewrap (bwrap) needed" >&2; exit 2; }
echo "machine: $(uname -srm), $(nproc) cpus, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
     "build: $(t=$(grep -m1 CMAKE_BUILD_TYPE: "$HS_BUILD_DIR/CMakeCache.txt" | cut -d= -f2); echo "${t:-RelWithDebInfo (default)}")"
exec /usr/bin/python3 "$here/sandbox_bench.py" "$@"
