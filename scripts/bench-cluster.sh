#!/usr/bin/env bash
# The same multi-file jobs (stats, prepare) in-process and on a Ballista cluster of 1 and of 2 executors (one task
# slot each), on one synthetic dump of 8 .tsv.gz files, in one run. Reports wall time, the scaling from 1 to 2
# executors and the throughput per task (compressed MB/s: the unit docs/scaling.md projects the full dump with).
# The cluster runs on this machine (127.0.0.1), so 2 cores cap the scaling at 2x. Results must equal the local run.
# Writes a Markdown table to stdout and docs/bench-cluster.md.
#
#   scripts/bench-cluster.sh [ROWS_PER_FILE]      default 150000 (8 files)
# REVGEN_BIN overrides the binary (default: a release build into $CARGO_TARGET_DIR, as the other benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
per_file="${1:-150000}"
cache="${REVGEN_CACHE:-$HOME/.cache/revgen}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
if [ -n "${REVGEN_BIN:-}" ]; then
    bin="$REVGEN_BIN"
else
    echo "building (release)..." >&2
    cargo build --release --quiet --bin revgen
    bin="$CARGO_TARGET_DIR/release/revgen"
fi

dump="$cache/bench/cluster-$per_file"
if [ ! -f "$dump/.done" ]; then
    echo "writing the synthetic dump (8 x $per_file rows)..." >&2
    rm -rf "$dump" && mkdir -p "$dump"
    for i in 0 1 2 3 4 5 6 7; do
        "$bin" synth --rows "$per_file" --seed "$((10 + i))" --categories "Cat$i" \
            --out "$dump/amazon_reviews_us_Cat${i}_v1_00.tsv.gz" >/dev/null
    done
    touch "$dump/.done"
fi
gz_bytes=$(cat "$dump"/*.tsv.gz | wc -c)
tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# cluster_up N: a scheduler and N executors with one task slot each; sets $url.
cluster_up() {
    local port
    port=$(free_port)
    "$bin" scheduler --host 127.0.0.1 --port "$port" >"$tmp/scheduler.log" 2>&1 &
    pids+=($!)
    url="df://127.0.0.1:$port"
    for ((i = 0; i < $1; i++)); do
        "$bin" executor --scheduler "127.0.0.1:$port" --host 127.0.0.1 --port "$(free_port)" \
            --grpc-port "$(free_port)" --health-port "$(free_port)" --work-dir "$tmp/executor-$i" \
            --concurrent-tasks 1 >"$tmp/executor-$i.log" 2>&1 &
        pids+=($!)
    done
    for _ in $(seq 100); do
        if "$bin" cluster status --cluster "$url" --json 2>/dev/null |
            python3 -c "import json, sys; sys.exit(len(json.load(sys.stdin)['executors']) != $1)" 2>/dev/null; then
            return
        fi
        sleep 0.3
    done
    echo "the cluster did not start" >&2
    exit 1
}

cluster_down() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

# shellcheck source=scripts/bench/run.sh
source scripts/bench/run.sh

stats=(stats --input "$dump" --format json)
prepare=(prepare --input "$dump" --shards 8 --json)
run stats-local "$bin" "${stats[@]}"
run prepare-local "$bin" "${prepare[@]}" --output "$tmp/prepare-local"
for n in 1 2; do
    cluster_up "$n"
    run "stats-$n" "$bin" "${stats[@]}" --cluster "$url"
    run "prepare-$n" "$bin" "${prepare[@]}" --output "$tmp/prepare-$n" --cluster "$url"
    cluster_down
done

# The cluster's results are the local run's.
same() {
    python3 - "$@" <<'PY'
import json, sys
def load(path, keys):
    m = json.load(open(path))
    return {k: m[k] for k in keys}
kind, a, b = sys.argv[1:]
keys = ["stats", "counts"] if kind == "stats" else ["shards", "counts"]
sys.exit(load(a, keys) != load(b, keys))
PY
}
for n in 1 2; do
    same stats "$tmp/stats-local.out" "$tmp/stats-$n.out" || { echo "stats on $n executors differ" >&2; exit 1; }
    same prepare "$tmp/prepare-local.out" "$tmp/prepare-$n.out" || { echo "prepare on $n executors differs" >&2; exit 1; }
done

rows=$(python3 -c "import json; print(json.load(open('$tmp/stats-local.out'))['counts']['rows_read'])")
secs() { cut -d' ' -f1 "$tmp/$1.time"; }
{
    echo "Cluster scaling over 8 synthetic .tsv.gz files: $(printf "%'d" "$rows") rows, $((gz_bytes / 1000000)) MB" \
        "gzipped. Scheduler and executors on this machine ($(nproc) cores), one task slot per executor; $(date +%F)," \
        "one run each. Results equal the in-process run's (stats and counts; shard sha256s)."
    echo
    echo "| job | in-process s | 1 executor s | 2 executors s | scaling 1 → 2 | per task, MB/s gz |"
    echo "|---|---:|---:|---:|---:|---:|"
    for job in stats prepare; do
        l=$(secs "$job-local") one=$(secs "$job-1") two=$(secs "$job-2")
        printf '| %s | %.1f | %.1f | %.1f | %.2fx | %.1f |\n' "$job" "$l" "$one" "$two" \
            "$(echo "$one / $two" | bc -l)" "$(echo "$gz_bytes / 1000000 / $one" | bc -l)"
    done
} | tee docs/bench-cluster.md
