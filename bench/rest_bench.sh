#!/usr/bin/env bash
# Benchmark: the same RPC over REST through harness-gateway and direct over
# gRPC, in the same run, against one harnessd (local backend, Bearer JWT):
#   rest  wrk    -> harness-gateway -> harnessd   GET /v1/tasks/bench-t, GET /v1/tasks?pageSize=1
#   grpc  h2load -> harnessd                       HealthService/GetTask, ListTasks(page_size 1)
# alternating, ROUNDS times. Records req/s, p50/p99 and the CPU each process
# spent per request (utime+stime over the run / requests), so the gateway's
# overhead per call is its own CPU per request plus what harnessd spends
# more per call than on the direct path.
#
#   bench/rest_bench.sh        (figures and notes: bench/README.md, "REST through the gateway")
# Env: BUILD (default build), DURATION (s, default 10), ROUNDS (default 2),
# CONNS (default 50), H2_STREAMS (default 20; h2load multiplexes, wrk cannot),
# GATEWAY (another harness-gateway binary to compare, e.g. an older build),
# KEEP=1 keeps the work dir.
# Needs: a build (harnessd, harness-gateway), wrk, h2load (scripts/deps.sh --bench).
set -euo pipefail
export HARNESS_METRICS_LISTEN=${HARNESS_METRICS_LISTEN:-127.0.0.1:0}
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-50}
H2_STREAMS=${H2_STREAMS:-20}
HARNESSD=$BUILD/server/harnessd
GATEWAY=${GATEWAY:-$BUILD/gateway/harness-gateway}
for b in "$HARNESSD" "$GATEWAY"; do
	[[ -x $b ]] || { echo "missing $b: build first" >&2; exit 1; }
done
for t in wrk h2load curl python3; do
	command -v "$t" >/dev/null || { echo "missing $t (scripts/deps.sh --bench)" >&2; exit 1; }
done

out=$(mktemp -d /tmp/rest-bench.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ ${KEEP:-0} == 1 ]]; then echo "work dir kept: $out"; else rm -rf "$out"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
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
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

gp=$(port)
HARNESS_ADMIN_EMAIL=admin@example.com HARNESS_ADMIN_PASSWORD=admin-password-1 \
	"$HARNESSD" --listen 127.0.0.1:$gp --data-dir "$out/data" --log-level warn \
	--sandbox-allow-same-uid 1 2>"$out/harnessd.log" >/dev/null &
hd=$!
pids+=("$hd")
wait_port "$gp"
hp=$(port)
# wrk's CONNS connections all come from one address: lift the per-client
# connection cap (8 by default, abuse resistance) and give every keep-alive
# connection its civetweb worker, or the gateway closes the surplus at accept.
"$GATEWAY" --listen 127.0.0.1:$hp --grpc-target 127.0.0.1:$gp --log-level warn \
	--max-connections-per-client $((CONNS + 8)) --threads $((2 * CONNS + 16)) \
	--gateway-secret-file "$out/data/gateway.key" 2>"$out/gateway.log" >/dev/null &
gw=$!
pids+=("$gw")
wait_port "$hp"
sleep 0.5

tok=$(curl -s "http://127.0.0.1:$hp/v1/auth:login" -H 'content-type: application/json' \
	-d '{"email":"admin@example.com","password":"admin-password-1"}' |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
for i in $(seq 0 49); do
	id=bench-t; [[ $i -gt 0 ]] && id=bench-t$i
	curl -sf "http://127.0.0.1:$hp/v1/tasks" -H "authorization: Bearer $tok" \
		-H 'content-type: application/json' \
		-d "{\"taskId\":\"$id\",\"totalSteps\":\"100\",\"heartbeatIntervalMs\":3600000,\"heartbeatTimeoutMs\":86400000,\"labels\":{\"bench\":\"yes\"}}" >/dev/null
done

# gRPC frames: GetTaskRequest{task_id:"bench-t"}, ListTasksRequest{page_size:1}
python3 - "$out" <<'EOF'
import struct, sys
def frame(b): return b"\x00" + struct.pack(">I", len(b)) + b
open(sys.argv[1] + "/get.bin", "wb").write(frame(b"\x0a\x07bench-t"))
open(sys.argv[1] + "/list.bin", "wb").write(frame(b"\x08\x01"))
EOF

# run NAME PID_OF_SERVERS... -- command: CPU per request of each server pid
measure() { # label kind(rest|grpc) path-or-method body-file
	local label=$1 kind=$2 what=$3 body=$4 t0h t0g t1h t1g reqs rps p50 p99 txt
	txt=$out/$label.txt # after: one local expands every word before assigning
	t0h=$(cpu_ticks "$hd"); t0g=$(cpu_ticks "$gw")
	if [[ $kind == rest ]]; then
		wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -H "authorization: Bearer $tok" \
			"http://127.0.0.1:$hp$what" >"$txt"
		reqs=$(awk '/requests in/ {print $1}' "$txt")
		rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$txt")
		p50=$(awk '$1=="50%" {print $2}' "$txt"); p99=$(awk '$1=="99%" {print $2}' "$txt")
		local bad; bad=$(awk '/Non-2xx/ {print $NF}' "$txt"); [[ -z $bad ]] || echo "  ($label: $bad non-2xx)" >&2
	else
		h2load -D "$DURATION" -c"$CONNS" -m"$H2_STREAMS" -t1 -d "$body" \
			-H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $tok" \
			"http://127.0.0.1:$gp$what" >"$txt"
		reqs=$(awk '/^requests:/ {print $4}' "$txt")
		rps=$(awk '/^finished in/ {gsub(",","",$4); printf "%.0f", $4}' "$txt")
		p50=$(awk '/time for request:/ {print $6 " (mean)"}' "$txt"); p99="-"
	fi
	t1h=$(cpu_ticks "$hd"); t1g=$(cpu_ticks "$gw")
	python3 - "$label" "$reqs" "$rps" "$p50" "$p99" $((t1h - t0h)) $((t1g - t0g)) "$hz" <<'EOF'
import sys
label, reqs, rps, p50, p99, dh, dg, hz = sys.argv[1:]
reqs = int(float(reqs)); hz = int(hz)
us = lambda t: 1e6 * int(t) / hz / max(reqs, 1)
print("%-14s %8s req/s  p50 %-10s p99 %-8s harnessd %6.1f us/req  gateway %6.1f us/req" %
      (label, rps, p50, p99, us(dh), us(dg) if label.startswith("rest") else 0.0))
EOF
}

echo "== $(date -u +%FT%TZ) $(nproc) CPUs; $CONNS connections; ${DURATION}s per subject; $(basename "$GATEWAY")"
for r in $(seq "$ROUNDS"); do
	echo "-- round $r"
	measure rest-GetTask rest /v1/tasks/bench-t ""
	measure grpc-GetTask grpc /harness.v1.HealthService/GetTask "$out/get.bin"
	measure rest-ListTasks rest "/v1/tasks?pageSize=1" ""
	measure grpc-ListTasks grpc /harness.v1.HealthService/ListTasks "$out/list.bin"
done
echo "gateway VmHWM $(awk '/^VmHWM/ {print $2, $3}' /proc/$gw/status), harnessd VmHWM $(awk '/^VmHWM/ {print $2, $3}' /proc/$hd/status)"
