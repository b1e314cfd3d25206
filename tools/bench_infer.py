"""Benchmark the exported model: onnxruntime vs eager PyTorch latency on one utterance, export costs, sizes.

    python tools/bench_infer.py            # a table
    python tools/bench_infer.py --json     # the same figures as one JSON object

One thread everywhere (ORT session options of the app runtime; torch.set_num_threads(1), inference_mode).
Latency is one forward of both heads on one tokenized utterance, warm, p50/p95 over --iters calls.
The model is models/base when it has been built, else a random-init default-config model with a
SentencePiece tokenizer trained here on CLINC150 (the figures depend on the shapes, not the weights).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from assistant_forget.device.clinc import intent_labels, load_clinc
from assistant_forget.export.convert import export_onnx, make_spec
from assistant_forget.export.coreml import export_coreml, quiet_coremltools
from assistant_forget.families.assistant.model import AssistantModel, ModelConfig
from assistant_forget.export.runtime import Runtime
from assistant_forget.verify.metrics import percentile

UTTERANCE = "can you set an alarm for seven thirty tomorrow morning"


@dataclass
class BenchConfig:
    iters: int = 2000  # timed forward calls per engine
    warmup: int = 200  # untimed calls first
    seed: int = 0  # seed of the random-init model when models/base is absent
    coreml: bool = True  # also time the CoreML conversion and size the package



def load_model(seed: int) -> tuple[AssistantModel, bytes, list[str], str]:
    """(model, tokenizer bytes, labels, description): models/base if built, else random init."""
    base = Path(__file__).resolve().parents[1] / "models" / "base"
    if (base / "checksums.json").is_file():
        from assistant_forget.families.assistant.base import load_base

        b = load_base(base)
        return b.model, (base / "tokenizer.model").read_bytes(), list(b.labels), f"models/base ({base})"
    import sentencepiece as spm

    cfg = ModelConfig()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t for t, _ in load_clinc()["train"]]), model_writer=buf, vocab_size=cfg.vocab_size,
        model_type="unigram", normalization_rule_name="nmt_nfkc_cf", byte_fallback=True, character_coverage=1.0,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=1, input_sentence_size=0,
        shuffle_input_sentence=False, minloglevel=2)
    torch.manual_seed(seed)
    return AssistantModel(cfg).eval(), buf.getvalue(), list(intent_labels()), \
        f"random-init default ModelConfig (seed {seed}); models/base not built"


def time_calls(fn, iters: int, warmup: int) -> list[float]:
    """Wall time of each of `iters` calls of `fn` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def run(cfg: BenchConfig, work: Path) -> dict:
    torch.set_num_threads(1)
    model, tok, labels, source = load_model(cfg.seed)
    spec = make_spec(model, tok, labels, "exact")
    t = time.perf_counter()
    onnx_bytes = export_onnx(model, spec)
    onnx_export_s = time.perf_counter() - t
    t = time.perf_counter()
    export_onnx(model, spec)
    onnx_export_warm_s = time.perf_counter() - t
    rt = Runtime(onnx_bytes, tok)
    ids = np.array([rt.encode(UTTERANCE)], dtype=np.int64)  # (1, T)
    mask = np.ones_like(ids)  # (1, T)
    tids, tmask = torch.from_numpy(ids), torch.from_numpy(mask)

    def torch_forward() -> None:
        with torch.inference_mode():
            model(tids, tmask)

    ort_ms = time_calls(lambda: rt.run(ids, mask), cfg.iters, cfg.warmup)
    torch_ms = time_calls(torch_forward, cfg.iters, cfg.warmup)
    res = {
        "model": source, "params": sum(p.numel() for p in model.parameters()), "tokens": int(ids.shape[1]),
        "ort_ms_p50": percentile(ort_ms, 50), "ort_ms_p95": percentile(ort_ms, 95),
        "torch_ms_p50": percentile(torch_ms, 50), "torch_ms_p95": percentile(torch_ms, 95),
        "speedup_p50": percentile(torch_ms, 50) / percentile(ort_ms, 50),
        "onnx_bytes": len(onnx_bytes), "onnx_export_s": onnx_export_s, "onnx_export_warm_s": onnx_export_warm_s,
        "intent_ms_p50": percentile(time_calls(lambda: rt.intent(UTTERANCE), cfg.iters // 4, 20), 50),
        "suggest3_ms_p50": statistics.median(time_calls(lambda: rt.suggest("set an alarm for ", 3), 50, 5)),
    }
    if cfg.coreml:
        t = time.perf_counter()
        with quiet_coremltools():
            import coremltools  # noqa: F401  (timed apart: a once-per-process cost, not the conversion's)
        res["coreml_import_s"] = time.perf_counter() - t
        t = time.perf_counter()
        export_coreml(model, spec, work / "a.mlpackage")
        res["coreml_convert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        export_coreml(model, spec, work / "b.mlpackage")
        res["coreml_convert_warm_s"] = time.perf_counter() - t
        res["mlpackage_bytes"] = sum(p.stat().st_size for p in (work / "a.mlpackage").rglob("*") if p.is_file())
    return res


def format_table(res: dict) -> str:
    """The figures as an aligned two-column table."""
    rows = [("model", f"{res['model']}, {res['params']:,} parameters"),
            ("utterance", f"{res['tokens']} tokens"),
            ("onnxruntime p50 / p95", f"{res['ort_ms_p50']:.3f} / {res['ort_ms_p95']:.3f} ms"),
            ("eager PyTorch p50 / p95", f"{res['torch_ms_p50']:.3f} / {res['torch_ms_p95']:.3f} ms"),
            ("speedup (p50)", f"{res['speedup_p50']:.1f}x"),
            ("runtime intent() / suggest(k=3) p50", f"{res['intent_ms_p50']:.3f} / {res['suggest3_ms_p50']:.2f} ms"),
            ("ONNX export cold / warm", f"{res['onnx_export_s']:.2f} / {res['onnx_export_warm_s']:.2f} s"),
            ("model.onnx size", f"{res['onnx_bytes'] / 2**20:.2f} MiB")]
    if "coreml_convert_s" in res:
        rows += [("import coremltools (once)", f"{res['coreml_import_s']:.2f} s"),
                 ("CoreML conversion cold / warm", f"{res['coreml_convert_s']:.2f} / "
                                                   f"{res['coreml_convert_warm_s']:.2f} s"),
                 ("model.mlpackage size", f"{res['mlpackage_bytes'] / 2**20:.2f} MiB")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=BenchConfig.iters, help="timed calls per engine")
    p.add_argument("--warmup", type=int, default=BenchConfig.warmup, help="untimed calls first")
    p.add_argument("--seed", type=int, default=BenchConfig.seed, help="seed of the random-init model")
    p.add_argument("--no-coreml", action="store_true", help="skip the CoreML conversion")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.iters < 20 or args.warmup < 0:
        p.error("--iters must be >= 20 and --warmup >= 0")
    cfg = BenchConfig(args.iters, args.warmup, args.seed, not args.no_coreml)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(cfg, Path(tmp))
    print(json.dumps(res | {"config": asdict(cfg)}, indent=2, sort_keys=True) if args.json else format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
