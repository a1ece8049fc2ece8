#!/bin/sh
# Runs the model-based test of the task state machine (tests/model) long,
# with random seeds, against the harnessd of a build dir, and reports how
# many steps ran clean.
#
#   scripts/model-soak.sh [--steps N] [--per-run N] [--build DIR] [--keep-going]
#
# --steps: total steps (default 100000), in runs of --per-run steps
# (default 5000), each with a fresh harnessd, data dir and random seed.
# Stops at the first failure (its seed and the recent steps are printed;
# rerun one seed with tests/model/model_driver.py --seed S --steps N)
# unless --keep-going. Prints one JSON line per run and a summary.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
total=100000
per_run=5000
build="$here/build"
keep_going=0
while [ $# -gt 0 ]; do
	case "$1" in
	--steps) total=$2; shift 2 ;;
	--per-run) per_run=$2; shift 2 ;;
	--build) build=$(cd "$2" && pwd); shift 2 ;;
	--keep-going) keep_going=1; shift ;;
	-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
	*) echo "model-soak: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -x "$build/server/harnessd" ] || { echo "model-soak: no harnessd in $build (build first)" >&2; exit 2; }
[ -d "$build/pygen" ] || { echo "model-soak: no python stubs in $build/pygen" >&2; exit 2; }
export PYTHONPATH="$build/pygen:$here/tests/integration:$here/tests/model"
export PYTHONDONTWRITEBYTECODE=1 HS_BUILD_DIR="$build" HS_SOURCE_DIR="$here"
clean=0 runs=0 failures=0
start=$(date +%s)
while [ "$clean" -lt "$total" ]; do
	n=$per_run
	[ $((total - clean)) -lt "$n" ] && n=$((total - clean))
	seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
	set +e
	out=$(/usr/bin/python3 "$here/tests/model/model_driver.py" --seed "$seed" --steps "$n" 2>/tmp/model-soak.$$.err)
	rc=$?
	set -e
	echo "$out"
	runs=$((runs + 1))
	got=$(printf '%s\n' "$out" | tail -1 | sed -n 's/.*"steps_clean": \([0-9]*\).*/\1/p')
	clean=$((clean + ${got:-0}))
	if [ "$rc" -ne 0 ]; then
		failures=$((failures + 1))
		cat /tmp/model-soak.$$.err >&2
		if [ "$keep_going" -eq 0 ]; then
			break
		fi
	fi
done
rm -f /tmp/model-soak.$$.err
echo "{\"summary\": true, \"steps_clean\": $clean, \"runs\": $runs, \"failures\": $failures, \"seconds\": $(( $(date +%s) - start ))}"
[ "$failures" -eq 0 ]
