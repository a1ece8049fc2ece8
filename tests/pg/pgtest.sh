#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for tests: its own data directory, a Unix
# socket in DIR and a free loopback TCP port.
#
#   pgtest.sh start DIR   initdb + pg_ctl start; writes DIR/dsn (a libpq URI
#                         for database "harness", user "harness") and prints it
#   pgtest.sh stop DIR    pg_ctl stop -m immediate, then removes DIR
#   pgtest.sh restart DIR pg_ctl restart -m fast (same port and socket)
#   pgtest.sh down DIR    crash it (pg_ctl stop -m immediate)
#   pgtest.sh up DIR      start it again with the same options
#
# PostgreSQL refuses to run as root: as root the server runs as the
# "postgres" system user the Debian package creates (runuser), otherwise as
# the caller. Durability settings are PostgreSQL's defaults (fsync on).
set -euo pipefail

cmd=${1:?usage: pgtest.sh start|stop|restart|down|up DIR}
dir=${2:?usage: pgtest.sh start|stop|restart DIR}
bin=${HS_PG_BIN:-/usr/lib/postgresql/15/bin}

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
start)
  [[ -x "$bin/initdb" ]] || { echo "pgtest: $bin/initdb missing (apt-get install postgresql-15)" >&2; exit 1; }
  # A server left by an interrupted run: stop it and start afresh.
  if [[ -d "$dir" ]]; then "$0" stop "$dir"; fi
  mkdir -p "$dir"
  chmod 0700 "$dir"
  [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # A linguistic collation (ICU en-US: "B" after "a", unlike byte order),
  # as the official image's en_US.utf8 gives, so every PostgreSQL test
  # runs under one (the store makes its ids COLLATE "C"). PostgreSQL 15
  # has ICU built in: no OS locale needed; libc's part is C.UTF-8.
  as_pg "$bin/initdb" -D "$dir/data" -U harness -A trust -E UTF8 --no-sync \
    --locale=C.UTF-8 --locale-provider=icu --icu-locale=en-US >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null ||
    { cat "$dir/server.log" >&2; exit 1; }
  as_pg "$bin/createdb" -h "$dir" -p "$port" -U harness harness
  dsn="postgresql:///harness?host=$dir&port=$port&user=harness"
  echo "$dsn" >"$dir/dsn"
  chmod 0755 "$dir"  # harnessd and tests (root or not) reach the socket
  echo "$dsn"
  ;;
stop)
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
restart)
  as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 restart >/dev/null
  ;;
down)
  # A crash: no shutdown checkpoint; the next start replays the WAL.
  as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null
  ;;
up)
  opts=$(sed -n 's/^[^ ]* //p' "$dir/data/postmaster.opts" 2>/dev/null || true)
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null
  ;;
*)
  echo "pgtest: unknown command $cmd" >&2
  exit 2
  ;;
esac
