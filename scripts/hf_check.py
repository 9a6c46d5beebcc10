#!/usr/bin/env python3
"""Cross-checks against HF transformers, the reference implementation (used by the e2e tests).

    hf_check.py tokenize VOCAB_DIR TEXTS_FILE
        Prints, for each line of TEXTS_FILE, the GPT2TokenizerFast ids (space-separated), one line per text.
        VOCAB_DIR holds encoder.json + vocab.bpe (OpenAI's names) or vocab.json + merges.txt.

    hf_check.py logits MODEL_DIR REFERENCE_DIR
        Loads MODEL_DIR with GPT2LMHeadModel/AutoTokenizer.from_pretrained, computes the logits of the texts in
        REFERENCE_DIR/reference.json and prints JSON with the largest difference from reference.safetensors.

    hf_check.py loss MODEL_DIR TEXT_FILE
        Loads MODEL_DIR like `logits` and prints JSON with the mean next-token loss (nats) of TEXT_FILE's first
        n_positions tokens.

Run it with the torch venv's python (scripts/setup-libtorch.sh installs torch and transformers there).
"""

import json
import pathlib
import sys


def tokenize(vocab_dir: str, texts_file: str) -> None:
    from transformers import GPT2TokenizerFast

    d = pathlib.Path(vocab_dir)
    vocab, merges = (d / "encoder.json", d / "vocab.bpe") if (d / "encoder.json").exists() else (
        d / "vocab.json", d / "merges.txt")
    tokenizer = GPT2TokenizerFast(vocab_file=str(vocab), merges_file=str(merges))
    with open(texts_file, encoding="utf-8", newline="\n") as f:
        for line in f.read().split("\n")[:-1]:
            print(" ".join(str(i) for i in tokenizer(line)["input_ids"]))


def logits(model_dir: str, reference_dir: str) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ref_dir = pathlib.Path(reference_dir)
    reference = json.loads((ref_dir / "reference.json").read_text(encoding="utf-8"))
    expected = load_file(str(ref_dir / "reference.safetensors"))
    step = reference["column_step"]
    worst, ids_match = 0.0, True
    for i, text in enumerate(reference["texts"]):
        ids = tokenizer(text["text"])["input_ids"]
        ids_match &= ids == text["ids"]
        with torch.no_grad():
            out = model(torch.tensor([ids])).logits[0]
        worst = max(worst, (out[:, ::step] - expected[f"logits.{i}"]).abs().max().item())
        worst = max(worst, (out[-1] - expected[f"last.{i}"]).abs().max().item())
    print(json.dumps({"max_logit_diff": worst, "ids_match": ids_match, "texts": len(reference["texts"])}))


def loss(model_dir: str, text_file: str) -> None:
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer(pathlib.Path(text_file).read_text(encoding="utf-8"))["input_ids"][: model.config.n_positions]
    with torch.no_grad():
        out = model(torch.tensor([ids]), labels=torch.tensor([ids]))
    print(json.dumps({"loss": out.loss.item(), "tokens": len(ids)}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"tokenize": tokenize, "logits": logits, "loss": loss}[command](*args)
