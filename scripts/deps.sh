#!/usr/bin/env bash
# Installs the Debian 12 packages Harness needs to build, test and benchmark.
# Idempotent: only missing packages are installed. Not root? It prints the
# apt-get line to run with sudo and exits non-zero.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev protobuf-compiler grpc-proto
  libgit2-dev libcurl4-openssl-dev libcivetweb-dev libsqlite3-dev libjansson-dev
  libsodium-dev libssl-dev libcmocka-dev libseccomp-dev
  golang-github-grpc-ecosystem-grpc-gateway-dev
  python3 python3-grpcio python3-protobuf python3-yaml python3-cryptography
  bubblewrap curl nghttp2-client clang libclang-rt-14-dev
  libpq-dev postgresql-15
  chromium chromium-driver python3-selenium
  zsh fish jq prometheus
)
# Extra packages only the benchmarks need (installed with --bench).
BENCH_PKGS=(wrk nginx-light hyperfine g++ libgrpc++-dev)

want=("${PKGS[@]}")
[[ "${1:-}" == "--bench" ]] && want+=("${BENCH_PKGS[@]}")

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "deps: all ${#want[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "deps: not root; run:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
