#!/usr/bin/env bash
# Longer fuzzing runs (ctest runs each target for a few seconds only).
#   scripts/fuzz.sh                 every target, 300 s each
#   scripts/fuzz.sh -t 60 gateway   one target, 60 s
#   scripts/fuzz.sh --merge         also add inputs with new coverage to the
#                                   committed seeds (tests/fuzz/corpus/<target>)
# Builds with clang in build-fuzz/ (the targets exist only in clang builds).
# Inputs grow in build-fuzz/fuzz-work/<target>; a crash stops the run and is
# left there as crash-* (reproduce: build-fuzz/tests/fuzz/fuzz_<target> FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=300
merge=0
targets=()
while (($#)); do
  case "$1" in
    -t) secs=$2; shift 2 ;;
    --merge) merge=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=(rpc_decode pbjson struct_json gateway)

CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHS_WERROR=ON >/dev/null
cmake --build build-fuzz -j"$(nproc 2>/dev/null || echo 2)" \
  --target $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null

status=0
for t in "${targets[@]}"; do
  work=build-fuzz/fuzz-work/$t
  mkdir -p "$work"
  echo "==> fuzz_$t for ${secs}s"
  if ! ASAN_OPTIONS=detect_leaks=1 "build-fuzz/tests/fuzz/fuzz_$t" -max_total_time="$secs" \
      -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$work/" "$work" "tests/fuzz/corpus/$t" 2>"$work.log"; then
    echo "fuzz_$t FAILED: see $work.log and $work/crash-*" >&2
    status=1
    continue
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$work.log" | tail -3
  if ((merge)); then
    "build-fuzz/tests/fuzz/fuzz_$t" -merge=1 "tests/fuzz/corpus/$t" "$work" 2>/dev/null
    echo "    seeds now: $(ls "tests/fuzz/corpus/$t" | wc -l)"
  fi
done
exit $status
