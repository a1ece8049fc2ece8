#!/usr/bin/env bash
# Runs every test: installs missing packages, builds, runs ctest (cmocka unit
# tests, integration tests on loopback, Python grpcio clients), then the same
# suite again built with AddressSanitizer + UndefinedBehaviorSanitizer.
#   scripts/test.sh            both builds
#   HS_TEST_ASAN=0 scripts/test.sh   skip the sanitizer build (quicker, local only)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

scripts/deps.sh

run_suite() { # name build-dir extra-cmake-args...
  local name=$1 dir=$2
  shift 2
  echo "==> [$name] configure + build ($dir)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  echo "==> [$name] ctest"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900)
}

run_suite plain build
if [[ "${HS_TEST_ASAN:-1}" != 0 ]]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite asan+ubsan build-asan -DHS_SANITIZE=ON
fi
echo "==> all tests passed"
