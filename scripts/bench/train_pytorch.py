#!/usr/bin/env python3
"""PyTorch eager training of transformers' GPT2LMHeadModel, the baseline of scripts/bench-train.sh.

    train_pytorch.py N_EMBD N_LAYER N_HEAD N_POSITIONS BATCH SEQ STEPS THREADS BIN_SHARD [DEVICE [PRECISION]]

DEVICE defaults to cpu; PRECISION is f32 (default) or bf16 (torch.autocast, PyTorch's usual mixed precision).

The same step as `revgen train --grad-accum 1`: windows of SEQ + 1 tokens read in order from the llm.c `.bin`
shard, next-token cross-entropy, backward, global-norm clipping at 1.0, AdamW (0.9, 0.999, eps 1e-8, no weight
decay), lr 1e-4, f32 on the CPU. Prints one JSON object: tokens/s over the steps after the first 3 (warm-up),
median step time and peak RSS.

With TRACE_OUT=DIR, steps 2 and 3 are recorded with torch.profiler (shapes on, and CUDA kernels on a GPU) to
DIR/pytorch-steps-2-3.pt.trace.json, with the spans `revgen train --profile-steps` writes (ProfilerStep#N,
forward, backward, optimizer), for scripts/trace_summary.py.
"""

import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main() -> None:
    d, layers, heads, positions, batch, seq, steps, threads = map(int, sys.argv[1:9])
    shard = sys.argv[9]
    device = sys.argv[10] if len(sys.argv) > 10 else "cpu"
    bf16 = len(sys.argv) > 11 and sys.argv[11] == "bf16"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tokens = np.memmap(shard, dtype=np.uint16, mode="r", offset=1024)
    config = GPT2Config(n_embd=d, n_layer=layers, n_head=heads, n_positions=positions, vocab_size=50257,
                        attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
    model = GPT2LMHeadModel(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    at = 0
    times = []
    trace_out = os.environ.get("TRACE_OUT")
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    profiler = None
    span = torch.profiler.record_function
    for number in range(1, steps + 1):
        if trace_out and number == 2:
            profiler = torch.profiler.profile(activities=activities, record_shapes=True)
            profiler.__enter__()
        step_span = span(f"ProfilerStep#{number}")
        step_span.__enter__()
        start = time.perf_counter()
        rows = []
        for _ in range(batch):
            if at + seq + 1 > len(tokens):
                at = 0
            rows.append(torch.from_numpy(tokens[at:at + seq + 1].astype(np.int64)))
            at += seq
        window = torch.stack(rows).to(device)
        with span("forward"), torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            logits = model(window[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                                     window[:, 1:].reshape(-1))
        with span("backward"):
            loss.backward()
        with span("optimizer"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        with span("read loss and norm"):
            loss.item()  # waits for the device
        times.append(time.perf_counter() - start)
        step_span.__exit__(None, None, None)
        if profiler is not None and number == 3:
            profiler.__exit__(None, None, None)
            os.makedirs(trace_out, exist_ok=True)
            profiler.export_chrome_trace(os.path.join(trace_out, "pytorch-steps-2-3.pt.trace.json"))
            profiler = None
    timed = times[3:] if len(times) > 3 else times
    print(json.dumps({
        "tokens_per_s": batch * seq * len(timed) / sum(timed),
        "median_step_s": statistics.median(timed),
        "steps": len(timed),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
