"""The verification report: the CLI's verdict table, report.md with PNG plots, verification.json. No text.

Everything here shows the public summary (verify.public_summary, format 2) and aggregates of the
per-utterance scores, never a figure from which a forgotten text could be rebuilt: no exposure in bits, no
single forgotten utterance's loss. Files (format 2) in the report directory, never inside the device
directory:

    report.md          verdict, metrics, the forget-time verification of an audited receipt, plots
    losses.png         histograms of per-utterance LM loss: forgotten / unseen / retained, one panel per model,
                       on BINS shared bins; the forgotten set only when at least verify.MIN_SET were attacked
    roc.png            ROC curves of the loss-threshold MIA (and of LiRA when it ran), per model, computed on
                       the same BINS bins (so they show no more than the histograms), linear and with a
                       logarithmic FPR axis (the low-FPR regime an attacker works in); only from MIN_SET
                       forgotten utterances
    per_example.png    the per-example attacks: histogram of each forgotten utterance's challenge epsilon
                       (on the challenge's 0.5-wide buckets) and of its U-LiRA TPR at the attacker's FPR;
                       only from MIN_SET forgotten utterances
    exposure.png       the canary's exposure bucket after the forget among the buckets of its format, with
                       the secrets each holds, pass/fail against the oracle and whether it was memorised
    verification.json  the public summary (verification.py)
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..core.errors import BadInput
from ..core.fsio import atomic_write_bytes
from .metrics import roc_curve
from .verification import MIN_SET, Verification, bucket_edges, bucket_labels, bucket_shares, public_summary

FORMAT = 2  # version of the report's layout
BINS = 30  # bins of the loss histograms, and of the scores the ROC curves are drawn from
MODELS = ("before", "current", "oracle")  # plotting order
PLOTS = ("losses.png", "roc.png", "per_example.png", "exposure.png")  # every plot a report may hold
SET_COLOURS = {"forgotten": "tab:red", "unseen": "tab:blue", "retained": "tab:green"}
MODEL_STYLES = {"before": ":", "current": "-", "oracle": "--"}


def report_dir(device_root: Path, report: Path | None) -> Path:
    """Where the report goes: `report`, or DIR-verify beside the device; BadInput if inside the device."""
    device = Path(device_root).resolve()
    out = Path(report) if report is not None else device.parent / f"{device.name}-verify"
    if out.resolve() == device or device in out.resolve().parents:
        raise BadInput(f"the report directory {out} is inside the device directory {device_root}; the device "
                       "holds nothing but its own state: choose another --report")
    if out.exists() and not out.is_dir():
        raise BadInput(f"--report {out} exists and is not a directory; choose a directory")
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def forgotten_shown(ver: Verification) -> bool:
    """Whether figures over the forgotten utterances may be shown: at least MIN_SET of them were attacked."""
    return "forgotten" in ver.losses and (ver.summary.get("counts") or {}).get("forgotten", 0) >= MIN_SET


def shown_losses(ver: Verification) -> dict[str, dict[str, np.ndarray]]:
    """The loss sets a plot may show: all but the forgotten one when it is too small."""
    return {s: by for s, by in ver.losses.items() if s != "forgotten" or forgotten_shown(ver)}


def binned(pos: np.ndarray, neg: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """Scores replaced by the index of their bin among `bins` equal bins over both sets' range.

    >>> [x.tolist() for x in binned(np.array([0.0, 0.5, 1.0]), np.array([0.26]), bins=4)]
    [[0, 1, 3], [1]]
    """
    every = np.concatenate([pos, neg])
    every = every[np.isfinite(every)]
    lo, hi = (float(every.min()), float(every.max())) if every.size else (0.0, 1.0)
    edges = np.linspace(lo, hi + 1e-9, bins + 1)
    q = lambda x: np.digitize(np.nan_to_num(np.clip(x, lo, hi), nan=hi), edges[1:-1])  # noqa: E731
    return q(pos), q(neg)


def plot_losses(ver: Verification) -> bytes:
    """Histograms of the LM loss of each set, one panel per model, on shared bins."""
    from matplotlib.figure import Figure

    losses = shown_losses(ver)
    models = [m for m in MODELS if any(m in by for by in losses.values())]
    every = np.concatenate([x for by in losses.values() for x in by.values()])
    bins = np.linspace(every.min(), every.max() + 1e-9, BINS + 1)
    fig = Figure(figsize=(4 * len(models), 3.2))
    for k, m in enumerate(models):
        ax = fig.add_subplot(1, len(models), k + 1)
        for s, by in losses.items():
            if m in by:
                ax.hist(by[m], bins=bins, density=True, alpha=0.45, color=SET_COLOURS[s], label=f"{s} ({len(by[m])})")
        ax.set(title=f"{m} model", xlabel="LM loss (nats / token)", ylabel="density")
        ax.legend(fontsize=8)
    return _png(fig)


def plot_roc(ver: Verification) -> bytes:
    """ROC of the membership attacks (forgotten = positive, unseen = negative), per model, on binned scores:
    a curve from exact scores would give each forgotten utterance's rank among the unseen ones."""
    from matplotlib.figure import Figure

    attacks = [("loss-threshold MIA", {m: binned(-ver.losses["forgotten"][m], -ver.losses["unseen"][m])
                                       for m in MODELS if m in ver.losses.get("forgotten", {})})]
    if ver.lira:
        attacks.append(("LiRA", {m: binned(*ver.lira[m]) for m in MODELS if m in ver.lira}))
    fig = Figure(figsize=(8.4, 3.8 * len(attacks)))
    for k, (title, curves) in enumerate(attacks):
        for col, log in enumerate((False, True)):
            ax = fig.add_subplot(len(attacks), 2, 2 * k + col + 1)
            for m, (pos, neg) in curves.items():
                fpr, tpr = roc_curve(pos, neg)
                ax.plot(fpr, tpr, MODEL_STYLES[m], label=m)
            ax.plot([1e-3, 1], [1e-3, 1], color="0.7", lw=0.8)
            if log:
                ax.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), title=f"{title}, low FPR")
            else:
                ax.set(xlim=(0, 1), ylim=(0, 1), title=title)
            ax.set(xlabel="false positive rate", ylabel="true positive rate")
            ax.legend(fontsize=8)
    return _png(fig)


def plot_per_example(ver: Verification, summary: dict) -> bytes:
    """Per forgotten utterance: its challenge epsilon (buckets of privacy.BUCKET) and its U-LiRA TPR."""
    from matplotlib.figure import Figure

    from .privacy import BUCKET, EPSILON_CAP

    pe, fig = summary["per_example"], Figure(figsize=(8.4, 3.4))
    ax = fig.add_subplot(1, 2, 1)
    ax.hist(np.asarray(ver.per_example["epsilon"]), bins=np.arange(0, EPSILON_CAP + BUCKET, BUCKET), color="tab:purple")
    ax.set(title=f"challenge epsilon per example ({pe['method']} vs {pe['models']} oracles)", xlabel="epsilon",
           ylabel="forgotten utterances")
    ax = fig.add_subplot(1, 2, 2)
    fpr = pe["u_lira"]["fpr"]
    ax.hist(np.asarray(ver.per_example["u_lira_tpr"]), bins=np.linspace(0, 1, 11), color="tab:orange")
    ax.axvline(fpr, color="0.3", ls="--", label=f"FPR {fpr:g} (chance)")
    ax.set(title="U-LiRA: TPR per example", xlabel="true positive rate at the FPR", ylabel="forgotten utterances")
    ax.legend(fontsize=8)
    for a in fig.axes:
        a.title.set_fontsize(9)
    return _png(fig)


def plot_exposure(summary: dict) -> bytes:
    """The exposure buckets of the canary's format and the secrets each holds, with the bucket of the model
    before the forget, after it, and after the relearning attack (when it ran) marked; buckets only."""
    from matplotlib.figure import Figure

    e = summary["exposure"]
    edges = bucket_edges(e["space"])
    labels, shares = bucket_labels(edges), bucket_shares(e["space"], edges)
    rl = summary.get("relearn") or {}
    marks = [("before", e.get("bucket_before"), "tab:gray"), ("after", e["bucket"], "tab:red")]
    if rl.get("bucket_after_attack") in labels:
        marks.append(("after relearning", rl["bucket_after_attack"], "tab:purple"))
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(np.arange(len(labels)), shares, color=["tab:red" if b == e["bucket"] else "0.75" for b in labels])
    for k, (name, bucket, colour) in enumerate(marks):
        if bucket in labels:
            x = labels.index(bucket)
            ax.annotate(name, (x, shares[x]), xytext=(0, 6 + 11 * k), textcoords="offset points", ha="center",
                        fontsize=8, color=colour)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylim(0, max(shares) * 1.35)
    ax.set(xlabel=f"exposure ({summary.get('weights', 'onnx')} weights, bits)", ylabel="secrets of the format in the bucket",
           title=f"canary after the forget: {e['bucket'] or 'not measured'}, among {e['candidates']:,} secrets\n"
                 f"vs oracle + {e['threshold_bits']:g} bit: {_yes(e['passed'], 'pass', 'FAIL')}; memorised before "
                 f"(>= oracle + {e['memorised_bits']:g} bits): {_yes(e['memorised_before'])}"
                 + (f"; after relearning: {_yes(rl.get('passed'), 'pass', 'FAIL')}" if rl else ""))
    ax.title.set_fontsize(9)
    return _png(fig)


def _yes(x: bool | None, yes: str = "yes", no: str = "no") -> str:
    return "-" if x is None else (yes if x else no)


def _exposure_words(e: dict) -> str:
    """One line on a public exposure summary."""
    return (f"{_yes(e['passed'], 'pass', 'FAIL')} against the oracle + {e['threshold_bits']:g} bit; memorised "
            f"before the forget (>= oracle + {e['memorised_bits']:g} bits): {_yes(e['memorised_before'])}; "
            f"among {e['candidates']:,} secrets")


def format_verdict(summary: dict) -> str:
    """The verdict table the CLI prints (of the public summary: `summary` is coarsened if it is an exact one)."""
    s = public_summary(summary)
    head = (f"verify {s.get('day') or 'receipt ' + str(s.get('receipt', ''))[:8]} ({s['kind']}, {s['tier']} tier, "
            f"{s['weights']} weights): {'PASS' if s['passed'] else 'FAIL'}")
    lines = [head, f"{'check':22s} {'current':>9s} {'oracle':>9s} {'checked':>9s} {'threshold':>9s}  result"]
    for name, r in s["verdict"].items():
        lines.append(f"{name:22s} {_f(r['value'])} {_f(r['oracle'])} {_f(r['checked'])} {_f(r['threshold'])}  "
                     f"{'pass' if r['passed'] else 'FAIL'}")
    for name in s["skipped"]:
        lines.append(f"{name:22s} {'-':>9s} {'-':>9s} {'-':>9s} {'-':>9s}  not measured")
    v = s["version"]
    lines.append(f"{'model version':22s} {v['current'][:9]:>9s} {v['oracle'][:9]:>9s} {'':9s}  "
                 + ("equal" if v["equal"] else f"differ ({s['state']} state)"))
    for sname, acc in s["accuracy"].items():
        extra = f"  before {_f(acc['before'])}" if "before" in acc else ""
        lines.append(f"{'accuracy ' + sname:22s} {_f(acc['current'])} {_f(acc['oracle'])}{extra}")
    for head_ in ("intent", "lm"):
        lines.append(f"{'KL ' + head_ + ' (nats)':22s} " + "  ".join(f"{k} {_f(x).strip()}"
                                                                       for k, x in s["kl"][head_].items()))
    for who, g in (s.get("accuracy_noise") or {}).items():
        lo, hi = g["interval_points"]
        lines.append(f"{'accuracy gap ' + who:22s} {g['gap_points']:+.2f} pt vs oracle, {100 * g['confidence']:.0f} % "
                     f"interval [{lo:+.2f}, {hi:+.2f}], McNemar p {g['p_value']:.3g}: "
                     + ("significant" if g["significant"] else "within noise"))
    if s["mia_auc"] and "before" in s["mia_auc"]:
        lines.append(f"{'MIA AUC before forget':22s} {_f(s['mia_auc']['before'])}")
    pe = s.get("per_example")
    if pe:
        u, c = pe["u_lira"], pe["challenge"]
        lines.append(f"{'per-example attacks':22s} {pe['method']}: {pe['models']} models vs {pe['models']} oracles, "
                     f"{pe['horizon']} later day(s): U-LiRA TPR {_num(u['tpr'])} at FPR {u['fpr']:g}, AUC "
                     f"{_num(u['auc'])}; challenge quality {_num(c['quality'])}, median epsilon "
                     f"{_num(c['median_epsilon'])}")
    md = s.get("model_diff")
    if md:
        lines.append(f"{'model-diff AUC':22s} current {_num(md['current']['auc'])} ({md['current']['feature']}), "
                     f"exact forget {_num(md['oracle']['auc'])}: an attacker who kept the model before the forget")
    rl = s.get("relearn")
    if rl:
        lines.append(f"{'relearning':22s} {rl['steps']} steps on {rl['related']} related utterances: forgotten loss "
                     f"gap to the oracle after {_num(rl['loss_gap_after'])} nats, recovered "
                     f"{_num(rl['loss_recovered'])}; canary after it: "
                     + ("-" if rl["passed"] is None else ("pass" if rl["passed"] else "FAIL")))
    for name, why in ((s.get("attacks") or {}).get("skipped") or {}).items():
        lines.append(f"{'skipped ' + name:22s} {why}")
    if s["exposure"]:
        e = s["exposure"]
        lines.append(f"{'canary exposure':22s} {e['bucket'] or '-'}: {_exposure_words(e)}")
    if s.get("forgotten_figures"):
        lines.append(f"figures over forgotten utterances: {s['forgotten_figures']}")
    c = s["counts"]
    lines.append(f"utterances: {c['forgotten']} forgotten (+{c['forgotten_also_retained']} also said on retained "
                 f"days, not attacked), {c['unseen']} unseen ({c['unseen_source']}), {c['retained']} retained")
    return "\n".join(lines)


def _f(x: float | None) -> str:
    return f"{'-':>9s}" if x is None else f"{x:9.4f}"


def _num(x) -> str:
    return "-" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def _markdown(s: dict, plots: list[str]) -> str:
    lines = [f"# Verification of a forget: {'PASS' if s['passed'] else 'FAIL'}", "",
             f"- kind: {s['kind']}, tier: {s['tier']}, weights scored: {s['weights']}, state: {s['state']}",
             f"- day: {s.get('day') or '-'}, receipt: {s.get('receipt', '-')}",
             f"- model version {s['version']['current']}, oracle {s['version']['oracle']} "
             f"({'equal' if s['version']['equal'] else 'different'}); export {s['version']['export'] or '-'}",
             f"- utterances: {s['counts']['forgotten']} forgotten, {s['counts']['unseen']} unseen "
             f"({s['counts']['unseen_source']}), {s['counts']['retained']} retained", "",
             "## Verdict", "", "The checked value is the gap to the oracle (accuracy in points), or LiRA's AUC.", "",
             "| check | current | oracle | checked | threshold | result |", "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {_num(r['value'])} | {_num(r['oracle'])} | {_num(r['checked'])} | {_num(r['threshold'])} | "
              f"{'pass' if r['passed'] else 'FAIL'} |" for n, r in s["verdict"].items()]
    lines += [f"| {n} | - | - | - | - | not measured |" for n in s["skipped"]]
    lines += ["", "## Metrics", "", "| metric | " + " | ".join(MODELS) + " |", "|---|---|---|---|"]
    rows = [("MIA AUC (forgotten vs unseen)", s["mia_auc"]), ("LiRA AUC", s["lira_auc"])]
    rows += [(f"accuracy, {k}", v) for k, v in s["accuracy"].items()]
    lines += [f"| {name} | " + " | ".join(_num((v or {}).get(m)) for m in MODELS) + " |" for name, v in rows if v]
    lines += ["", "KL(oracle || current), nats: "
              + "; ".join(f"{h} {k} {_num(v)}" for h, by in s["kl"].items() for k, v in by.items()), ""]
    for who, g in (s.get("accuracy_noise") or {}).items():
        lo, hi = g["interval_points"]
        lines += [f"Accuracy gap of the {who} model to the oracle on the unseen utterances: {g['gap_points']:+.2f} "
                  f"points, {100 * g['confidence']:.0f} % paired-bootstrap interval [{lo:+.2f}, {hi:+.2f}], McNemar "
                  f"p = {g['p_value']:.3g}: " + ("significant beyond the threshold." if g["significant"]
                                                  else "not beyond the threshold by more than its noise."), ""]
    pe = s.get("per_example")
    if pe:
        lines += ["## Per-example attacks", "",
                  f"{pe['models']} models that forgot the day with {pe['method']} against {pe['models']} exact "
                  f"oracles, each trained from the state before the day over {pe['horizon']} later day(s) "
                  f"({pe['executor']}, {_num(pe['seconds'])} s).", "",
                  "| attack | figure | value |", "|---|---|---|"]
        lines += [f"| U-LiRA | {k} | {_num(v)} |" for k, v in pe["u_lira"].items()]
        lines += [f"| challenge epsilon | {k} | {_num(v)} |" for k, v in pe["challenge"].items()]
        lines.append("")
    md, rl = s.get("model_diff"), s.get("relearn")
    if md:
        lines += ["## Model-diff attack", "", "An attacker who kept the exported model from before the forget ranks "
                  "utterances by how much the forget changed their loss (docs/THREAT_MODEL.md). The exact forget "
                  "leaks too: that is what forgetting is, which is why no old export is kept.", "",
                  "| after the forget | AUC | TPR at FPR | feature |", "|---|---|---|---|"]
        lines += [f"| {'current' if m == 'current' else 'exact (oracle)'} | {_num(f['auc'])} | {_num(f['tpr'])} at "
                  f"{f['fpr']:g} | {f['feature']} |" for m, f in md.items()] + [""]
    if rl:
        lines += ["## Relearning attack", "", f"{rl['steps']} fine-tuning steps (lr {rl['lr']:g}, {rl['parameters']} "
                  f"weights) on {rl['related']} public utterances of the forgotten intents (and other secrets of the "
                  "canary's format), never a forgotten text.", "", "| model | forgotten loss before | after |",
                  "|---|---|---|"]
        lines += [f"| {m} | {_num(f.get('loss_before'))} | {_num(f.get('loss_after'))} |" for m, f in rl["models"].items()]
        lines += ["", f"Loss gap to the oracle after the attack: {_num(rl['loss_gap_after'])} nats; recovered beyond "
                  f"the oracle's own drop: {_num(rl['loss_recovered'])}. Canary after the attack (<= oracle + "
                  f"{rl['threshold_bits']:g} bit): " + ("not measured" if rl["passed"] is None else
                                                         ("pass" if rl["passed"] else "FAIL")) + ".", ""]
    skipped = (s.get("attacks") or {}).get("skipped") or {}
    if skipped:
        lines += ["Attacks asked for and not run: " + "; ".join(f"{n} ({why})" for n, why in skipped.items()), ""]
    if s.get("forgotten_figures"):
        lines += [f"Figures over the forgotten utterances: {s['forgotten_figures']}.", ""]
    if s["exposure"]:
        e = s["exposure"]
        lines += [f"Canary exposure after the forget: **{e['bucket'] or '-'}** ({_exposure_words(e)}). Only the "
                  "bucket is kept: an exact figure would point at the secret.", ""]
    if "at_forget" in s:
        lines += ["## Verification at forget time", ""]
        lines += (["```json", json.dumps(s["at_forget"], indent=1, sort_keys=True), "```"] if s["at_forget"]
                  else ["(none recorded: the forget ran without verification)"])
        lines.append("")
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def write_report(ver: Verification, out: Path) -> Path:
    """Write report.md, the plots and verification.json into `out` (created if needed); returns report.md."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = public_summary(ver.summary)  # a format-2 summary as it is; never an exact one
    plots = {"losses.png": plot_losses(ver)}
    if forgotten_shown(ver):
        plots["roc.png"] = plot_roc(ver)
        if ver.per_example and summary.get("per_example"):
            plots["per_example.png"] = plot_per_example(ver, summary)
    if summary.get("exposure"):
        plots["exposure.png"] = plot_exposure(summary)
    for name in set(PLOTS) - set(plots):  # a plot of an earlier report that this one does not have
        (out / name).unlink(missing_ok=True)
    for name, data in plots.items():
        atomic_write_bytes(out / name, data)
    atomic_write_bytes(out / "verification.json",
                       (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    atomic_write_bytes(out / "report.md", _markdown(summary, list(plots)).encode("utf-8"))
    return out / "report.md"
