"""Build the shipped tiny causal LM into models/lm-tiny/ from public text only (CLINC150 train + oos_train).

    nice -n 10 .venv/bin/python tools/build_lm.py            # rewrites models/lm-tiny/ (time in MODEL_CARD.md)
    .venv/bin/python tools/build_lm.py --out /tmp/candidate   # a candidate elsewhere

The `hf-causal-lm` family's tests and demo need a base LM that is on disk (nothing is downloaded at run time)
and that never saw personal data. Steps: (1) a byte-level BPE tokenizer (`tokenizers`, NFKC, no unknown
token: any text encodes) trained on the CLINC150 train + oos_train utterances; (2) a Llama-architecture
causal LM from a seeded random init, pre-trained on the same utterances (each `<s> text </s>`, next-token
loss), AdamW with warm-up and cosine decay; (3) perplexity on CLINC150 val (each epoch) and test + oos_test
(once, at the end, on the saved float16 weights as the family loads them); (4) Hugging Face format
(safetensors weights, config.json, tokenizer.json), MODEL_CARD.md, metrics.json and checksums.json.
Reproducible: fixed seed, one torch thread, deterministic algorithms, one tokenizer thread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"  # the tokenizer trainer's thread pool: one thread, one result
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant_forget.device.clinc import load_clinc  # noqa: E402
from assistant_forget.families.hf_lm.checkpoint import go_offline, load_local, record_checksums  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECIALS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2
MAX_LEN = 64  # tokens per sequence, <s> and </s> included


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "models" / "lm-tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50)
    return p.parse_args(argv)


def train_tokenizer(texts: list[str], vocab: int):
    """A byte-level BPE tokenizer in transformers' fast format: <pad>=0, <s>=1, </s>=2, no unknown token."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=list(SPECIALS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=SPECIALS[0], bos_token=SPECIALS[1],
                                   eos_token=SPECIALS[2], model_max_length=MAX_LEN)


def encode(tok, texts: list[str]) -> list[list[int]]:
    """`<s> text </s>` token ids, cut to MAX_LEN (the family encodes utterances the same way)."""
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    return [[tok.bos_token_id] + x[:MAX_LEN - 2] + [tok.eos_token_id] for x in ids]


def batch(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    return ids, mask


def nll(model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL over the real tokens of a batch, and how many tokens it predicted."""
    logits = model(input_ids=ids, attention_mask=mask).logits
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return loss, int((target != -100).sum())


@torch.inference_mode()
def perplexity(model, rows: list[list[int]], size: int = 128) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), size):
        loss, n = nll(model, *batch(rows[i:i + size]))
        total, count = total + float(loss), count + n
    return math.exp(total / count)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    go_offline()
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    transformers.utils.logging.set_verbosity_error()  # "sequence longer than 64": cut by `encode`, on purpose

    t_start = time.time()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = load_clinc()
    train_texts = [t for t, _ in data["train"] + data["oos_train"]]
    tok = train_tokenizer(train_texts, args.vocab)
    train_rows, val_rows = encode(tok, train_texts), encode(tok, [t for t, _ in data["val"] + data["oos_val"]])
    test_rows = encode(tok, [t for t, _ in data["test"] + data["oos_test"]])

    config = LlamaConfig(vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=args.ffn,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, max_position_embeddings=MAX_LEN, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         attention_dropout=0.0)
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, foreach=False)
    steps_per_epoch = -(-len(train_rows) // args.batch_size)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup)
                                              * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    rng = random.Random(args.seed)
    history = []
    for epoch in range(args.epochs):
        order = train_rows[:]
        rng.shuffle(order)
        model.train()
        t0 = time.time()
        for i in range(0, len(order), args.batch_size):
            loss, n = nll(model, *batch(order[i:i + args.batch_size]))
            opt.zero_grad()
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        history.append({"epoch": epoch + 1, "val_perplexity": round(perplexity(model, val_rows), 3),
                        "seconds": round(time.time() - t0, 1)})
        print(json.dumps(history[-1]), flush=True)

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)  # float16 on disk: half the bytes
    tok.save_pretrained(out)
    for p in out.iterdir():
        p.chmod(0o644)  # safetensors writes 0600; the shipped files are world-readable like the rest of the tree
    build_s = time.time() - t_start
    shipped = load_local(out)  # as the family loads it: float32 from the float16 file, offline
    test_ppl = perplexity(shipped.model, test_rows)
    val_ppl = perplexity(shipped.model, val_rows)
    metrics = {"parameters": params, "test_perplexity": round(test_ppl, 3), "val_perplexity": round(val_ppl, 3),
               "test_utterances": len(test_rows), "train_utterances": len(train_rows), "epochs": history,
               "build_seconds": round(build_s, 1), "torch": torch.__version__,
               "weights_bytes": (out / "model.safetensors").stat().st_size}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(model_card(args, config, metrics), encoding="utf-8")
    record_checksums(out)
    print(json.dumps({k: metrics[k] for k in ("parameters", "test_perplexity", "build_seconds", "weights_bytes")}))
    return 0


def model_card(args: argparse.Namespace, config, metrics: dict) -> str:
    from importlib.metadata import version

    recipe = (f"--seed {args.seed} --vocab {args.vocab} --hidden {args.hidden} --layers {args.layers} "
              f"--heads {args.heads} --kv-heads {args.kv_heads} --ffn {args.ffn} --epochs {args.epochs} "
              f"--batch-size {args.batch_size} --lr {args.lr} --warmup {args.warmup}")
    epochs = "; ".join(f"epoch {h['epoch']}: val perplexity {h['val_perplexity']} ({h['seconds']} s)"
                       for h in metrics["epochs"])
    return f"""# lm-tiny: a tiny Llama-architecture causal LM pre-trained on public text (assistant-forget)

The base model of the `hf-causal-lm` family's tests and demo (docs/lm.md): a {metrics['parameters']:,}-parameter \
Llama causal LM ({config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} heads, \
{config.num_key_value_heads} key/value heads, MLP {config.intermediate_size}, vocabulary {config.vocab_size}, tied \
embeddings, at most {MAX_LEN} tokens).
It never saw personal data: a device personalises it with per-day LoRA adapters, and forgetting never has to
touch it.

## Data
- Pre-trained on CLINC150 "full" `train` + `oos_train` ({metrics['train_utterances']:,} utterances) only; \
`val` + `oos_val` is watched each epoch; `test` + `oos_test` ({metrics['test_utterances']:,} utterances) is used \
only for the perplexity below.
- CLINC150: Larson et al., EMNLP-IJCNLP 2019, https://github.com/clinc/oos-eval, CC BY 3.0, vendored unchanged in
  `assistant_forget/resources/clinc150/`.

## Tokenizer
Byte-level BPE (`tokenizers`), NFKC, {config.vocab_size} tokens, trained on the same utterances: `<pad>`=0, \
`<s>`=1, `</s>`=2, no unknown token (any text encodes, byte by byte at worst). Each utterance is `<s> text </s>`.

## Training
Seeded random init (seed {args.seed}); next-token cross-entropy over real tokens; AdamW lr {args.lr}, weight \
decay 0.01, {args.warmup} warm-up steps then cosine decay, batch {args.batch_size}, {args.epochs} epochs, gradient \
norm clipped at 1.0; one torch thread, deterministic algorithms, torch {metrics['torch']}, transformers \
{version('transformers')}, tokenizers {version('tokenizers')}.
Per epoch: {epochs}.

## Metrics
| metric | value |
|---|---|
| perplexity, CLINC150 test + oos_test (per token, `</s>` included, `<s>` not predicted) | {metrics['test_perplexity']} |
| perplexity, CLINC150 val + oos_val | {metrics['val_perplexity']} |

Measured on the saved float16 weights loaded as float32 (as the family loads them).

## Size and build
Weights {metrics['weights_bytes']:,} bytes (float16 safetensors). Build time {metrics['build_seconds']} s on \
{platform.machine()}, {os.cpu_count()} cores shared with other jobs (at nice 10; each epoch about half of it):

```bash
nice -n 10 .venv/bin/python tools/build_lm.py {recipe}
```

`checksums.json` pins every file; the family refuses a file that does not match it.
"""


if __name__ == "__main__":
    raise SystemExit(main())
