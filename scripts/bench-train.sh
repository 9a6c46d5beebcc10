#!/usr/bin/env bash
# Training throughput on the CPU: `revgen train` on LibTorch (tch) and on the pure-Rust backend (flex) against
# PyTorch eager training of transformers' GPT2LMHeadModel (scripts/bench/train_pytorch.py), with the same batch,
# sequence length, optimizer step and thread count, one after the other in one run:
#   tiny: the `tiny` preset (64 dims, 2 layers, 4 heads, GPT-2's 50,257-token vocabulary), batch 4, seq 128;
#   124M: GPT-2 small's shape (768 dims, 12 layers), batch 1, seq 128.
# Models start from the random initialisation (no download). Tokens/s count the steps after the first 3. The data is
# a synthetic dump prepared with --tokenize. Writes a Markdown table to stdout and docs/bench-train.md.
#
#   scripts/bench-train.sh [TINY_STEPS] [GPT2_STEPS]     default 23 and 8
#
# revgen is the debug-profile binary with --features tch: dependencies (burn, LibTorch bindings) are built at
# opt-level 2 there (Cargo.toml), and LibTorch itself is PyPI's release build, so the tensor work is optimised.
set -euo pipefail
cd "$(dirname "$0")/.."
tiny_steps="${1:-23}"
gpt2_steps="${2:-8}"
eval "$(scripts/setup-libtorch.sh)"
# REVGEN_BIN skips the build and uses that binary (it must have --features tch), e.g. the one scripts/test.sh built.
if [ -n "${REVGEN_BIN:-}" ]; then
    bin=$REVGEN_BIN
else
    echo "building (dev profile, --features tch)..." >&2
    cargo build --quiet --features tch --bin revgen
    bin="${CARGO_TARGET_DIR:-target}/debug/revgen"
fi
python="$REVGEN_TORCH_VENV/bin/python"
threads=$(nproc)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "preparing data..." >&2
"$bin" synth --rows 20000 --seed 1 --out "$tmp/amazon_reviews_us_Toys_v1_00.tsv.gz" >/dev/null
"$bin" prepare --input "$tmp/amazon_reviews_us_Toys_v1_00.tsv.gz" --output "$tmp/data" --shards 1 --tokenize \
    --json >/dev/null
shard="$tmp/data/train-00000-of-00001.bin"

# revgen NAME BACKEND PRESET BATCH SEQ STEPS: prints "tokens/s peak-RSS-MB"
revgen() {
    local name=$1 backend=$2 preset=$3 batch=$4 seq=$5 steps=$6
    echo "running revgen $backend $preset..." >&2
    /usr/bin/time -f '%M' -o "$tmp/$name.rss" "$bin" train --backend "$backend" --model "$preset" --from-scratch \
        --data "$tmp/data" --out "$tmp/$name" --steps "$steps" --batch-size "$batch" --grad-accum 1 --seq-len "$seq" \
        --sample-every 0 --val-every 0 --save-every 0 >/dev/null 2>"$tmp/$name.err" ||
        { cat "$tmp/$name.err" >&2; exit 1; }
    "$python" - "$tmp/$name/metrics.jsonl" "$(cat "$tmp/$name.rss")" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
timed = lines[3:] if len(lines) > 3 else lines
tokens = [l["tokens"] - p["tokens"] for p, l in zip(lines, lines[1:])][-len(timed):] or [lines[0]["tokens"]]
seconds = sum(t / l["tokens_per_s"] for t, l in zip(tokens, timed))
print(f"{sum(tokens) / seconds:.1f} {int(sys.argv[2]) / 1024:.0f}")
EOF
}

# pytorch NAME D LAYERS HEADS POSITIONS BATCH SEQ STEPS [ENV…]: prints "tokens/s peak-RSS-MB"
pytorch() {
    local name=$1
    shift
    echo "running pytorch $name..." >&2
    env "${@:8}" "$python" scripts/bench/train_pytorch.py "${@:1:7}" "$threads" "$shard" >"$tmp/$name.json" ||
        exit 1
    "$python" -c "import json; r = json.load(open('$tmp/$name.json')); print(f\"{r['tokens_per_s']:.1f} {r['peak_rss_mb']:.0f}\")"
}

read -r tiny_tch tiny_tch_rss <<<"$(revgen tiny-tch tch tiny 4 128 "$tiny_steps")"
read -r tiny_flex tiny_flex_rss <<<"$(revgen tiny-flex flex tiny 4 128 "$tiny_steps")"
# revgen sets these glibc malloc options itself (src/process.rs, keep_freed_memory); PyTorch runs with its
# defaults and again with the same options.
malloc=(MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=268435456)
read -r tiny_pt tiny_pt_rss <<<"$(pytorch tiny-pt 64 2 4 256 4 128 "$tiny_steps" X=1)"
read -r tiny_ptm tiny_ptm_rss <<<"$(pytorch tiny-ptm 64 2 4 256 4 128 "$tiny_steps" "${malloc[@]}")"
read -r gpt2_tch gpt2_tch_rss <<<"$(revgen gpt2-tch tch gpt2 1 128 "$gpt2_steps")"
read -r gpt2_flex gpt2_flex_rss <<<"$(revgen gpt2-flex flex gpt2 1 128 "$gpt2_steps")"
read -r gpt2_pt gpt2_pt_rss <<<"$(pytorch gpt2-pt 768 12 12 1024 1 128 "$gpt2_steps" X=1)"
read -r gpt2_ptm gpt2_ptm_rss <<<"$(pytorch gpt2-ptm 768 12 12 1024 1 128 "$gpt2_steps" "${malloc[@]}")"

ratio() { "$python" -c "print(f'{$1 / $2:.2f}×')"; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
report=$(cat <<EOF
| model | batch × seq | revgen tch tok/s | revgen flex tok/s | PyTorch eager tok/s (default malloc / revgen's malloc options) | tch / PyTorch | flex / PyTorch | peak RSS tch / flex / PyTorch (both) |
|---|---|---|---|---|---|---|---|
| tiny (64 d, 2 layers, vocab 50,257) | 4 × 128 | $tiny_tch | $tiny_flex | $tiny_pt / $tiny_ptm | $(ratio "$tiny_tch" "$tiny_pt") / $(ratio "$tiny_tch" "$tiny_ptm") | $(ratio "$tiny_flex" "$tiny_pt") / $(ratio "$tiny_flex" "$tiny_ptm") | $tiny_tch_rss / $tiny_flex_rss / $tiny_pt_rss, $tiny_ptm_rss MB |
| 124M (GPT-2 small's shape) | 1 × 128 | $gpt2_tch | $gpt2_flex | $gpt2_pt / $gpt2_ptm | $(ratio "$gpt2_tch" "$gpt2_pt") / $(ratio "$gpt2_tch" "$gpt2_ptm") | $(ratio "$gpt2_flex" "$gpt2_pt") / $(ratio "$gpt2_flex" "$gpt2_ptm") | $gpt2_tch_rss / $gpt2_flex_rss / $gpt2_pt_rss, $gpt2_ptm_rss MB |

$threads threads ($cpu), f32, AdamW + global-norm clipping, grad-accum 1; tokens/s over the steps after the
first 3 ($tiny_steps and $gpt2_steps steps in all); $(date -u +%Y-%m-%d), torch $("$python" -c 'import torch; print(torch.__version__)').
EOF
)
echo "$report"
mkdir -p docs
{ echo "# scripts/bench-train.sh (generated)"; echo; echo "$report"; } >docs/bench-train.md
