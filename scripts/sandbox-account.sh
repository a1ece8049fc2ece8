#!/usr/bin/env bash
# The unprivileged account sandboxes run as (bwrap sandboxes, and the
# Firecracker jailer's default uid/gid): a system user and group with no
# home, no shell and no password, distinct from the account harnessd runs
# as. harnessd looks it up by name (default harness-sandbox, see
# --sandbox-uid/--sandbox-gid). scripts/run.sh, the Dockerfile and the test
# setup all create it with this script.
#
#   sandbox-account.sh create [NAME [UID]]   idempotent; prints "UID GID"
#   sandbox-account.sh remove [NAME]         removes the user and its group
#
# Needs root (useradd/groupadd). Retries while another process holds the
# passwd/group locks (parallel test runs).
set -euo pipefail

cmd=${1:-create}
name=${2:-harness-sandbox}
want_uid=${3:-}

if [[ ! $name =~ ^[a-z_][a-z0-9_-]{0,30}$ ]]; then
  echo "sandbox-account: bad account name '$name'" >&2
  exit 2
fi

retry() {
  local i
  for i in $(seq 1 50); do
    if "$@" 2>/tmp/.sandbox-account.$$; then
      rm -f /tmp/.sandbox-account.$$
      return 0
    fi
    if ! grep -qi "lock" /tmp/.sandbox-account.$$; then
      cat /tmp/.sandbox-account.$$ >&2
      rm -f /tmp/.sandbox-account.$$
      return 1
    fi
    sleep 0.2
  done
  cat /tmp/.sandbox-account.$$ >&2
  rm -f /tmp/.sandbox-account.$$
  return 1
}

case $cmd in
create)
  if ! getent group "$name" >/dev/null; then
    if [[ -n $want_uid ]]; then
      retry groupadd --system --gid "$want_uid" "$name"
    else
      retry groupadd --system "$name"
    fi
  fi
  if ! getent passwd "$name" >/dev/null; then
    args=(--system --gid "$name" --no-create-home --home-dir /nonexistent
          --shell /usr/sbin/nologin --comment "Harness sandboxes")
    [[ -n $want_uid ]] && args+=(--uid "$want_uid")
    retry useradd "${args[@]}" "$name"
  fi
  echo "$(id -u "$name") $(getent group "$name" | cut -d: -f3)"
  ;;
remove)
  if getent passwd "$name" >/dev/null; then
    retry userdel "$name"
  fi
  if getent group "$name" >/dev/null; then
    retry groupdel "$name"
  fi
  ;;
*)
  echo "usage: sandbox-account.sh create [NAME [UID]] | remove [NAME]" >&2
  exit 2
  ;;
esac
