#!/usr/bin/env bash
# Measures rtb-io's HTTP server alone (example `bench_404`: reads the whole body, answers a fixed
# 404) against nginx doing the same (`return 404` with the same JSON body), under wrk with a
# 3.5 KB OpenRTB POST body. Servers get one worker pinned to core 0, wrk runs on core 1, so they
# do not fight for a core. Runs alternate nginx, rtb-io uring, rtb-io epoll for ROUNDS rounds,
# then print per-run req/s, medians and ratios against nginx.
#
# Usage: benches/scripts/server-vs-nginx.sh            (ROUNDS=3 DURATION_S=5 CONNECTIONS=32)
# Needs: nginx (nginx-light), wrk, taskset, cargo. Uses CARGO_TARGET_DIR if set.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
DURATION_S="${DURATION_S:-5}"
CONNECTIONS="${CONNECTIONS:-32}"
WARMUP_S="${WARMUP_S:-1}"
SERVER_CORE="${SERVER_CORE:-0}"
CLIENT_CORE="${CLIENT_CORE:-1}"
PORT_NGINX="${PORT_NGINX:-18080}"
PORT_URING="${PORT_URING:-18081}"
PORT_EPOLL="${PORT_EPOLL:-18082}"
BODY_BYTES_GENERATED=3500
PORT_WAIT_TRIES=100

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SAMPLE="$ROOT/../shared/openrtb-samples/18-pbsjava-auction-req-app-rewarded-video.json"
NOT_FOUND_BODY='{"error":"not found"}'

for tool in nginx wrk taskset cargo; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

WORK="$(mktemp -d -t server-vs-nginx.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "== build: cargo build --release -p rtb-io --example bench_404"
(cd "$ROOT" && cargo build --release -p rtb-io --example bench_404)
BENCH_404="$TARGET_DIR/release/examples/bench_404"
[[ -x "$BENCH_404" ]] || { echo "not built: $BENCH_404" >&2; exit 1; }

# The request body: sample 18 (3.5 KB) when the shared samples exist, else a generated one.
if [[ -f "$SAMPLE" ]]; then
    cp "$SAMPLE" "$WORK/body.json"
    echo "body: $SAMPLE ($(wc -c <"$WORK/body.json") bytes)"
else
    filler="$(head -c "$BODY_BYTES_GENERATED" /dev/zero | tr '\0' 'x')"
    printf '{"id":"gen-1","tmax":120,"imp":[{"id":"1","banner":{"w":300,"h":250}}],"ext":{"pad":"%s"}}' \
        "$filler" >"$WORK/body.json"
    echo "body: generated ($(wc -c <"$WORK/body.json") bytes)"
fi

cat >"$WORK/post.lua" <<EOF
local f = assert(io.open("$WORK/body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
EOF

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_buffer_size 16k;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$PORT_NGINX;
        default_type application/json;
        location / { return 404 '$NOT_FOUND_BODY'; }
    }
}
EOF

wait_port() {
    local port="$1" i
    for ((i = 0; i < PORT_WAIT_TRIES; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listening on port $port" >&2
    return 1
}

echo "== start servers (core $SERVER_CORE)"
taskset -c "$SERVER_CORE" nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" \
    -c "$WORK/nginx/nginx.conf" &
PIDS+=("$!")
taskset -c "$SERVER_CORE" "$BENCH_404" "$PORT_URING" 1 uring >"$WORK/uring.log" 2>&1 &
PIDS+=("$!")
taskset -c "$SERVER_CORE" "$BENCH_404" "$PORT_EPOLL" 1 epoll >"$WORK/epoll.log" 2>&1 &
PIDS+=("$!")
for port in "$PORT_NGINX" "$PORT_URING" "$PORT_EPOLL"; do
    wait_port "$port"
done
grep -h "driver" "$WORK/uring.log" "$WORK/epoll.log" || true

NAMES=(nginx rtb-io-uring rtb-io-epoll)
PORTS=("$PORT_NGINX" "$PORT_URING" "$PORT_EPOLL")
declare -A RESULTS=()
# Ratio to the nginx run of the same round: adjacent runs share the machine's load of the
# moment, so their ratio drifts less than the ratio of whole-run medians.
declare -A ROUND_RATIOS=()

# Runs wrk once against a port; prints req/s, fails when a response was not the 404 or a
# socket error happened (a server that drops requests must not look fast).
run_wrk() {
    local port="$1" duration="$2" out rps total non404 errors
    out="$(taskset -c "$CLIENT_CORE" wrk -t1 -c"$CONNECTIONS" -d"${duration}s" \
        -s "$WORK/post.lua" "http://127.0.0.1:$port/openrtb2/auction")"
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    total="$(awk '/requests in/ { print $1 }' <<<"$out")"
    non404="$(awk '/Non-2xx or 3xx responses:/ { print $5 }' <<<"$out")"
    errors="$(grep -c "Socket errors" <<<"$out" || true)"
    if [[ -z "$rps" || "$non404" != "$total" || "$errors" != 0 ]]; then
        echo "bad run on port $port:" >&2
        echo "$out" >&2
        return 1
    fi
    echo "$rps"
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "== warm-up ${WARMUP_S}s each"
for i in "${!NAMES[@]}"; do
    run_wrk "${PORTS[$i]}" "$WARMUP_S" >/dev/null
done

echo "== $ROUNDS rounds x ${DURATION_S}s, wrk -t1 -c$CONNECTIONS on core $CLIENT_CORE (order rotates per round)"
for ((round = 1; round <= ROUNDS; round++)); do
    declare -A this_round=()
    for ((k = 0; k < ${#NAMES[@]}; k++)); do
        i=$(((k + round - 1) % ${#NAMES[@]}))
        rps="$(run_wrk "${PORTS[$i]}" "$DURATION_S")"
        this_round[${NAMES[$i]}]="$rps"
        RESULTS[${NAMES[$i]}]+="$rps "
        printf 'round %d  %-13s %12s req/s\n' "$round" "${NAMES[$i]}" "$rps"
    done
    for name in "${NAMES[@]:1}"; do
        ROUND_RATIOS[$name]+="$(awk -v a="${this_round[$name]}" -v b="${this_round[nginx]}" \
            'BEGIN { printf "%.3f", a / b }') "
    done
done

echo "== medians"
nginx_median="$(tr ' ' '\n' <<<"${RESULTS[nginx]}" | grep . | median)"
for name in "${NAMES[@]}"; do
    m="$(tr ' ' '\n' <<<"${RESULTS[$name]}" | grep . | median)"
    ratio="$(awk -v a="$m" -v b="$nginx_median" 'BEGIN { printf "%.3f", a / b }')"
    printf '%-13s median %12s req/s  ratio vs nginx %s  (runs: %s)\n' "$name" "$m" "$ratio" \
        "${RESULTS[$name]% }"
done
echo "== median of per-round ratios (each run over the nginx run of the same round)"
for name in "${NAMES[@]:1}"; do
    m="$(tr ' ' '\n' <<<"${ROUND_RATIOS[$name]}" | grep . | median)"
    printf '%-13s %s  (rounds: %s)\n' "$name" "$m" "${ROUND_RATIOS[$name]% }"
done
