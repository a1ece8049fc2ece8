#!/bin/sh
# Checkpoint benchmark: harnessd's CheckpointService vs the seed's git CLI,
# side by side in one run. See checkpoint_bench.py and README.checkpoint.md.
#   HS_BUILD_DIR=/path/to/build bench/checkpoint_bench.sh [--files 20000] [--mb 200]
# Small smoke run: bench/checkpoint_bench.sh --files 2000 --mb 20
set -eu
# every harnessd started here scrapes on a free port, not the default 9090
export HARNESS_METRICS_LISTEN=${HARNESS_METRICS_LISTEN:-127.0.0.1:0}
here=$(cd "$(dirname "$0")" && pwd)
export HS_SOURCE_DIR="${HS_SOURCE_DIR:-$here/..}"
export HS_BUILD_DIR="${HS_BUILD_DIR:-$HS_SOURCE_DIR/build}"
[ -x "$HS_BUILD_DIR/server/harnessd" ] || { echo "no harnessd in $HS_BUILD_DIR (set HS_BUILD_DIR)" >&2; exit 2; }
[ -d "$HS_BUILD_DIR/pygen" ] || { echo "no python stubs in $HS_BUILD_DIR/pygen (build the tests)" >&2; exit 2; }
command -v git >/dev/null || { echo "git CLI needed for the seed side" >&2; exit 2; }
echo "machine: $(uname -srm), $(nproc) cpus, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
     "$(git --version), fs: $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}')"
exec /usr/bin/python3 "$here/checkpoint_bench.py" "$@"
