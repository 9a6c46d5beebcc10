#!/usr/bin/env python3
"""Create the tiny GPT-2 parity fixture with HF transformers, the reference implementation.

Run in the torch venv with transformers (scripts/setup-libtorch.sh installs both):

    $REVGEN_TORCH_VENV/bin/python scripts/gen_reference.py trainer/tests/fixtures/tiny-gpt2

It writes, into the output directory:
- config.json + model.safetensors: a randomly initialised GPT2LMHeadModel (2 layers, 4 heads, 64 dims, the real
  50257-token vocabulary), saved by transformers' own save_pretrained. Every parameter, LayerNorms and biases
  included, is drawn away from its default so that a transposed, swapped or skipped tensor changes the logits.
- reference.safetensors: transformers' logits for each text, at every position, on every 16th vocabulary column
  (`logits.N`, [tokens, 3142]) and on the whole vocabulary at the last position (`last.N`, [50257]).
- reference.json: the texts, their token ids (GPT2TokenizerFast on the vendored vocab.json/merges.txt), and the
  loss transformers computes with labels=input_ids, per text and per token.

The committed fixture was made with torch 2.9.0 and transformers 4.57.1, seed 1234, on CPU in float32.
"""

import json
import pathlib
import sys

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets" / "gpt2"
COLUMN_STEP = 16

TEXTS = [
    "<|startoftext|> 5|||Great value|||Works exactly as described. The battery lasts all day.<|endoftext|>",
    "<|startoftext|> 1|||Broke after a week|||The hinge snapped &amp; support never answered.<br /><br />"
    "Don't buy!<|endoftext|><|startoftext|> 3|||Meh|||It's fine \U0001F44D",
    "Hello",
    "naïve café — “smart” quotes, 4\u00a0stars, ½ price, 日本語のレビュー",
]


def main() -> None:
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "trainer/tests/fixtures/tiny-gpt2")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1234)

    config = GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=50257)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            elif name.endswith(".bias"):
                param.copy_(0.05 * torch.randn_like(param))
            else:
                param.copy_(0.1 * torch.randn_like(param))
    model.save_pretrained(out, safe_serialization=True)

    tokenizer = GPT2TokenizerFast(vocab_file=str(ASSETS / "encoder.json"), merges_file=str(ASSETS / "vocab.bpe"))
    columns = torch.arange(0, config.vocab_size, COLUMN_STEP)
    tensors, records = {}, []
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text)["input_ids"]
        input_ids = torch.tensor([ids])
        with torch.no_grad():
            result = model(input_ids, labels=input_ids if len(ids) > 1 else None)
        logits = result.logits[0]  # [tokens, vocab]
        tensors[f"logits.{i}"] = logits[:, columns].contiguous()
        tensors[f"last.{i}"] = logits[-1].contiguous()
        record = {"text": text, "ids": ids}
        if len(ids) > 1:
            per_token = torch.nn.functional.cross_entropy(logits[:-1], input_ids[0, 1:], reduction="none")
            record["loss"] = result.loss.item()
            record["per_token_loss"] = per_token.tolist()
        records.append(record)
    save_file(tensors, str(out / "reference.safetensors"))
    meta = {
        "generator": "scripts/gen_reference.py",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "column_step": COLUMN_STEP,
        "texts": records,
    }
    (out / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {sum(p.numel() for p in model.parameters())} parameters, {len(TEXTS)} texts")


if __name__ == "__main__":
    main()
