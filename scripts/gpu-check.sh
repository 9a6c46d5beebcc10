#!/usr/bin/env bash
# CUDA checks of the trainer on a GPU machine, in two steps:
#
#   scripts/gpu-check.sh build   # here: builds trainer/examples/{cuda_check,train_bench}.rs and a small prepared
#                                # dataset into .gpu/ (ignored by git)
#   scripts/gpu-check.sh run     # on the GPU machine, from the repo root with .gpu/ copied along
#
# The GPU machines run PyTorch 2.11 (CUDA 13), not the 2.9 that CI links, so `build` links tch against a
# torch==2.11.0 venv (LIBTORCH_BYPASS_VERSION_CHECK=1) and `run` points the loader at that machine's own
# libtorch. Only the trainer crate is built (release, stripped, ~tens of MB), not the whole CLI with DataFusion.
# `run` also times HF transformers on the same shapes so both numbers come from one machine.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
cache="${REVGEN_CACHE:-$HOME/.cache/revgen}"

case "${1:-}" in
build)
    # Training data for the CUDA learning run: a synthetic dump prepared with .bin shards (the default build).
    if [ ! -f .gpu/data/manifest.json ]; then
        rm -rf .gpu/data .gpu/dump.tsv.gz
        mkdir -p .gpu
        cargo run --quiet --locked -- synth --rows 20000 --seed 3 --categories Toys --out .gpu/dump.tsv.gz
        cargo run --quiet --locked -- prepare --tokenize --shards 2 --val-fraction 0.05 --input .gpu/dump.tsv.gz \
            --output .gpu/data
        rm .gpu/dump.tsv.gz
    fi
    # A 12-layer GPT-2 with 64 dims: its kernels are tiny, so its step time is the host's cost per step (autodiff
    # bookkeeping, dispatch, launches) rather than the GPU's.
    mkdir -p .gpu/thin
    cat >.gpu/thin/config.json <<'JSON'
{"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257,
 "layer_norm_epsilon": 1e-05, "activation_function": "gelu_new", "bos_token_id": 50256, "eos_token_id": 50256}
JSON
    venv="$cache/torch-2.11.0-venv"
    if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet torch==2.11.0
    fi
    export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$venv/bin:$PATH"
    export CARGO_TARGET_DIR="${GPU_TARGET_DIR:-$cache/gpu-target}"
    cargo build --release --locked -p revgen-trainer --features tch --example cuda_check --example train_bench
    mkdir -p .gpu
    cp "$CARGO_TARGET_DIR/release/examples/cuda_check" "$CARGO_TARGET_DIR/release/examples/train_bench" .gpu/
    strip .gpu/cuda_check .gpu/train_bench
    ls -la .gpu/cuda_check
    ;;
run)
    out="${OUT:-docs/gpu-out}"
    mkdir -p "$out"
    torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' \
        | tee -a "$out/gpu.txt"
    # Parity, the backend extensions' gradients (f32, bf16) and the fused AdamW against burn's on CUDA; the f32
    # inference/training throughput against transformers (docs/gpu.md) with FULL=1.
    if [ "${FULL:-0}" = 1 ]; then
        LD_LIBRARY_PATH="$torch_lib" .gpu/cuda_check trainer/tests/fixtures/tiny-gpt2 | tee "$out/revgen.jsonl"
        python3 scripts/bench_hf_gpt2.py | tee "$out/transformers.jsonl"
    else
        LD_LIBRARY_PATH="$torch_lib" .gpu/cuda_check trainer/tests/fixtures/tiny-gpt2 cuda:0 tiny | tee "$out/revgen.jsonl"
    fi
    # Training, bf16 (revgen: mixed precision with f32 weights; PyTorch: eager + torch.autocast bf16):
    # throughput at batch 8 x 1024, peak GPU memory at batch 1 x 1024 up to gpt2-xl, and a whole run on real
    # (synthetic-review) shards. Peak memory is nvidia-smi's, polled every 0.2 s, for both implementations.
    python3 - <<'PY'
import numpy as np
header = np.zeros(256, dtype=np.int32); header[:5] = [20240520, 1, 4 << 20, 50257, 50256]
ids = (np.random.default_rng(0).integers(0, 50257, 4 << 20)).astype(np.uint16)
open("/tmp/revgen-bench.bin", "wb").write(header.tobytes() + ids.tobytes())
PY
    export LD_LIBRARY_PATH="$torch_lib" PYTHONUNBUFFERED=1
    # measure NAME COMMAND...: runs COMMAND (5 min at most), appends its JSON line plus the peak GPU memory
    # (at most 8 files come back from the device tool, so every run's stderr goes to one file).
    measure() {
        local name=$1 peak
        shift
        if [ "$SECONDS" -gt "${GPU_CHECK_BUDGET_S:-450}" ]; then
            echo "{\"run\": \"$name\", \"skipped\": \"over GPU_CHECK_BUDGET_S\"}" | tee -a "$out/train.jsonl"
            return
        fi
        (while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done) >"/tmp/mem-$name" &
        local poll=$!
        local line
        echo "== $name: $*" >>"$out/stderr.txt"
        line=$(timeout 300 "$@" 2>>"$out/stderr.txt" | tail -1) || line='{"error": "failed or timed out, see stderr.txt"}'
        kill $poll
        peak=$(sort -n "/tmp/mem-$name" | tail -1)
        echo "{\"run\": \"$name\", \"peak_gpu_mib\": ${peak:-null}, \"result\": ${line:-null}}" | tee -a "$out/train.jsonl"
    }
    pt="python3 scripts/bench/train_pytorch.py"
    # Steps 2 and 3 of two throughput runs (before their timed steps) are recorded with PyTorch's profiler, on
    # both sides (trace NAME: the variables that do it), and summed up side by side at the end: 355M at batch 8
    # (the goal's configuration) and 124M at gpt-2-simple's batch 1 (where the host's cost per operation shows).
    traces=/tmp/revgen-traces
    rm -rf "$traces"
    trace() { echo "BENCH_PROFILE_OUT=$traces/$1 TRACE_OUT=$traces/$1"; }
    measure learn-gpt2-bf16 env BENCH_RUN_OUT="$out" .gpu/train_bench gpt2 8 bf16 300 cuda:0 --data .gpu/data
    for spec in "gpt2 768 12 12" "gpt2-medium 1024 24 16"; do
        read -r preset d layers heads <<<"$spec"
        traced=""
        [ "$preset" = gpt2-medium ] && traced=$(trace "$preset-bf16-b8")
        measure "$preset-bf16-b8" env PEAK_TFLOPS=989 $traced .gpu/train_bench "$preset" 8 bf16 25
        measure "$preset-pytorch-bf16-b8" env $traced $pt "$d" "$layers" "$heads" 1024 8 1024 25 16 /tmp/revgen-bench.bin cuda bf16
    done
    measure gpt2-f32-b8 .gpu/train_bench gpt2 8 f32 15
    measure gpt2-medium-bf16-b1 .gpu/train_bench gpt2-medium 1 bf16 8
    measure gpt2-medium-pytorch-bf16-b1 $pt 1024 24 16 1024 1 1024 8 16 /tmp/revgen-bench.bin cuda bf16
    measure gpt2-large-bf16-b1 .gpu/train_bench gpt2-large 1 bf16 6
    measure gpt2-xl-bf16-b1 .gpu/train_bench gpt2-xl 1 bf16 6
    measure gpt2-xl-bf16-b1-gc .gpu/train_bench gpt2-xl 1 bf16 6 cuda:0 --gradient-checkpointing
    measure gpt2-xl-pytorch-bf16-b1 $pt 1600 48 25 1024 1 1024 6 16 /tmp/revgen-bench.bin cuda bf16
    # gpt-2-simple's shape (batch 1 x 1024), where a 124M micro-batch is a few ms of GPU work and the host's
    # per-operation cost shows; and the host's cost per step alone (the thin model, batch 1 x 16).
    measure gpt2-bf16-b1 env PEAK_TFLOPS=989 $(trace gpt2-bf16-b1) .gpu/train_bench gpt2 1 bf16 30
    measure gpt2-pytorch-bf16-b1 env $(trace gpt2-bf16-b1) $pt 768 12 12 1024 1 1024 30 16 /tmp/revgen-bench.bin cuda bf16
    measure thin-f32-b1x16 env BENCH_SEQ=16 .gpu/train_bench .gpu/thin 1 f32 40
    measure thin-pytorch-f32-b1x16 $pt 64 12 4 1024 1 16 40 16 /tmp/revgen-bench.bin cuda f32
    # The traces: per-step operator and kernel tables (revgen | PyTorch) in traces.md, and the raw traces (for
    # Perfetto) in one archive, as only 8 files come back.
    for run in gpt2-medium-bf16-b8 gpt2-bf16-b1; do
        [ -f "$traces/$run/steps-2-3.pt.trace.json" ] && [ -f "$traces/$run/pytorch-steps-2-3.pt.trace.json" ] || continue
        { echo "## $run"; echo; python3 scripts/trace_summary.py --top 30 "revgen=$traces/$run/steps-2-3.pt.trace.json" \
            "pytorch=$traces/$run/pytorch-steps-2-3.pt.trace.json"; echo; } >>"$out/traces.md" 2>>"$out/stderr.txt"
    done
    if [ -d "$traces" ]; then
        python3 -c 'import sys, tarfile; t = tarfile.open(sys.argv[1], "w:xz"); t.add(sys.argv[2], "traces"); t.close()' \
            "$out/traces.tar.xz" "$traces"
    fi
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
