#!/usr/bin/env bash
# Runs every test: installs missing packages, checks the source rules, builds
# as users build (Release with gcc and with clang, warnings as errors here),
# runs the libFuzzer targets briefly in the clang build, runs ctest (cmocka
# unit tests, integration tests on loopback, Python grpcio clients), then the
# same suite again built with AddressSanitizer +
# UndefinedBehaviorSanitizer.
#   scripts/test.sh                  everything (what CI runs)
#   HS_TEST_ASAN=0 scripts/test.sh   skip the sanitizer build (quicker, local only)
#   HS_TEST_RELEASE=0 scripts/test.sh  skip the Release gcc/clang builds (local only)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

scripts/deps.sh
scripts/check-source.sh

configure_build() { # name build-dir extra-cmake-args...
  local name=$1 dir=$2
  shift 2
  echo "==> [$name] configure + build ($dir)"
  cmake -S . -B "$dir" -DHS_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
}

run_suite() { # name build-dir extra-cmake-args...
  local name=$1 dir=$2
  configure_build "$@"
  echo "==> [$name] ctest"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900)
}

if [[ "${HS_TEST_RELEASE:-1}" != 0 ]]; then
  # Users build Release; both compilers must take the tree as it is.
  configure_build "release gcc" build-release -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc
  configure_build "release clang" build-clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang
  # The clang build has the libFuzzer targets: a few seconds each (longer
  # runs: scripts/fuzz.sh).
  echo "==> [release clang] fuzz targets"
  (cd build-clang && ctest -L fuzz --output-on-failure -j"$jobs")
fi
run_suite plain build -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [[ "${HS_TEST_ASAN:-1}" != 0 ]]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite asan+ubsan build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHS_SANITIZE=ON
fi
echo "==> all tests passed"
