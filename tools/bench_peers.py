"""Benchmark: the base model beside classic intent classifiers trained here on the same CLINC150 split.

    .venv/bin/pip install fasttext-numpy2 scikit-learn   # the peers: benchmark only, not dependencies
    .venv/bin/python tools/bench_peers.py                 # markdown table on stdout
    .venv/bin/python tools/bench_peers.py --base models/base --base DIR2 --json out.json

Why: the base model's card quotes the CLINC150 paper's figures, which were obtained with other code,
thresholds and preprocessing. Here every peer is trained on exactly what the base model saw (CLINC150
"full" train + oos_train, with oos as a 151st class), picks its hyperparameters on val + oos_val only,
gets its out-of-scope threshold from val + oos_val by the base model's own rule (the largest threshold
on a 0.01 grid that costs at most OOS_ACCURACY_BUDGET of val in-scope accuracy against argmax alone,
`tune_threshold`), and is scored on test + oos_test with the same metric functions (`in_scope_accuracy`,
`oos_recall`, `decide`). The base model's row comes from tools/eval_base.py's `evaluate` (computed, not
copied from its card).

The base model may be built with `--calibrate-oos` (tools/build_base_model.py: an intent-head temperature
and oos-logit bias chosen on val together with the threshold, within the same budget). So that the rule is
not an advantage of the base model alone, each peer also gets a "calibrated" row: the same search
(`calibrate_logits`) on its val log-probabilities, applied to its test probabilities (--no-calibrate: off).

Peers:
- fastText supervised (softmax loss, word n-grams and char n-grams), one thread and a fixed seed, so it
  is deterministic; grid over lr x epochs x wordNgrams chosen by val in-scope accuracy (argmax). Its
  disk size is the saved .bin; the same model quantised (.ftz, product quantisation with retraining, the
  fastText way to make it small) is a second row.
- TF-IDF (word 1-2-grams + char_wb 2-5-grams, sublinear tf) + multinomial logistic regression (lbfgs,
  deterministic), C chosen by val in-scope accuracy (argmax). It is saved without pickle: vocabularies as
  JSON, idf weights and coefficients as float32 safetensors; the disk size is those files.

Disk sizes are the model files only (the base model's row adds its tokenizer in its own column).
Latency: one utterance at a time (predict over all classes), p50 over LATENCY_UTTERANCES test
utterances, one thread, on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, before numpy loads
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from assistant_forget.build.evaluate import in_scope_accuracy, oos_recall, tune_threshold  # noqa: E402
from assistant_forget.device.clinc import intent_labels, load_clinc  # noqa: E402
from assistant_forget.families.assistant.base import base_dir, decide  # noqa: E402

OOS_ACCURACY_BUDGET = 0.005  # the same budget as tools/build_base_model.py's threshold rule (checked in main)
LATENCY_UTTERANCES = 300  # test utterances timed one at a time
FASTTEXT_GRID = [  # (lr, epoch, wordNgrams): small, since each point is a full training
    (0.5, 25, 1), (0.5, 25, 2), (1.0, 50, 2), (0.5, 50, 2)]
FASTTEXT_FIXED = dict(dim=100, minn=3, maxn=5, bucket=200_000, loss="softmax", minCount=1, thread=1, seed=0,
                      verbose=0)
FASTTEXT_QUANT = dict(qnorm=True, retrain=True, cutoff=15_000, dsub=2)  # product quantisation for the .ftz row
LOGREG_C = [5.0, 20.0, 80.0]  # inverse regularisation strengths tried on val
CALIBRATE = True  # also score each peer with build_base_model's --calibrate-oos rule (--no-calibrate: off)


def split_rows(split: str) -> tuple[list[str], np.ndarray]:
    """Texts and label indices (intent_labels order, oos last) of train / val / test, each with its oos part."""
    data, index = load_clinc(), {n: i for i, n in enumerate(intent_labels())}
    rows = data[split] + data[f"oos_{split}"]
    return [t for t, _ in rows], np.array([index[i] for _, i in rows], dtype=np.int64)


def scores(probs: np.ndarray, gold: np.ndarray, threshold: float) -> dict[str, float]:
    """in-scope accuracy and oos recall with `threshold` and with argmax alone (the base model's definitions)."""
    p, g, oos = torch.from_numpy(probs.astype(np.float32)), torch.from_numpy(gold), len(intent_labels()) - 1
    pred, _ = decide(p, oos, threshold)
    pred0, _ = decide(p, oos, 0.0)
    return {"in_scope_accuracy": in_scope_accuracy(pred, g, oos), "oos_recall": oos_recall(pred, g, oos),
            "in_scope_accuracy_argmax": in_scope_accuracy(pred0, g, oos), "oos_recall_argmax": oos_recall(pred0, g, oos)}


def threshold_on_val(val_probs: np.ndarray, val_gold: np.ndarray) -> float:
    """The base model's oos rule (`tune_threshold`, same budget), on val + oos_val."""
    return tune_threshold(torch.from_numpy(val_probs.astype(np.float32)), torch.from_numpy(val_gold),
                          len(intent_labels()) - 1, OOS_ACCURACY_BUDGET)


def latency_p50_ms(predict_one: Callable[[str], object], texts: Sequence[str]) -> float:
    """Median wall time of one-utterance predictions, in ms."""
    step = max(1, len(texts) // LATENCY_UTTERANCES)
    times = []
    for t in list(texts)[::step][:LATENCY_UTTERANCES]:
        t0 = time.perf_counter()
        predict_one(t)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def calibrated(probs: np.ndarray, temperature: float, oos_bias: float) -> np.ndarray:
    """softmax((log p + oos_bias * e_oos) / temperature): build_base_model's calibration on a peer's output."""
    z = np.log(np.clip(probs, 1e-12, None))
    z[:, len(intent_labels()) - 1] += oos_bias
    z = z / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def finish(name: str, chosen: str, val_probs: np.ndarray, test_probs: np.ndarray, size: int, lat: float,
           seconds: float) -> list[dict]:
    """A peer's rows: threshold from val, figures on test; with CALIBRATE, a second row with the build's
    `--calibrate-oos` rule (temperature, oos bias and threshold chosen on val) applied to its probabilities."""
    _, val_gold = split_rows("val")
    _, test_gold = split_rows("test")
    thr = threshold_on_val(val_probs, val_gold)
    common = {"val_in_scope_accuracy_argmax": scores(val_probs, val_gold, 0.0)["in_scope_accuracy_argmax"],
              "disk_bytes": size, "latency_p50_ms_1thread": lat, "train_seconds": round(seconds, 1)}
    rows = [{"name": name, "chosen": chosen, "oos_threshold": thr, **scores(test_probs, test_gold, thr), **common}]
    if CALIBRATE:
        import build_base_model
        c = build_base_model.calibrate_logits(torch.from_numpy(np.log(np.clip(val_probs, 1e-12, None))).float(),
                                              torch.from_numpy(val_gold), len(intent_labels()) - 1,
                                              OOS_ACCURACY_BUDGET)
        rows.append({"name": f"{name}, calibrated", "oos_threshold": c["oos_threshold"], "calibration": c,
                     "chosen": f"{chosen}; T {c['temperature']}, oos bias {c['oos_bias']}",
                     **scores(calibrated(test_probs, c["temperature"], c["oos_bias"]), test_gold, c["oos_threshold"]),
                     **common})
    return rows


# -- fastText -------------------------------------------------------------------------------------

def _ft_probs(model, texts: Sequence[str]) -> np.ndarray:
    """(N, I) probabilities over every label, columns in intent_labels order."""
    col = {f"__label__{n}": i for i, n in enumerate(intent_labels())}
    out = np.zeros((len(texts), len(col)), dtype=np.float64)
    labels, probs = model.predict([t.replace("\n", " ") for t in texts], k=-1)
    for r, (ls, ps) in enumerate(zip(labels, probs)):
        for lab, p in zip(ls, ps):
            out[r, col[lab]] = p
    return out


def bench_fasttext(work: Path, log=print) -> list[dict]:
    """fastText: grid on val, then the chosen model full (.bin) and quantised (.ftz)."""
    import fasttext
    names = intent_labels()
    texts, gold = split_rows("train")
    train_file = work / "fasttext.train.txt"
    train_file.write_text("".join(f"__label__{names[g]} {t}\n" for t, g in zip(texts, gold)), encoding="utf-8")
    val_texts, val_gold = split_rows("val")
    test_texts, _ = split_rows("test")
    best = None
    for lr, epoch, ngrams in FASTTEXT_GRID:
        t0 = time.perf_counter()
        m = fasttext.train_supervised(input=str(train_file), lr=lr, epoch=epoch, wordNgrams=ngrams, **FASTTEXT_FIXED)
        secs = time.perf_counter() - t0
        vp = _ft_probs(m, val_texts)
        acc = scores(vp, val_gold, 0.0)["in_scope_accuracy_argmax"]
        log(f"  fastText lr={lr} epoch={epoch} wordNgrams={ngrams}: val in-scope (argmax) {acc:.4f} ({secs:.0f} s)")
        if best is None or acc > best[0]:
            best = (acc, (lr, epoch, ngrams), m, vp, secs)
    _, (lr, epoch, ngrams), m, vp, secs = best
    chosen = f"lr {lr}, epoch {epoch}, wordNgrams {ngrams}, dim {FASTTEXT_FIXED['dim']}, char {FASTTEXT_FIXED['minn']}-{FASTTEXT_FIXED['maxn']}"
    m.save_model(str(work / "fasttext.bin"))
    rows = finish("fastText", chosen, vp, _ft_probs(m, test_texts), (work / "fasttext.bin").stat().st_size,
                   latency_p50_ms(lambda t: m.predict(t, k=-1), test_texts), secs)
    t0 = time.perf_counter()
    m.quantize(input=str(train_file), **FASTTEXT_QUANT)
    secs += time.perf_counter() - t0
    m.save_model(str(work / "fasttext.ftz"))
    rows += (finish("fastText quantised (.ftz)", chosen + f", PQ cutoff {FASTTEXT_QUANT['cutoff']:,} retrained",
                       _ft_probs(m, val_texts), _ft_probs(m, test_texts), (work / "fasttext.ftz").stat().st_size,
                       latency_p50_ms(lambda t: m.predict(t, k=-1), test_texts), secs))
    return rows


# -- TF-IDF + logistic regression -----------------------------------------------------------------

def bench_logreg(work: Path, log=print) -> list[dict]:
    """Word + char TF-IDF and multinomial logistic regression; C on val; saved as JSON + safetensors."""
    from safetensors.numpy import save_file
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    texts, gold = split_rows("train")
    val_texts, val_gold = split_rows("val")
    test_texts, _ = split_rows("test")
    t0 = time.perf_counter()
    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    feats = lambda ts: hstack([word.transform(ts), char.transform(ts)]).tocsr()  # noqa: E731
    x = hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
    xv = feats(val_texts)
    vec_secs = time.perf_counter() - t0
    best = None
    for c in LOGREG_C:
        t0 = time.perf_counter()
        clf = LogisticRegression(C=c, max_iter=2000, solver="lbfgs", random_state=0).fit(x, gold)
        secs = time.perf_counter() - t0 + vec_secs
        vp = clf.predict_proba(xv)
        acc = scores(vp, val_gold, 0.0)["in_scope_accuracy_argmax"]
        log(f"  TF-IDF + LR C={c}: val in-scope (argmax) {acc:.4f}, {x.shape[1]:,} features ({secs:.0f} s)")
        if best is None or acc > best[0]:
            best = (acc, c, clf, vp, secs)
    _, c, clf, vp, secs = best
    if list(clf.classes_) != list(range(len(intent_labels()))):
        raise SystemExit("logistic regression did not see every class in training")
    vocab = {"word": {k: int(v) for k, v in word.vocabulary_.items()}, "char": {k: int(v) for k, v in char.vocabulary_.items()}}
    (work / "tfidf_vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    save_file({"idf_word": word.idf_.astype(np.float32), "idf_char": char.idf_.astype(np.float32),
               "coef": clf.coef_.astype(np.float32), "intercept": clf.intercept_.astype(np.float32)},
              str(work / "tfidf_logreg.safetensors"))
    size = sum((work / f).stat().st_size for f in ("tfidf_vocab.json", "tfidf_logreg.safetensors"))
    lat = latency_p50_ms(lambda t: clf.predict_proba(feats([t])), test_texts)
    return finish("TF-IDF + logistic regression", f"C {c}, {x.shape[1]:,} features (word 1-2 + char_wb 2-5)",
                  vp, clf.predict_proba(feats(test_texts)), size, lat, secs)


# -- the base model -------------------------------------------------------------------------------

def bench_base(root: Path | None) -> dict:
    """The base model's row, from tools/eval_base.py's `evaluate` (its shipped threshold, chosen on val)."""
    import eval_base
    r = eval_base.evaluate(root, "test", threads=1)
    return {"name": f"base model ({r['parameters']:,} params)", "chosen": str(root or base_dir()),
            "oos_threshold": r["oos_threshold"], "in_scope_accuracy": r["in_scope_accuracy"],
            "oos_recall": r["oos_recall"], "in_scope_accuracy_argmax": r["in_scope_accuracy_argmax"],
            "oos_recall_argmax": r["oos_recall_argmax"], "disk_bytes": r["weights_bytes"],
            "tokenizer_bytes": r["tokenizer_bytes"], "parameters": r["parameters"],
            "latency_p50_ms_1thread": r["latency_p50_ms_1thread"]}


def table(rows: list[dict]) -> str:
    """Markdown table, one row per model."""
    pct = lambda x: f"{100 * x:.2f} %"  # noqa: E731
    out = ["| model | in-scope acc. | oos recall | in-scope acc. (argmax) | oos recall (argmax) | oos threshold "
           "| on disk | latency p50 (1 thread) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        disk = f"{r['disk_bytes']:,} B" + (f" (+ tokenizer {r['tokenizer_bytes']:,} B)" if "tokenizer_bytes" in r else "")
        out.append(f"| {r['name']} | {pct(r['in_scope_accuracy'])} | {pct(r['oos_recall'])} | "
                   f"{pct(r['in_scope_accuracy_argmax'])} | {pct(r['oos_recall_argmax'])} | {r['oos_threshold']:.2f} | "
                   f"{disk} | {r['latency_p50_ms_1thread']:.2f} ms |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, action="append", default=None,
                   help=f"base-model directory to compare (repeatable; default {base_dir()})")
    p.add_argument("--peers", default="fasttext,logreg", help="comma-separated: fasttext, logreg (default both)")
    p.add_argument("--work", type=Path, default=None, help="where the peers' model files go (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write every row to this JSON file")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the peers' second row with build_base_model's --calibrate-oos rule")
    args = p.parse_args(argv)
    global CALIBRATE
    CALIBRATE = not args.no_calibrate
    import build_base_model
    if build_base_model.OOS_ACCURACY_BUDGET != OOS_ACCURACY_BUDGET:
        raise SystemExit("OOS_ACCURACY_BUDGET differs from tools/build_base_model.py's; keep them equal")
    torch.set_num_threads(1)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    rows = [bench_base(b) for b in (args.base or [None])]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        peers = {"fasttext": bench_fasttext, "logreg": bench_logreg}
        for name in [s.strip() for s in args.peers.split(",") if s.strip()]:
            if name not in peers:
                raise SystemExit(f"unknown peer {name!r}: choose from {', '.join(peers)}")
            log(f"{name}:")
            rows += peers[name](work, log)
    print(table(rows))
    for r in rows:
        print(f"- {r['name']}: {r['chosen']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
