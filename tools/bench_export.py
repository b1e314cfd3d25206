"""Benchmark the app exports of the shipped base model: fp32 model.onnx against int8 model.int8.onnx.

    python tools/bench_export.py            # a table
    python tools/bench_export.py --json     # the same figures as one JSON object
    python tools/bench_export.py --settings # also other quantize_dynamic settings than the shipped one

The base model (models/base, `load_base`) is published onto a fresh device in a temporary directory with
formats onnx,onnx-int8, and both models are loaded from it the way the app does (`load_current`, one thread).

- size: the two files' bytes.
- agreement: the share of CLINC150 test and oos_test utterances (5,500) whose answer (`Runtime.intent`, the
  exported out-of-scope threshold applied) is the same label under both models; accuracy against the gold
  labels for each.
- latency: one forward of both heads per utterance (tokenized beforehand, the same ids for both), over every
  utterance, --reps passes. fp32 and int8 run side by side: each utterance is timed on both, in alternating
  order, so load on the machine hits both alike. The ratio is fp32 / int8 of the median per-utterance time.
- publish: a publish from a warm template cache in a fresh interpreter, as a nightly export or a fast forget
  runs it, with and without `import onnx` first (what every publish paid before the template stopped
  importing onnx); each timed inside the child, from before the import to after the publish, --reps times.
- settings (--settings): the same agreement and side-by-side latency (one pass) for other settings of
  onnxruntime's quantize_dynamic, each quantizing the published model.onnx, beside the shipped one
  (`export_onnx_int8`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from assistant_forget.device.clinc import load_clinc
from assistant_forget.device.device import Device
from assistant_forget.export.publish import INT8_FILE, ONNX_FILE, TOKENIZER_FILE, current_export, publish
from assistant_forget.export.runtime import Runtime, load_current
from assistant_forget.families.assistant.base import load_base

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> quantize_dynamic arguments (weight type, per channel, op types, 7-bit weights);
    "QUInt8 per channel, MatMul (shipped)": None,  # None: export_onnx_int8
    "QUInt8 per channel, MatMul + Gather": ("QUInt8", True, ["MatMul", "Gather"], False),
    "QInt8 per channel, MatMul": ("QInt8", True, ["MatMul"], False),
    "QInt8 per channel, MatMul, 7-bit weights": ("QInt8", True, ["MatMul"], True),
    "QInt8 per tensor, MatMul": ("QInt8", False, ["MatMul"], False),
}
PUBLISH = r"""
import sys, time, torch
from assistant_forget.export.publish import publish
from assistant_forget.families.assistant.base import load_base
root, kind, shift = sys.argv[1], sys.argv[2], float(sys.argv[3])
b = load_base()
with torch.no_grad():
    b.model.intent.bias[0] += shift  # new weights: a new version is built, not found on disk
t = time.perf_counter()
if kind == "onnx":
    import onnx
publish(root, b.model, b.root / "tokenizer.model", list(b.labels), "exact", oos_threshold=b.labels.oos_threshold)
heavy = [m for m in ("onnx", "onnxruntime", "google.protobuf") if m in sys.modules and kind == "plain"]
print(time.perf_counter() - t, ",".join(heavy))
"""


def agreement(fp32, int8) -> dict:
    """Answers of both models on CLINC150 test + oos_test: agreement and accuracy against the gold labels."""
    clinc = load_clinc()
    out = {}
    for split in ("test", "oos_test"):
        rows = clinc[split]
        a = [fp32.intent(t).label for t, _ in rows]
        b = [int8.intent(t).label for t, _ in rows]
        out[split] = {"n": len(rows), "agree": sum(x == y for x, y in zip(a, b)),
                      "fp32_correct": sum(x == g for x, (_, g) in zip(a, rows)),
                      "int8_correct": sum(y == g for y, (_, g) in zip(b, rows))}
    n = sum(s["n"] for s in out.values())
    out["all"] = {k: sum(s[k] for s in out.values()) for k in ("n", "agree", "fp32_correct", "int8_correct")}
    out["agreement"] = out["all"]["agree"] / n
    return out


def latency(fp32, int8, reps: int) -> dict:
    """Median and mean per-utterance forward time (ms) of both models, timed side by side."""
    clinc = load_clinc()
    ids = [np.array([fp32.encode(t)], dtype=np.int64) for t, _ in clinc["test"] + clinc["oos_test"]]  # (1, T)
    times = {"fp32": [], "int8": []}
    for x in ids[:200]:  # warm-up
        fp32.run(x, np.ones_like(x)), int8.run(x, np.ones_like(x))
    for rep in range(reps):
        for i, x in enumerate(ids):
            mask = np.ones_like(x)  # (1, T)
            order = (("fp32", fp32), ("int8", int8)) if (i + rep) % 2 == 0 else (("int8", int8), ("fp32", fp32))
            for name, rt in order:
                t = time.perf_counter()
                rt.run(x, mask)
                times[name].append((time.perf_counter() - t) * 1e3)
    res = {f"{k}_ms_median": statistics.median(v) for k, v in times.items()}
    res |= {f"{k}_ms_mean": statistics.fmean(v) for k, v in times.items()}
    res["speedup_median"] = res["fp32_ms_median"] / res["int8_ms_median"]
    res["calls_each"] = len(times["fp32"])
    return res


def publish_times(root: Path, reps: int) -> dict:
    """Seconds of a warm-cache publish in a fresh interpreter, without and with `import onnx` first."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times: dict[str, list[float]] = {"plain": [], "onnx": []}
    heavy: set[str] = set()
    step = 0
    for _ in range(reps):
        for kind in ("plain", "onnx"):
            step += 1
            out = subprocess.run([sys.executable, "-c", PUBLISH, str(root), kind, f"{step * 1e-3}"], env=env,
                                 capture_output=True, text=True, check=True, timeout=600)
            value, _, names = out.stdout.strip().partition(" ")
            times[kind].append(float(value))
            heavy |= set(filter(None, names.split(",")))
    res = {f"{k}_s_median": statistics.median(v) for k, v in times.items()}
    res["ratio"] = res["onnx_s_median"] / res["plain_s_median"]
    res["heavy_imports_plain"] = sorted(heavy)
    return res


def compare_settings(fp32, live: Path, tokenizer: bytes, work: Path) -> dict:
    """Size, agreement with fp32 and latency ratio of each quantize_dynamic setting in SETTINGS."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = {}
    logging.disable(logging.WARNING)  # the quantizer's advice to pre-process
    for i, (name, setting) in enumerate(SETTINGS.items()):
        path = live / INT8_FILE
        if setting is not None:
            path = work / f"setting{i}.onnx"
            kind, per_channel, ops, reduce_range = setting
            quantize_dynamic(live / ONNX_FILE, path, weight_type=getattr(QuantType, kind), per_channel=per_channel,
                             op_types_to_quantize=ops, reduce_range=reduce_range)
        rt = Runtime(path.read_bytes(), tokenizer)
        out[name] = {"bytes": path.stat().st_size, "agreement": agreement(fp32, rt)["agreement"],
                     "speedup_median": latency(fp32, rt, 1)["speedup_median"]}
    logging.disable(logging.NOTSET)
    return out


def run(reps: int, work: Path, settings: bool) -> dict:
    base = load_base()
    root = Device.create(work / "device", seed=0).root
    publish(root, base.model, base.root / "tokenizer.model", list(base.labels), "exact",
            formats=("onnx", "onnx-int8"), oos_threshold=base.labels.oos_threshold)
    live = current_export(root)
    fp32, int8 = load_current(root), load_current(root, fmt="onnx-int8")
    res = {"model": str(base.root), "oos_threshold": base.labels.oos_threshold,
           "fp32_bytes": (live / ONNX_FILE).stat().st_size, "int8_bytes": (live / INT8_FILE).stat().st_size,
           "answers": agreement(fp32, int8), "latency": latency(fp32, int8, reps)}
    if settings:
        res["settings"] = compare_settings(fp32, live, (live / TOKENIZER_FILE).read_bytes(), work)
    return res | {"publish": publish_times(root, reps)}


def format_table(res: dict) -> str:
    """The figures as an aligned two-column table."""
    a, lat, pub = res["answers"], res["latency"], res["publish"]
    pct = lambda k, s: f"{100 * a[s][k] / a[s]['n']:.2f} %"  # noqa: E731
    rows = [("model", f"{res['model']} (oos threshold {res['oos_threshold']})"),
            ("model.onnx / model.int8.onnx", f"{res['fp32_bytes']:,} / {res['int8_bytes']:,} bytes "
                                             f"({res['fp32_bytes'] / res['int8_bytes']:.2f}x smaller)"),
            ("same answer: test / oos_test / all", f"{pct('agree', 'test')} / {pct('agree', 'oos_test')} / "
                                                   f"{pct('agree', 'all')} of {a['all']['n']:,}"),
            ("accuracy fp32 / int8: test", f"{pct('fp32_correct', 'test')} / {pct('int8_correct', 'test')}"),
            ("oos recall fp32 / int8: oos_test", f"{pct('fp32_correct', 'oos_test')} / "
                                                 f"{pct('int8_correct', 'oos_test')}"),
            ("forward per utterance fp32 / int8", f"{lat['fp32_ms_median']:.3f} / {lat['int8_ms_median']:.3f} ms "
                                                  f"median over {lat['calls_each']:,} calls each"),
            ("int8 speedup (median)", f"{lat['speedup_median']:.2f}x"),
            ("warm publish, fresh interpreter", f"{pub['plain_s_median']:.3f} s; with import onnx first "
                                                f"{pub['onnx_s_median']:.3f} s ({pub['ratio']:.1f}x)"),
            ("onnx/ort/protobuf imported by it", ", ".join(pub["heavy_imports_plain"]) or "none")]
    rows += [(f"setting: {name}", f"{s['bytes']:,} bytes, same answer {100 * s['agreement']:.2f} %, "
                                  f"speedup {s['speedup_median']:.2f}x") for name, s in res.get("settings", {}).items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3, help="timed passes over the utterances, and publishes of each kind")
    p.add_argument("--settings", action="store_true", help="also compare other quantize_dynamic settings")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error("--reps must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.reps, Path(tmp), args.settings)
    print(json.dumps(res | {"reps": args.reps}, indent=2, sort_keys=True) if args.json else format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
