#!/usr/bin/env bash
# CUDA checks of the trainer on a GPU machine, in two steps:
#
#   scripts/gpu-check.sh build   # here: builds trainer/examples/cuda_check.rs into .gpu/ (ignored by git)
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
    LD_LIBRARY_PATH="$torch_lib" .gpu/cuda_check trainer/tests/fixtures/tiny-gpt2 | tee "$out/revgen.jsonl"
    python3 scripts/bench_hf_gpt2.py | tee "$out/transformers.jsonl"
    # Training: revgen's loop (bf16) against PyTorch eager with bf16 autocast, 124M and 355M at batch 8 × 1024;
    # peak GPU memory polled with nvidia-smi for revgen, torch.cuda.max_memory_allocated for PyTorch.
    python3 - <<'PY'
import numpy as np
header = np.zeros(256, dtype=np.int32); header[:5] = [20240520, 1, 4 << 20, 50257, 50256]
ids = (np.random.default_rng(0).integers(0, 50257, 4 << 20)).astype(np.uint16)
open("/tmp/revgen-bench.bin", "wb").write(header.tobytes() + ids.tobytes())
PY
    for spec in "gpt2 768 12 12" "gpt2-medium 1024 24 16"; do
        read -r preset d layers heads <<<"$spec"
        (while sleep 0.5; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done) >"$out/mem-$preset.txt" &
        poll=$!
        PEAK_TFLOPS=989 LD_LIBRARY_PATH="$torch_lib" .gpu/train_bench "$preset" 8 bf16 20 | tee -a "$out/train.jsonl"
        kill $poll
        echo "{\"preset\": \"$preset\", \"peak_gpu_mb_nvidia_smi\": $(sort -n "$out/mem-$preset.txt" | tail -1)}" \
            | tee -a "$out/train.jsonl"
        python3 scripts/bench/train_pytorch.py "$d" "$layers" "$heads" 1024 8 1024 20 16 /tmp/revgen-bench.bin cuda bf16 \
            | tee -a "$out/train-pytorch.jsonl"
    done
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
