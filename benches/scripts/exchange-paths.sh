#!/usr/bin/env bash
# Measures the exchange's two paths the original write-up compared, in one run, alternating:
#   404 path   : no DSP registered (the request is decoded, then 404)
#   3-DSP path : three rtb-dsp answering at once (fan-out, auction, encode)
# Closed loop with wrk (-c connections), then, when oha is available (.tools/bin/oha), an open
# loop at half of the 3-DSP maximum with coordinated-omission correction.
# The exchange runs 1 worker pinned to core 0; wrk and the DSPs share core 1.
#   benches/scripts/exchange-paths.sh [seconds-per-run] [rounds]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${1:-5}"
rounds="${2:-3}"
connections="${CONNECTIONS:-32}"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
samples_dir="$root/../shared/openrtb-samples"
work="$(mktemp -d)"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p exchange-bin -p dsp-bin)

mapfile -t samples < <(ls "$samples_dir"/*-req-*.json 2>/dev/null || true)
if [ "${#samples[@]}" -eq 0 ]; then
    echo "no samples in $samples_dir" >&2
    exit 1
fi

wait_for_line() { # file pattern -> prints the first matching line's last word
    for _ in $(seq 1 100); do
        if grep -q "$2" "$1" 2>/dev/null; then grep "$2" "$1" | head -n1 | awk '{print $NF}'; return; fi
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2
    exit 1
}

RUST_LOG=warn "$bin/rtb-exchange" --bind 127.0.0.1 --port 0 --debug-port 0 --workers 1 --pin true \
    >"$work/exchange.out" 2>"$work/exchange.err" &
pids+=("$!")
exchange="$(wait_for_line "$work/exchange.out" '^listening on')"
debug="$(wait_for_line "$work/exchange.out" '^debug listening on')"
names=(braid the-witness order-of-the-sinking-star)
dsp_urls=()
for name in "${names[@]}"; do
    RUST_LOG=warn taskset -c 1 "$bin/rtb-dsp" --dsp-name "$name" --bind 127.0.0.1 --port 0 \
        --latency fixed:0 --onboard-interval-s 3600 >"$work/$name.out" 2>"$work/$name.err" &
    pids+=("$!")
    dsp_urls+=("http://$(wait_for_line "$work/$name.out" '^listening on')")
done

onboard_all() {
    for i in "${!names[@]}"; do
        curl -fsS -o /dev/null -X POST "http://$exchange/dsp" \
            -d "{\"name\":\"${names[$i]}\",\"base_url\":\"${dsp_urls[$i]}\"}"
    done
}
remove_all() {
    for name in "${names[@]}"; do curl -fsS -o /dev/null -X DELETE "http://$exchange/dsp/$name"; done
}

run_wrk() { # label
    local line
    line="$(taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" --latency \
        -s "$root/benches/scripts/rotate-samples.lua" "http://$exchange/openrtb2/auction" -- "${samples[@]}" \
        | grep '^RESULT')"
    echo "$1 $line" | tee -a "$work/results"
}

echo "exchange $exchange (debug $debug), $connections connections, ${seconds}s per run, $rounds rounds, $(nproc) cores, $(date -u +%F)"
for round in $(seq 1 "$rounds"); do
    remove_all 2>/dev/null || true
    run_wrk "no-dsp#$round"
    onboard_all
    sleep 0.3
    run_wrk "three-dsps#$round"
done

python3 - "$work/results" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label = line.split()[0].split("#")[0]
    fields = dict(kv.split("=") for kv in re.findall(r"\w+=[\d.]+", line))
    runs.setdefault(label, []).append({k: float(v) for k, v in fields.items()})
print(f"{'path':<12} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8}  (medians of {len(next(iter(runs.values())))} runs)")
med = {}
for label, rs in runs.items():
    m = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    med[label] = m
    print(f"{label:<12} {m['rps']:>9.0f} {m['p50_ms']:>8.3f} {m['p90_ms']:>8.3f} {m['p99_ms']:>8.3f} {m['p999_ms']:>9.3f} {m['max_ms']:>8.3f}")
ratios = [b["rps"] / a["rps"] for a, b in zip(runs["no-dsp"], runs["three-dsps"])]
print(f"three-dsps / no-dsp throughput, median of per-round ratios: {statistics.median(ratios):.3f} (goal >= 0.33; the original: 0.067)")
PY

oha="$root/.tools/bin/oha"
if [ -x "$oha" ]; then
    max="$(awk '/^three-dsps/ {for(i=1;i<=NF;i++) if ($i ~ /^rps=/) {split($i,a,"="); print a[2]}}' "$work/results" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')"
    half=$((${max%.*} / 2))
    echo "open loop at half of the 3-DSP maximum: $half req/s for ${seconds}s (oha, latency correction)"
    taskset -c 1 "$oha" --no-tui -z "${seconds}s" -q "$half" --latency-correction -c "$connections" \
        -m POST -H 'content-type: application/json' -D "${samples[0]}" \
        "http://$exchange/openrtb2/auction" | grep -E 'Requests/sec|50.00%|99.00%|99.90%|Slowest|\[2|\[4|\[5' || true
else
    echo "oha not installed in $root/.tools (cargo install --locked oha --root .tools): open-loop run skipped"
fi
echo "exchange /metrics (auction outcomes):"
curl -fsS "http://$debug/metrics" | grep -E '^rtb_auctions_total' || true
