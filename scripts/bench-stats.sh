#!/usr/bin/env bash
# `revgen stats` against the floor and the field, on one synthetic Electronics-sized dump (3.1M rows, .tsv.gz):
#   1. decompress only: `gzip -dc`, and flate2's zlib-rs inflate on one core (the floor revgen is held to);
#   2. revgen stats (release build);
#   3. DuckDB, the same query with quote='' (pip install duckdb);
#   4. PySpark local[2], the original project's tool (pip install pyspark; needs java).
# Each runs once, one after the other, under /usr/bin/time for wall time and peak RSS. The results of 2-4 are
# checked to agree on the review counts. Writes a Markdown table to stdout and docs/bench-stats.md.
#
#   scripts/bench-stats.sh [ROWS]       default 3100000
# The dump and the Python venv are cached under $REVGEN_CACHE (default ~/.cache/revgen).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-3100000}"
# shellcheck source=scripts/bench/setup.sh
source scripts/bench/setup.sh
run gzip sh -c "gzip -dc '$dump' >/dev/null"
run inflate "$inflate" "$dump"
run revgen "$bin" stats --input "$dump" --format csv
run duckdb "$venv/bin/python" scripts/bench/stats_duckdb.py "$dump"
run pyspark "$venv/bin/python" scripts/bench/stats_pyspark.py "$dump" 'local[2]'

# The three engines must agree on the counts per subset and rating.
counts() { grep -E '^(all|helpful),' "$1" | cut -d, -f1-3; }
for engine in duckdb pyspark; do
    if ! diff <(counts "$tmp/revgen.out") <(counts "$tmp/$engine.out") >/dev/null; then
        echo "revgen and $engine disagree:" >&2
        diff <(counts "$tmp/revgen.out") <(counts "$tmp/$engine.out") >&2 || true
        exit 1
    fi
done

read -r floor_s _ <"$tmp/inflate.time"
{
    echo "Stats over $(printf "%'d" "$rows") synthetic rows: $(du -m "$dump" | cut -f1) MB .tsv.gz," \
        "$((raw_bytes / 1000000)) MB raw. $(nproc) cores, $(date +%F). One run each."
    echo
    echo "| what | wall s | × floor | peak RSS MB |"
    echo "|---|---:|---:|---:|"
    for name in gzip inflate revgen duckdb pyspark; do
        read -r secs kb <"$tmp/$name.time"
        label=$name
        case $name in
        gzip) label="decompress only: gzip -dc" ;;
        inflate) label="decompress only: flate2 zlib-rs, 1 core (the floor)" ;;
        revgen) label="revgen stats" ;;
        duckdb) label="DuckDB $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)'), 2 threads" ;;
        pyspark) label="PySpark $("$venv/bin/python" -c 'import pyspark; print(pyspark.__version__)') local[2]" ;;
        esac
        printf '| %s | %.1f | %.2f | %.0f |\n' "$label" "$secs" "$(echo "$secs / $floor_s" | bc -l)" \
            "$(echo "$kb / 1024" | bc -l)"
    done
} | tee docs/bench-stats.md
