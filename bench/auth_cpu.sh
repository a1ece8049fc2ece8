#!/usr/bin/env bash
# CPU per login of gateway+harnessd, for A/B runs on a shared machine:
#   wrk -c50 -> harness-gateway -> harnessd (--auth-backend upstream) -> nginx
# and, with DIRECT=1, h2load (-c50 -m20) straight at AuthService/Login.
# For each build given, alternating, ROUNDS times: req/s, p99, and per
# login the CPU µs (utime+stime), context switches (all threads) and
# syscalls (perf stat raw_syscalls:sys_enter; root) of each process.
# Ratios per login move far less with the machine's load than req/s do.
#
#   bench/auth_cpu.sh build /tmp/base-build     (figures: bench/README.auth.md)
# Env: D (s per run, default 8), WARMUP (s, default 3), ROUNDS (default 3),
# DIRECT=1 adds the h2load run, PERF=1 records perf -g of both processes
# for 4 s (kept with KEEP=1). Needs wrk, h2load, nginx, perf, python3.
set -euo pipefail
export HARNESS_METRICS_LISTEN=${HARNESS_METRICS_LISTEN:-127.0.0.1:0}
export HARNESS_JWT_SECRET=harness-bench-jwt-secret-0123456789abcdef USER_SERVICE_API_KEY=bench-api-key
cd "$(dirname "$0")/.."
D=${D:-8}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}
(($# > 0)) || set -- build
for b in "$@"; do
	[[ -x $b/server/harnessd && -x $b/gateway/harness-gateway ]] || { echo "$b: no harnessd/harness-gateway" >&2; exit 1; }
done
out=$(mktemp -d /tmp/auth-cpu.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ ${KEEP:-0} == 1 ]]; then echo "work dir kept: $out"; else rm -rf "$out"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
stop() { # pid: TERM, wait, drop from pids
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local keep=() p
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	local i
	for i in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listening on $1" >&2
	return 1
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ctx() { cat /proc/"$1"/task/*/status 2>/dev/null |
	awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n + 0}'; }
per() { awk -v a="$1" -v b="$2" -v n="$3" -v m="$4" 'BEGIN {printf "%.*f", m == 1 ? 2 : 0, (b - a) * m / (n > 0 ? n : 1)}'; }
TCK=$(getconf CLK_TCK)
US=$((1000000 / TCK))
printf '\x00\x00\x00\x00\x20\x0a\x11alice@example.com\x12\x0bpassword123' > "$out/login.bin"

NG=$(port)
sed -e "s|@DIR@|$out|g" -e "s|@PORT@|$NG|g" bench/auth/nginx.conf.in > "$out/nginx.conf"
nginx -c "$out/nginx.conf" -p "$out" 2>"$out/nginx.stderr" &
pids+=($!)
wait_port "$NG"

syscalls() { # file -> count
	awk '/raw_syscalls/ {gsub(/,/, "", $1); print $1}' "$1"
}
one() { # build round
	local b=$1 r=$2 tag hp gp HD GW c0 c1 g0 g1 x0 x1 y0 y1 n
	tag=$(basename "$b")-$r
	hp=$(port)
	"$b/server/harnessd" --listen "127.0.0.1:$hp" --data-dir "$out/data-$tag" --log-level warn \
		--auth-backend upstream --user-service-url "http://127.0.0.1:$NG" 2>"$out/hd-$tag.log" >/dev/null &
	HD=$!; pids+=("$HD")
	wait_port "$hp"
	gp=$(port)
	"$b/gateway/harness-gateway" --listen "127.0.0.1:$gp" --grpc-target "127.0.0.1:$hp" --log-level warn \
		--env production --max-connections-per-client 50 2>"$out/gw-$tag.log" >/dev/null &
	GW=$!; pids+=("$GW")
	wait_port "$gp"
	local url=http://127.0.0.1:$gp/api/v1/auth/login
	wrk -t 2 -c 50 -d "${WARMUP}s" -s bench/auth/login.lua "$url" >/dev/null
	c0=$(ticks "$HD"); g0=$(ticks "$GW"); x0=$(ctx "$HD"); y0=$(ctx "$GW")
	perf stat -e raw_syscalls:sys_enter -p "$HD" -o "$out/hd-$tag.sc" -- sleep "$D" 2>/dev/null &
	local P1=$!
	perf stat -e raw_syscalls:sys_enter -p "$GW" -o "$out/gw-$tag.sc" -- sleep "$D" 2>/dev/null &
	local P2=$!
	if [[ ${PERF:-0} == 1 ]]; then
		perf record -F 999 -g -p "$HD" -o "$out/hd-$tag.perf" -- sleep 4 >/dev/null 2>&1 &
		perf record -F 999 -g -p "$GW" -o "$out/gw-$tag.perf" -- sleep 4 >/dev/null 2>&1 &
	fi
	wrk -t 2 -c 50 -d "${D}s" --latency -s bench/auth/login.lua "$url" > "$out/wrk-$tag.txt"
	c1=$(ticks "$HD"); g1=$(ticks "$GW"); x1=$(ctx "$HD"); y1=$(ctx "$GW")
	wait "$P1" "$P2" || true
	n=$(awk '/requests in/ {print $1}' "$out/wrk-$tag.txt")
	printf '%-24s %s  gateway  %6.0f req/s  p99 %-8s  CPU us/login hd %s gw %s  ctx sw/login hd %s gw %s  syscalls/login hd %s gw %s  load %s\n' \
		"$b" "$r" "$(awk '/^Requests\/sec/ {print $2}' "$out/wrk-$tag.txt")" \
		"$(awk '$1 == "99%" {print $2}' "$out/wrk-$tag.txt")" \
		"$(per "$c0" "$c1" "$n" "$US")" "$(per "$g0" "$g1" "$n" "$US")" \
		"$(per "$x0" "$x1" "$n" 1)" "$(per "$y0" "$y1" "$n" 1)" \
		"$(per 0 "$(syscalls "$out/hd-$tag.sc")" "$n" 1)" "$(per 0 "$(syscalls "$out/gw-$tag.sc")" "$n" 1)" \
		"$(cut -d' ' -f1 /proc/loadavg)"
	stop "$GW"
	if [[ ${DIRECT:-0} == 1 ]]; then
		c0=$(ticks "$HD")
		h2load -D "$D" -c 50 -m 20 -t 1 -d "$out/login.bin" -H 'content-type: application/grpc' \
			-H 'te: trailers' "http://127.0.0.1:$hp/harness.v1.AuthService/Login" > "$out/h2-$tag.txt"
		c1=$(ticks "$HD")
		n=$(awk '/^requests:/ {print $8}' "$out/h2-$tag.txt")
		printf '%-24s %s  direct   %6.0f req/s  CPU us/login hd %s  load %s\n' "$b" "$r" \
			"$(awk '/^finished in/ {print $4}' "$out/h2-$tag.txt")" "$(per "$c0" "$c1" "$n" "$US")" \
			"$(cut -d' ' -f1 /proc/loadavg)"
	fi
	stop "$HD"
}
echo "auth cpu: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $D s runs after $WARMUP s, wrk -t2 -c50"
for r in $(seq "$ROUNDS"); do
	for b in "$@"; do one "$b" "$r"; done
done
