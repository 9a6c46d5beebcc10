# Shared set-up of the pipeline benchmarks (sourced by scripts/bench-*.sh, from the repo root, with $rows set):
# the release binary, the decompress-only floor, the duckdb + pyspark venv and the synthetic dump, all cached under
# $REVGEN_CACHE (default ~/.cache/revgen); a temporary directory $tmp; and `run NAME CMD…`, which times one run
# (wall seconds and peak RSS in $tmp/NAME.time) and keeps its stdout in $tmp/NAME.out.
cache="${REVGEN_CACHE:-$HOME/.cache/revgen}"
mkdir -p "$cache/bench"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"

echo "building (release)..." >&2
cargo build --release --quiet --bin revgen
cargo build --release --quiet --manifest-path scripts/bench/inflate/Cargo.toml --target-dir "$cache/bench/target"
bin="$CARGO_TARGET_DIR/release/revgen"
inflate="$cache/bench/target/release/revgen-bench-inflate"

venv="$cache/bench-venv"
if ! "$venv/bin/python" -c 'import duckdb, pyspark' 2>/dev/null; then
    echo "installing duckdb and pyspark into $venv..." >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'duckdb==1.*' 'pyspark==3.5.*'
fi

dump="$cache/bench/amazon_reviews_us_Synthetic_${rows}.tsv.gz"
if [ ! -f "$dump" ]; then
    echo "writing the synthetic dump ($rows rows)..." >&2
    "$bin" synth --rows "$rows" --seed 1 --out "$dump" >/dev/null
fi
raw_bytes=$(gzip -dc "$dump" | wc -c)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# shellcheck source=scripts/bench/run.sh
source scripts/bench/run.sh
