#!/usr/bin/env bash
# Fuzzes every target for N seconds each (default 600) with cargo-fuzz on the pinned stable
# toolchain (`-s none`: no sanitizer, so no nightly needed; set FUZZ_TOOLCHAIN=nightly to run
# with `cargo +nightly` instead). Installs cargo-fuzz when missing, seeds corpus/, then prints
# per target: seconds, executions, corpus size, and the crash files it left in artifacts/.
#   fuzz/scripts/run.sh [seconds-per-target] [target...]
set -uo pipefail
secs=${1:-600}
shift || true
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(http_head bid_request bid_response tmax_splice encode_response)
toolchain=()
[ -n "${FUZZ_TOOLCHAIN:-}" ] && toolchain=("+$FUZZ_TOOLCHAIN")

if ! cargo "${toolchain[@]}" fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz || exit 1
fi
"$fuzz_dir/scripts/seed.sh" || exit 1
# cargo-fuzz keeps its builds in fuzz/target; a CARGO_TARGET_DIR meant for the main workspace
# would mix them up.
unset CARGO_TARGET_DIR
cd "$fuzz_dir/.." || exit 1
mkdir -p "$fuzz_dir/artifacts/logs"
status=0
for t in "${targets[@]}"; do
    log="$fuzz_dir/artifacts/logs/$t.log"
    echo "run.sh: $t for ${secs}s (log: $log)"
    cargo "${toolchain[@]}" fuzz run -s none --features fuzz "$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    if [ -z "$execs" ]; then
        execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    fi
    corpus=$(find "$fuzz_dir/corpus/$t" -type f | wc -l)
    crashes=$(find "$fuzz_dir/artifacts/$t" -type f 2>/dev/null | wc -l)
    echo "run.sh: $t: exit=$rc seconds=$secs execs=${execs:-?} corpus=$corpus crash_files=$crashes"
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -m3 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/run.sh:   /'
        find "$fuzz_dir/artifacts/$t" -type f 2>/dev/null | sed 's/^/run.sh:   crash: /'
    fi
done
exit $status
