"""Evaluate the shipped base model (models/base/) on CLINC150 test: intent accuracy, oos recall, perplexity.

    .venv/bin/python tools/eval_base.py            # a readable table
    .venv/bin/python tools/eval_base.py --json     # one JSON object

Reads only the committed artefacts (checksums verified) and the vendored corpus; trains nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant_forget.families.assistant.base import base_dir, load_base  # noqa: E402
from assistant_forget.build.evaluate import evaluate_base, latency_ms, split_texts  # noqa: E402
from assistant_forget.core.errors import ForgetError  # noqa: E402
from assistant_forget.families.assistant.model import count_parameters  # noqa: E402

LATENCY_UTTERANCES = 300  # test utterances timed one at a time for the latency figure


def evaluate(root: Path | None = None, split: str = "test", threads: int = 2) -> dict:
    """All figures of the base model in `root` on `split`, as one JSON-ready dict."""
    torch.set_num_threads(threads)
    base = load_base(root)
    out = evaluate_base(base, split)
    texts, _ = split_texts(split)
    step = max(1, len(texts) // LATENCY_UTTERANCES)
    lat = latency_ms(base.model, base.tokenizer, texts[::step][:LATENCY_UTTERANCES], threads=1)
    torch.set_num_threads(threads)
    out.update({
        "split": split,
        "latency_p50_ms_1thread": lat["p50_ms"],
        "latency_p90_ms_1thread": lat["p90_ms"],
        "parameters": count_parameters(base.model),
        "weights_bytes": (base.root / "model.safetensors").stat().st_size,
        "tokenizer_bytes": (base.root / "tokenizer.model").stat().st_size,
        "tokenizer_sha256": base.tokenizer.sha256,
    })
    return out


def format_table(r: dict) -> str:
    """The figures of `evaluate` as aligned lines."""
    split = r["split"]
    rows = [
        (f"utterances ({split} + oos_{split})", f"{r['n']}"),
        ("in-scope accuracy", f"{100 * r['in_scope_accuracy']:.2f} %"),
        ("out-of-scope recall", f"{100 * r['oos_recall']:.2f} %"),
        ("  oos threshold (tuned on val)", f"{r['oos_threshold']:.2f}"),
        ("in-scope accuracy, argmax only", f"{100 * r['in_scope_accuracy_argmax']:.2f} %"),
        ("out-of-scope recall, argmax only", f"{100 * r['oos_recall_argmax']:.2f} %"),
        (f"next-token perplexity ({split} + oos_{split})", f"{r[f'{split}_perplexity']:.2f}"),
        ("latency p50 / p90, 1 thread", f"{r['latency_p50_ms_1thread']:.2f} / {r['latency_p90_ms_1thread']:.2f} ms"),
        ("parameters", f"{r['parameters']:,}"),
        ("weights (fp32 safetensors)", f"{r['weights_bytes']:,} bytes"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--dir", type=Path, default=None, help=f"base-model directory (default {base_dir()})")
    p.add_argument("--split", choices=["test", "val"], default="test", help="CLINC150 split (default test)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the batch metrics (default 2)")
    args = p.parse_args(argv)
    try:
        r = evaluate(args.dir, args.split, args.threads)
    except ForgetError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps(r, indent=2, sort_keys=True) if args.json else format_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
