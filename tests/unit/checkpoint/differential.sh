#!/bin/sh
# Long runs of the change-tracking differential test (issue 16): many seeds,
# more rounds than CI's fixed one. Stops at the first failing seed and says
# how to replay it.
#   tests/unit/checkpoint/differential.sh [build-dir] [first-seed] [seeds] [rounds]
set -eu
build=${1:-build}
first=${2:-1}
count=${3:-100}
rounds=${4:-200}
bin="$build/tests/unit/checkpoint/test_checkpoint_diff"
[ -x "$bin" ] || { echo "no $bin (build the tests first)" >&2; exit 2; }
seed=$first
last=$((first + count - 1))
while [ "$seed" -le "$last" ]; do
	if ! HS_CKPT_DIFF_SEED=$seed HS_CKPT_DIFF_ROUNDS=$rounds "$bin" >"/tmp/hs-ckpt-diff-$seed.log" 2>&1; then
		grep -v '^{"ts"' "/tmp/hs-ckpt-diff-$seed.log" | tail -40
		echo "seed $seed FAILED; replay: HS_CKPT_DIFF_SEED=$seed HS_CKPT_DIFF_ROUNDS=$rounds $bin" >&2
		exit 1
	fi
	rm -f "/tmp/hs-ckpt-diff-$seed.log"
	echo "seed $seed ok"
	seed=$((seed + 1))
done
echo "$count seeds x $rounds rounds: all equal"
