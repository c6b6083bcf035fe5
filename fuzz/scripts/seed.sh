#!/usr/bin/env bash
# Fills the gitignored fuzz/corpus/<target>/ from the committed seeds and, when present, the
# shared OpenRTB samples (<repo>/../shared/openrtb-samples). The samples are copied at run time
# only, never committed. Safe to re-run: files are named by content.
set -euo pipefail
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
samples="$fuzz_dir/../../shared/openrtb-samples"
targets=(http_head bid_request bid_response tmax_splice encode_response)

put() { # target file-with-content
    local target=$1 src=$2 sum
    sum=$(sha1sum "$src" | cut -c1-40)
    cp "$src" "$fuzz_dir/corpus/$target/$sum"
}

for t in "${targets[@]}"; do
    mkdir -p "$fuzz_dir/corpus/$t"
    for f in "$fuzz_dir/seeds/$t"/*; do
        [ -f "$f" ] && put "$t" "$f"
    done
done

if [ ! -d "$samples" ]; then
    echo "seed.sh: no $samples; corpus holds the committed seeds only"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$samples"/*.json; do
    name=$(basename "$f")
    case "$name" in
    *req*)
        put bid_request "$f"
        # tmax_splice: 4 little-endian bytes of the new tmax (here 50), then the body.
        { printf '\x32\x00\x00\x00'; cat "$f"; } >"$tmp/t"
        put tmax_splice "$tmp/t"
        # http_head: a selector byte, then the request as a client would send it.
        { printf '\x00POST /openrtb2/auction HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n' "$(wc -c <"$f")"; cat "$f"; } >"$tmp/h"
        put http_head "$tmp/h"
        ;;
    *resp*)
        put bid_response "$f"
        ;;
    esac
done
for t in "${targets[@]}"; do
    echo "seed.sh: corpus/$t: $(find "$fuzz_dir/corpus/$t" -type f | wc -l) files"
done
