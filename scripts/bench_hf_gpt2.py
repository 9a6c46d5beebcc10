#!/usr/bin/env python3
"""HF transformers on the shapes trainer/examples/cuda_check.rs times, on cuda:0 in float32 (eager attention
and SDPA), so that revgen's CUDA numbers have a baseline from the same machine. One JSON object per line."""

import json
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

PRESETS = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16)}


def tokens_per_s(iters, tokens, fn):
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return iters * tokens / (time.perf_counter() - start)


def main():
    torch.backends.cuda.matmul.allow_tf32 = False  # plain f32, as revgen runs it
    for name, (d, layers, heads) in PRESETS.items():
        for attn in ["sdpa", "eager"]:
            config = GPT2Config(n_embd=d, n_layer=layers, n_head=heads, attn_implementation=attn)
            model = GPT2LMHeadModel(config).cuda()
            batch, seq = 8, 1024
            ids = (torch.arange(batch * seq, device="cuda") * 7919 % 50000).reshape(batch, seq)
            model.eval()
            with torch.no_grad():
                forward = tokens_per_s(5, batch * seq, lambda: model(ids))

                def decode():
                    out = model(ids[:1, :16], use_cache=True)
                    past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
                    for _ in range(128):
                        out = model(nxt, past_key_values=past, use_cache=True)
                        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)

                kv = tokens_per_s(1, 128, decode)
            model.train()

            def step():
                loss = model(ids, labels=ids).loss
                loss.backward()
                model.zero_grad(set_to_none=True)

            train = tokens_per_s(5, batch * seq, step)
            print(json.dumps({"impl": f"transformers-{attn}", "model": name, "batch": batch, "seq": seq,
                              "dtype": "f32", "forward_tokens_per_s": round(forward),
                              "forward_backward_tokens_per_s": round(train), "kv_decode_tokens_per_s": round(kv)}),
                  flush=True)
            del model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
