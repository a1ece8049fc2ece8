#!/bin/sh
# Issue 19: what following harness-node-address costs. Two TLS nodes on a
# private PostgreSQL (tests/pg/pgtest.sh) set up as integration.follow_nodes
# does; the Python SDK times sequential GetSandbox calls: direct to the
# holder, sent to the other node by a client-certificate caller (redirect +
# follow) and by a token caller (forwarded by the node). See follow_bench.py.
#   HS_BUILD_DIR=/path/to/build bench/follow_bench.sh [--calls 300]
set -eu
export HARNESS_METRICS_LISTEN=${HARNESS_METRICS_LISTEN:-127.0.0.1:0}
here=$(cd "$(dirname "$0")" && pwd)
export HS_SOURCE_DIR="${HS_SOURCE_DIR:-$here/..}"
export HS_BUILD_DIR="${HS_BUILD_DIR:-$HS_SOURCE_DIR/build}"
[ -x "$HS_BUILD_DIR/server/harnessd" ] || { echo "no harnessd in $HS_BUILD_DIR (set HS_BUILD_DIR)" >&2; exit 2; }
[ -d "$HS_BUILD_DIR/pygen" ] || { echo "no python stubs in $HS_BUILD_DIR/pygen (build the tests)" >&2; exit 2; }
pg=$(mktemp -d /tmp/hs-follow-bench-XXXXXX)
trap '"$HS_SOURCE_DIR/tests/pg/pgtest.sh" stop "$pg" >/dev/null 2>&1 || true; rm -rf "$pg"' EXIT
"$HS_SOURCE_DIR/tests/pg/pgtest.sh" start "$pg" >/dev/null
echo "machine: $(uname -srm), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
HS_TEST_STORE_PG="$(cat "$pg/dsn")" PYTHONPATH="$HS_BUILD_DIR/pygen:$HS_SOURCE_DIR/tests/integration" \
	PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 "$here/follow_bench.py" "$@"
