#!/usr/bin/env bash
# `revgen prepare` against the floor and the original tool, on one synthetic Electronics-sized dump (3.1M rows,
# .tsv.gz), in one run:
#   1. decompress only: flate2's zlib-rs inflate on one core (the floor revgen is held to, as in bench-stats.sh);
#   2. revgen prepare, defaults (helpful filter, template, <br /> and entities, split, 16 shards per split, sha256);
#   3. revgen prepare --raw-html (the same records as PySpark writes);
#   4. revgen prepare --tokenize (adds .bin shards): its extra time gives the tokenization throughput;
#   5. PySpark local[2], the original project's filter-and-format step, writing 16 text files.
# Each runs once, one after the other, under /usr/bin/time for wall time and peak RSS. The record counts of 3 and 5
# must agree, and so must their sorted records. Then 1 and 2 run alternating five more times, since single runs on
# a shared VM vary by several percent: the ratio to the floor is reported per pair (median, min and max).
# Writes a Markdown table to stdout and docs/bench-prepare.md.
#
#   scripts/bench-prepare.sh [ROWS]       default 3100000
# The dump and the Python venv are cached under $REVGEN_CACHE (default ~/.cache/revgen), shared with bench-stats.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-3100000}"
# shellcheck source=scripts/bench/setup.sh
source scripts/bench/setup.sh
run inflate "$inflate" "$dump"
run revgen "$bin" prepare --input "$dump" --output "$tmp/revgen" --json
run raw "$bin" prepare --input "$dump" --output "$tmp/raw" --raw-html --json
run tokenize "$bin" prepare --input "$dump" --output "$tmp/tokenize" --tokenize --json
run pyspark "$venv/bin/python" scripts/bench/prepare_pyspark.py "$dump" "$tmp/pyspark" 'local[2]' 16

# The goal's ratio, pair by pair: floor, then prepare, five times.
pairs=()
for i in 1 2 3 4 5; do
    run "inflate-$i" "$inflate" "$dump"
    rm -rf "$tmp/again"
    run "revgen-$i" "$bin" prepare --input "$dump" --output "$tmp/again" --json
    read -r f _ <"$tmp/inflate-$i.time"
    read -r p _ <"$tmp/revgen-$i.time"
    pairs+=("$(echo "$p / $f" | bc -l) $f $p")
done
rm -rf "$tmp/again"
# Sorted by ratio: the third of five is the median.
mapfile -t pairs < <(printf '%s\n' "${pairs[@]}" | sort -g)
read -r r_min _ <<<"${pairs[0]}"
read -r r_med _ <<<"${pairs[2]}"
read -r r_max _ <<<"${pairs[4]}"
range() { printf '%s\n' "${pairs[@]}" | awk -v c="$1" 'NR == 1 || $c < lo { lo = $c } NR == 1 || $c > hi { hi = $c } END { printf "%.2f–%.2f", lo, hi }'; }

# The same records: revgen --raw-html and PySpark.
sort_records() { LC_ALL=C sort "$@"; }
if ! cmp -s <(cat "$tmp"/raw/*.txt | sort_records) <(cat "$tmp"/pyspark/part-* | sort_records); then
    echo "revgen --raw-html and PySpark wrote different records" >&2
    exit 1
fi
json() { "$venv/bin/python" -c "import json, sys; m = json.load(open('$1')); print($2)"; }
kept=$(json "$tmp/revgen.out" "m['counts']['kept']")
text_bytes=$(json "$tmp/tokenize.out" "sum(s['bytes'] for s in m['shards'] if s['format'] == 'text')")
tokens=$(json "$tmp/tokenize.out" "sum(s['tokens'] for s in m['shards'] if s['format'] == 'tokens')")
balance=$(json "$tmp/revgen.out" "(lambda b: f'{min(b) / 1e6:.1f}..{max(b) / 1e6:.1f} MB (max/mean {max(b) * len(b) / sum(b):.3f})')([s['bytes'] for s in m['shards'] if s['split'] == 'train'])")

read -r floor_s _ <"$tmp/inflate.time"
read -r plain_s _ <"$tmp/revgen.time"
read -r tok_s _ <"$tmp/tokenize.time"
cores=$(nproc)
tok_extra=$(echo "$tok_s - $plain_s" | bc -l)
{
    echo "Prepare over $(printf "%'d" "$rows") synthetic rows: $(du -m "$dump" | cut -f1) MB .tsv.gz," \
        "$((raw_bytes / 1000000)) MB raw; $(printf "%'d" "$kept") records kept, $((text_bytes / 1000000)) MB of" \
        "text. $cores cores, $(date +%F). One run each."
    echo
    echo "| what | wall s | × floor | peak RSS MB |"
    echo "|---|---:|---:|---:|"
    for name in inflate revgen raw tokenize pyspark; do
        read -r secs kb <"$tmp/$name.time"
        case $name in
        inflate) label="decompress only: flate2 zlib-rs, 1 core (the floor)" ;;
        revgen) label="revgen prepare (defaults: clean text, split, 16+16 shards, sha256)" ;;
        raw) label="revgen prepare --raw-html" ;;
        tokenize) label="revgen prepare --tokenize (also .bin shards)" ;;
        pyspark) label="PySpark $("$venv/bin/python" -c 'import pyspark; print(pyspark.__version__)') local[2], filter + format + 16 text files" ;;
        esac
        printf '| %s | %.1f | %.2f | %.0f |\n' "$label" "$secs" "$(echo "$secs / $floor_s" | bc -l)" \
            "$(echo "$kb / 1024" | bc -l)"
    done
    echo
    read -r spark_s _ <"$tmp/pyspark.time"
    printf 'revgen prepare is %.1f× faster than PySpark and %.2f× the decompress-only floor in the runs above.\n' \
        "$(echo "$spark_s / $plain_s" | bc -l)" "$(echo "$plain_s / $floor_s" | bc -l)"
    printf 'Alternating five times more: floor %s s, prepare %s s; prepare / floor per pair: median %.2f× (%.2f–%.2f×).\n' \
        "$(range 2)" "$(range 3)" "$r_med" "$r_min" "$r_max"
    echo "Train shard sizes: $balance."
    printf 'Tokenization (the extra time of --tokenize, %s tokens of %s MB): %.1f MB/s, %.0f tokens/s; per core %.1f MB/s, %.0f tokens/s.\n' \
        "$(printf "%'d" "$tokens")" "$((text_bytes / 1000000))" \
        "$(echo "$text_bytes / 1000000 / $tok_extra" | bc -l)" "$(echo "$tokens / $tok_extra" | bc -l)" \
        "$(echo "$text_bytes / 1000000 / $tok_extra / $cores" | bc -l)" "$(echo "$tokens / $tok_extra / $cores" | bc -l)"
} | tee docs/bench-prepare.md
