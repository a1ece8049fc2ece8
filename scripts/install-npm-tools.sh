#!/usr/bin/env bash
# Installs the npm packages the tests use into DIR/node_modules (a fixture
# of ctest, like install-helm.sh): @apidevtools/swagger-parser, the
# independent OpenAPI validator of tests/integration/test_openapi.py.
#
#   scripts/install-npm-tools.sh [DIR]      DIR default: <repo>/build/tools/node
#
# Idempotent: an installed, working copy is kept. Needs node and npm (as
# root it installs Debian's npm when there is none).
set -euo pipefail

PKGS=("@apidevtools/swagger-parser@10.1.1")
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:-$here/../build/tools/node}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

works() { [[ -f "$dir/node_modules/@apidevtools/swagger-parser/package.json" ]] &&
  (cd "$dir" && node -e 'require("@apidevtools/swagger-parser")') >/dev/null 2>&1; }
if works; then
  echo "$dir/node_modules"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "install-npm-tools: npm not found; installing Debian's npm" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends npm >&2 ||
      { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends npm >&2; }
  fi
  command -v npm >/dev/null 2>&1 || { echo "install-npm-tools: npm not found" >&2; exit 1; }
fi
[[ -f "$dir/package.json" ]] || echo '{"private":true}' > "$dir/package.json"
(cd "$dir" && npm install --no-audit --no-fund --no-save --loglevel=error "${PKGS[@]}" >&2)
works || { echo "install-npm-tools: swagger-parser does not load after install" >&2; exit 1; }
echo "$dir/node_modules"
