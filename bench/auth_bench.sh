#!/usr/bin/env bash
# Benchmark: login, against a fixed-answer user service (nginx), through
#   gateway  wrk  -> harness-gateway -> harnessd (upstream backend) -> nginx
#   grpc     h2load -> harnessd AuthService/Login (gRPC, direct)   -> nginx
#   express  wrk  -> the seed's Express BFF (bench/auth/express-bff) -> nginx
# one subject after another, each in fresh processes, ROUNDS times. Records
# req/s, p50/p99, errors, RSS under load (sampled VmRSS), VmHWM and CPU
# seconds of each process.
#
#   bench/auth_bench.sh            (figures and notes: bench/README.auth.md)
# Env: BUILD (build dir, default build), DURATION (s, default 12), WARMUP
# (s, default 3), ROUNDS (default 2), CONNS (default 50), WRK_THREADS
# (default 2), H2_STREAMS (default 20), H2_THREADS (default 1), KEEP=1 keeps
# the work dir (logs, raw wrk/h2load output).
# Needs: a build (harnessd, harness-gateway), wrk, h2load, nginx (nginx-light),
# node + npm (the Express deps are installed into bench/auth/express-bff on
# first run). Builds nothing.
set -euo pipefail
# every harnessd started here scrapes on a free port, not the default 9090
export HARNESS_METRICS_LISTEN=${HARNESS_METRICS_LISTEN:-127.0.0.1:0}
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
DURATION=${DURATION:-12}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-50}
WRK_THREADS=${WRK_THREADS:-2}
H2_STREAMS=${H2_STREAMS:-20}
H2_THREADS=${H2_THREADS:-1}
HARNESSD=$BUILD/server/harnessd
GATEWAY=$BUILD/gateway/harness-gateway
BFF=bench/auth/express-bff
# The key nginx's access token is signed with (see bench/auth/nginx.conf.in).
export HARNESS_JWT_SECRET=harness-bench-jwt-secret-0123456789abcdef
export USER_SERVICE_API_KEY=bench-api-key
LOGIN_JSON='{"email":"alice@example.com","password":"password123"}'

for b in "$HARNESSD" "$GATEWAY"; do
	[[ -x $b ]] || { echo "missing $b: build first (cmake -S . -B $BUILD && cmake --build $BUILD), or set BUILD=" >&2; exit 1; }
done
for t in wrk h2load nginx node npm curl python3; do
	command -v "$t" >/dev/null || { echo "missing $t (wrk, nghttp2-client, nginx-light, nodejs, npm)" >&2; exit 1; }
done

out=$(mktemp -d /tmp/auth-bench.XXXXXX)
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
# A free loopback port (bound and released; nothing else here takes it meanwhile).
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port pid
	local i
	for i in $(seq 100); do
		kill -0 "$2" 2>/dev/null || { echo "process $2 died before listening on $1" >&2; return 1; }
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listening on $1 after 10 s" >&2
	return 1
}
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }       # kB
# VmRSS of the given pids every 0.25 s into a file, until killed (no forks
# but sleep). VmHWM alone would also count startup transients.
sample_rss() { # file pid...
	local f=$1 p k v r
	shift
	while :; do
		for p in "$@"; do
			while read -r k v r; do
				[[ $k == VmRSS: ]] && { echo "$p $v"; break; }
			done < "/proc/$p/status" || true
		done
		sleep 0.25
	done > "$f"
}
SAMPLER=
start_sampler() { sample_rss "$out/rss.txt" "$@" & SAMPLER=$!; pids+=("$SAMPLER"); }
stop_sampler() { stop "$SAMPLER"; }
rss() { awk -v p="$1" '$1 == p && $2 > m {m = $2} END {print m + 0}' "$out/rss.txt"; } # kB
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }      # utime + stime
TCK=$(getconf CLK_TCK)
cpu_s() { awk -v a="$1" -v b="$2" -v t="$TCK" 'BEGIN {printf "%.1f", (b - a) / t}'; }

# npm deps of the Express BFF (node_modules is not committed).
if [[ ! -d $BFF/node_modules/express || ! -d $BFF/node_modules/express-validator ]]; then
	echo "installing the Express BFF's npm packages into $BFF/node_modules"
	(cd "$BFF" && npm install --no-audit --no-fund --loglevel=error)
fi

# gRPC frame of LoginRequest{email: 1, password: 2}: flag 0, length 32, message.
printf '\x00\x00\x00\x00\x20\x0a\x11alice@example.com\x12\x0bpassword123' > "$out/login.bin"

# --- the fake user service ---------------------------------------------------
NG_PORT=$(port)
sed -e "s|@DIR@|$out|g" -e "s|@PORT@|$NG_PORT|g" bench/auth/nginx.conf.in > "$out/nginx.conf"
nginx -c "$out/nginx.conf" -p "$out" 2>"$out/nginx.stderr" &
NG_PID=$!
pids+=("$NG_PID")
wait_port "$NG_PORT" "$NG_PID"
NG_WORKER=$(pgrep -P "$NG_PID" | head -1)
UPSTREAM=http://127.0.0.1:$NG_PORT
curl -sf -XPOST "$UPSTREAM/api/v1/auth/login" -d "$LOGIN_JSON" | grep -q '"access_token"'

# --- helpers -----------------------------------------------------------------
results=$out/results.tsv # subject round rps p50 p99 errors rss... cpu...
printf 'subject\tround\treq/s\tp50 ms\tp99 ms\terrors\tRSS under load kB (max VmRSS)\tVmHWM kB\tCPU s\n' > "$results"

to_ms() { # wrk latency "1.23ms" / "456.78us" / "1.51s" -> ms
	awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
		printf "%.2f", n }'
}
run_wrk() { # url tag -> sets RPS P50 P99 ERRS
	local f=$out/wrk-$2.txt
	wrk -t "$WRK_THREADS" -c "$CONNS" -d "${WARMUP}s" -s bench/auth/login.lua "$1" > /dev/null
	wrk -t "$WRK_THREADS" -c "$CONNS" -d "${DURATION}s" --latency -s bench/auth/login.lua "$1" > "$f"
	RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$f")
	P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
	P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
	ERRS=$(awk '/Non-2xx or 3xx responses:/ {n += $NF}
		/Socket errors:/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$f")
}
login_ok() { # url: one login answers 200 with the frontend shape
	curl -sf -XPOST "$1" -H 'Content-Type: application/json' -d "$LOGIN_JSON" | grep -q '"accessToken"' ||
		{ echo "login through $1 failed" >&2; return 1; }
}
start_harnessd() { # tag -> HD_PID HD_PORT
	HD_PORT=$(port)
	"$HARNESSD" --listen "127.0.0.1:$HD_PORT" --data-dir "$out/data-$1" --log-level warn \
		--auth-backend upstream --user-service-url "$UPSTREAM" 2>"$out/harnessd-$1.log" >/dev/null &
	HD_PID=$!
	pids+=("$HD_PID")
	wait_port "$HD_PORT" "$HD_PID"
}
lines() { awk 'END {print NR}' "$1"; }

# --- the subjects --------------------------------------------------------------
gateway() { # round
	local tag=gw$1 gp c0 c1 g0 g1 n0 n1 w0
	start_harnessd "$tag"
	gp=$(port)
	# wrk's connections all come from one address: allow them all (the
	# default per-client cap, 8, would close the rest: read errors)
	"$GATEWAY" --listen "127.0.0.1:$gp" --grpc-target "127.0.0.1:$HD_PORT" --log-level warn \
		--env production --max-connections-per-client "$CONNS" ${GW_ARGS:-} \
		2>"$out/gateway-$tag.log" >/dev/null &
	local GW_PID=$!
	pids+=("$GW_PID")
	wait_port "$gp" "$GW_PID"
	login_ok "http://127.0.0.1:$gp/api/v1/auth/login"
	w0=$(lines "$out/harnessd-$tag.log")
	c0=$(cpu_ticks "$HD_PID"); g0=$(cpu_ticks "$GW_PID"); n0=$(cpu_ticks "$NG_WORKER")
	start_sampler "$HD_PID" "$GW_PID"
	# where the resident memory is, halfway through the measured run: each
	# process's own (anon) and library pages, and the pair's distinct pages
	# (a library page both map counts once; root only)
	{ sleep "$((WARMUP + DURATION / 2))"
	  echo "round $1 gateway+harnessd at mid-run: $(python3 bench/mem_footprint.py "$HD_PID" "$GW_PID")"
	} > "$out/memory-$tag.txt" 2>&1 &
	local MEM_PID=$!
	pids+=("$MEM_PID")
	run_wrk "http://127.0.0.1:$gp/api/v1/auth/login" "$tag"
	stop "$MEM_PID"
	stop_sampler
	c1=$(cpu_ticks "$HD_PID"); g1=$(cpu_ticks "$GW_PID"); n1=$(cpu_ticks "$NG_WORKER")
	# the CPU figures include the warm-up run (WARMUP s of the same load)
	printf 'gateway+harnessd\t%s\t%s\t%s\t%s\t%s\tharnessd %s + gateway %s = %s\tharnessd %s + gateway %s = %s\tharnessd %s + gateway %s (nginx %s)\n' \
		"$1" "$RPS" "$P50" "$P99" "$((ERRS + $(lines "$out/harnessd-$tag.log") - w0))" \
		"$(rss "$HD_PID")" "$(rss "$GW_PID")" "$(($(rss "$HD_PID") + $(rss "$GW_PID")))" \
		"$(hwm "$HD_PID")" "$(hwm "$GW_PID")" "$(($(hwm "$HD_PID") + $(hwm "$GW_PID")))" \
		"$(cpu_s "$c0" "$c1")" "$(cpu_s "$g0" "$g1")" "$(cpu_s "$n0" "$n1")" >> "$results"
	stop "$GW_PID"
	stop "$HD_PID"
}

grpc_direct() { # round
	local tag=grpc$1 c0 c1 n0 n1 f st w0
	start_harnessd "$tag"
	st=$(curl -s --http2-prior-knowledge -D - -o /dev/null -H 'content-type: application/grpc' \
		-H 'te: trailers' --data-binary @"$out/login.bin" \
		"http://127.0.0.1:$HD_PORT/harness.v1.AuthService/Login" | tr -d '\r' | awk '/^grpc-status:/ {print $2}')
	[[ $st == 0 ]] || { echo "gRPC Login answered grpc-status '$st'" >&2; return 1; }
	f=$out/h2load-$tag.txt
	w0=$(lines "$out/harnessd-$tag.log")
	c0=$(cpu_ticks "$HD_PID"); n0=$(cpu_ticks "$NG_WORKER")
	start_sampler "$HD_PID"
	h2load -D "$DURATION" --warm-up-time="$WARMUP" -c "$CONNS" -m "$H2_STREAMS" -t "$H2_THREADS" \
		-d "$out/login.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
		--log-file="$out/h2load-$tag.log" \
		"http://127.0.0.1:$HD_PORT/harness.v1.AuthService/Login" > "$f"
	stop_sampler
	c1=$(cpu_ticks "$HD_PID"); n1=$(cpu_ticks "$NG_WORKER")
	RPS=$(awk '/^finished in/ {printf "%.0f", $4}' "$f")
	# h2load counts HTTP statuses; a gRPC error is an HTTP 200 too, so the
	# harnessd warn log lines written during the run (an upstream failure
	# logs one) are added to the errors.
	ERRS=$(awk '/^requests:/ {print $10 + $12 + $14}' "$f")
	ERRS=$((ERRS + $(awk '/^status codes:/ {print $5 + $7 + $9}' "$f") + $(lines "$out/harnessd-$tag.log") - w0))
	read -r P50 P99 < <(sort -n -k3,3 "$out/h2load-$tag.log" | awk '{v[NR] = $3} END {
		i50 = int(NR * 0.50); if (i50 < 1) i50 = 1; i99 = int(NR * 0.99); if (i99 < 1) i99 = 1;
		printf "%.2f %.2f\n", v[i50] / 1000, v[i99] / 1000 }')
	printf 'gRPC Login direct\t%s\t%s\t%s\t%s\t%s\tharnessd %s\tharnessd %s\tharnessd %s (nginx %s)\n' \
		"$1" "$RPS" "$P50" "$P99" "$ERRS" "$(rss "$HD_PID")" "$(hwm "$HD_PID")" "$(cpu_s "$c0" "$c1")" \
		"$(cpu_s "$n0" "$n1")" >> "$results"
	stop "$HD_PID"
}

express() { # round
	local tag=express$1 ep c0 c1 n0 n1
	ep=$(port)
	NODE_ENV=production PORT=$ep HOST=127.0.0.1 USER_SERVICE_URL=$UPSTREAM \
		node "$BFF/src/app.js" >"$out/express-$tag.log" 2>&1 &
	local NODE_PID=$!
	pids+=("$NODE_PID")
	wait_port "$ep" "$NODE_PID"
	login_ok "http://127.0.0.1:$ep/api/v1/auth/login"
	c0=$(cpu_ticks "$NODE_PID"); n0=$(cpu_ticks "$NG_WORKER")
	start_sampler "$NODE_PID"
	run_wrk "http://127.0.0.1:$ep/api/v1/auth/login" "$tag"
	stop_sampler
	c1=$(cpu_ticks "$NODE_PID"); n1=$(cpu_ticks "$NG_WORKER")
	printf 'Express BFF (node %s)\t%s\t%s\t%s\t%s\t%s\tnode %s\tnode %s\tnode %s (nginx %s)\n' \
		"$(node --version)" "$1" "$RPS" "$P50" "$P99" \
		"$((ERRS + $(grep -c '^Error:' "$out/express-$tag.log" || true)))" \
		"$(rss "$NODE_PID")" "$(hwm "$NODE_PID")" "$(cpu_s "$c0" "$c1")" "$(cpu_s "$n0" "$n1")" >> "$results"
	stop "$NODE_PID"
}

echo "auth bench: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  $DURATION s per run after a $WARMUP s warm-up, $CONNS connections; wrk -t $WRK_THREADS; h2load -t $H2_THREADS -m $H2_STREAMS; $ROUNDS rounds"
for r in $(seq "$ROUNDS"); do
	echo "round $r: gateway"; gateway "$r"
	echo "round $r: gRPC direct"; grpc_direct "$r"
	echo "round $r: Express"; express "$r"
done

echo
column -t -s $'\t' "$results"
echo
cat "$out"/memory-gw*.txt 2>/dev/null || true
echo "nginx (the fixed-answer user service): worker peak RSS $(hwm "$NG_WORKER") kB, master $(hwm "$NG_PID") kB"
# Ratios, per round: gateway+harnessd over Express.
awk -F'\t' '
	function total(f,  a) { if (split(f, a, "= ") == 2) return a[2]; split(f, a, " "); return a[2] }
	$1 == "gateway+harnessd" { g_rps[$2] = $3; g_p99[$2] = $5; g_rss[$2] = total($7); g_hwm[$2] = total($8) }
	$1 ~ /^Express/ { e_rps[$2] = $3; e_p99[$2] = $5; e_rss[$2] = total($7); e_hwm[$2] = total($8) }
	END { for (r in g_rps) if (e_rps[r] > 0 && g_rss[r] > 0 && g_hwm[r] > 0)
		printf "round %s: gateway+harnessd vs Express: %.1fx the req/s; RSS under load %.1fx smaller (%d vs %d kB); VmHWM %.1fx smaller (%d vs %d kB); p99 %s vs %s ms\n",
			r, g_rps[r] / e_rps[r], e_rss[r] / g_rss[r], g_rss[r], e_rss[r],
			e_hwm[r] / g_hwm[r], g_hwm[r], e_hwm[r], g_p99[r], e_p99[r] }' "$results" | sort
