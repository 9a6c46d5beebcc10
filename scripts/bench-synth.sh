#!/usr/bin/env bash
# Throughput and peak memory of `revgen synth` at growing sizes: memory must stay flat (it streams).
#   scripts/bench-synth.sh [ROWS...]      default: 100000 1000000 10000000
# Builds the release binary first, unless REVGEN_BIN names one. Output files go to a temp dir that is removed
# afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${REVGEN_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin="${CARGO_TARGET_DIR:-target}/release/revgen"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ $# -gt 0 ] || set -- 100000 1000000 10000000
printf '%-10s %-8s %10s %12s %12s %10s\n' rows format seconds rows/s MB peak_RSS_MB
for rows in "$@"; do
    for ext in tsv tsv.gz; do
        /usr/bin/time -f '%e %M' -o "$tmp/time" "$bin" synth --rows "$rows" --seed 1 --out "$tmp/d.$ext" >/dev/null
        read -r secs kb <"$tmp/time"
        mb=$(($(stat -c %s "$tmp/d.$ext") / 1000000))
        printf '%-10s %-8s %10s %12.0f %12s %10.1f\n' "$rows" "$ext" "$secs" "$(echo "$rows / $secs" | bc -l)" "$mb" \
            "$(echo "$kb / 1024" | bc -l)"
        rm -f "$tmp/d.$ext"
    done
done
