"""Verification of a forget on an hf-causal-lm device: canary exposure and the loss attack, against the oracle.

The oracle is the exact replay (oracle.exact_replay, family-neutral: the device's timeline replayed on a copy
of its ledger from the checkpoint before the forgotten day, on the log without the forgotten rows): the model
of a device that never saw them.

- **Canary exposure** (Carlini et al. 2019, the Secret Sharer, defined on an LM): the secret's rank among
  every other secret of its format (canary.py: 10^5 for five digits) under each model, as log2|R| - log2 rank
  (metrics.exposure_rank). A secret's score is the model's negative log-likelihood of its tokens after the
  prefix all the format's secrets share (the prefix adds the same to each, so the rank is the full text's;
  `</s>` is left out), computed over the token trie of the secrets with the model's key/value cache, so the
  10^5 secrets cost about as many tokens as the trie has nodes (`trie_nll`).
- **Loss MIA** (Yeom et al.): AUC of "lower loss => member" of the forgotten utterances against unseen ones
  (metrics.loss_threshold_mia_auc); a forget passes when the model's AUC is within `mia_gap` of the oracle's.

`what_if` (a day not forgotten yet): on a working copy of the device inside DIR/.work (removed at the end), the
model before the forget, after a fast forget, after its exact pass, and the oracle. Checks: the canary was
memorised before (>= oracle + `memorised_bits`, informative), and for fast and exact: exposure <= oracle +
`gap_bits`, |MIA AUC - oracle's| <= `mia_gap`; exact also has the oracle's model version. `audit` (a forgotten
day): the device's current model against the oracle, the same checks. Nothing forgotten is written: the
report holds figures only, exposures rounded to 0.1 bit, never a text.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.errors import BadInput, NothingToForget
from ..core.ledger import state_version
from ..device import receipts, workdir
from ..device.clinc import load_clinc
from . import metrics
from .canary import candidate, canary_format, enumerate_candidates, secret_index
from .oracle import exact_replay


@dataclass(frozen=True)
class LMVerifyConfig:
    memorised_bits: float = 10.0  # a canary was memorised before the forget: exposure >= oracle + this
    gap_bits: float = 1.0  # after the forget: exposure <= oracle + this
    mia_gap: float = 0.02  # |MIA AUC - oracle's| <= this
    unseen: int = 200  # unseen utterances (CLINC150 test, never trained) the loss attack compares with
    group: int = 10_000  # secrets scored per trie (bounds the key/value cache's memory)
    seed: int = 0


def trie_nll(model, seqs: Sequence[Sequence[int]], start: int) -> np.ndarray:
    """Sum of -log p(token t | tokens < t) over t >= `start` for each sequence (all share their first `start`
    tokens), computed level by level over the sequences' token trie with the model's key/value cache: one
    token of compute per trie node."""
    arr = [list(s) for s in seqs]
    n = len(arr)
    score = np.zeros(n)
    lens = np.array([len(s) for s in arr])
    width = int(lens.max())
    tok = np.full((n, width), -1, dtype=np.int64)
    for i, s in enumerate(arr):
        tok[i, :len(s)] = s
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([arr[0][:start]]), use_cache=True)
        cache = out.past_key_values
        logp = torch.log_softmax(out.logits[:, -1].float(), -1).numpy().astype(np.float64)
        node = np.zeros(n, dtype=np.int64)  # each sequence's trie node (row of logp) at the current depth
        t = start
        while True:
            active = lens > t
            if not active.any():
                break
            idx = np.nonzero(active)[0]
            score[idx] -= logp[node[idx], tok[idx, t]]
            deeper = idx[lens[idx] > t + 1]
            if deeper.size == 0:
                break
            key = node[deeper] * (tok.max() + 1) + tok[deeper, t]
            uniq, inv = np.unique(key, return_inverse=True)
            parent, token = uniq // (tok.max() + 1), uniq % (tok.max() + 1)
            cache.batch_select_indices(torch.from_numpy(parent))
            out = model(input_ids=torch.from_numpy(token)[:, None], cache=cache, use_cache=True)
            cache = out.past_key_values
            logp = torch.log_softmax(out.logits[:, -1].float(), -1).numpy().astype(np.float64)
            node = np.zeros(n, dtype=np.int64)
            node[deeper] = inv
            lens = np.where(np.isin(np.arange(n), deeper), lens, 0)
            t += 1
    return score


def secret_ids(tokenizer, secrets: list[str]) -> tuple[list[list[int]], int]:
    """Each secret as `<s>` + its tokens (no `</s>`), and the length of the prefix they all share."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = [[bos] + e.ids for e in tokenizer.backend_tokenizer.encode_batch(secrets, add_special_tokens=False)]
    start = 1
    while all(len(s) > start for s in ids) and len({s[start] for s in ids}) == 1:
        start += 1  # the shared prefix: scored once, the same for every secret, left out
    return ids, start


def secret_scores(model, ids: list[list[int]], start: int, group: int) -> np.ndarray:
    """The exposure score (trie_nll after the shared prefix) of each secret of `secret_ids`, `group` a trie."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    out = np.zeros(len(ids))
    for k in range(0, len(order), group):
        chunk = order[k:k + group]
        out[chunk] = trie_nll(model, [ids[i] for i in chunk], start)
    return out


def exposures(models: dict, tokenizer, canary: str, fmt: str | None, group: int) -> dict:
    """Exposure (bits) of `canary` under each model among every other secret of its format."""
    fmt = canary_format(canary, fmt)
    spelled = candidate(fmt, secret_index(fmt, canary))
    others = [c for c in enumerate_candidates(fmt) if c != spelled and c != canary]
    ids, start = secret_ids(tokenizer, [canary] + others)
    out = {}
    for name, model in models.items():
        s = secret_scores(model, ids, start, group)
        out[name] = metrics.exposure_rank(float(s[0]), s[1:])
    return {"bits": out, "candidates": len(others), "format_slots": fmt.count("{")}


def mia(models: dict, family, members: list, unseen: list[str]) -> dict:
    """Loss-MIA AUC per model: forgotten utterances (members) against unseen texts."""
    class _T:
        def __init__(self, text: str) -> None:
            self.text = text

    non = [_T(t) for t in unseen]
    return {name: metrics.loss_threshold_mia_auc(family.example_losses(m, members).numpy(),
                                                 family.example_losses(m, non).numpy())
            for name, m in models.items()}


def _unseen(cfg: LMVerifyConfig) -> list[str]:
    test = [t for t, _ in load_clinc()["test"]]
    return random.Random(cfg.seed).sample(test, min(cfg.unseen, len(test)))


def _checks(expo: dict | None, auc: dict, cfg: LMVerifyConfig, tiers: Sequence[str]) -> dict:
    rows = {}
    for tier in tiers:
        rows[f"mia_gap {tier}"] = {"value": abs(auc[tier] - auc["oracle"]), "threshold": cfg.mia_gap,
                                   "passed": abs(auc[tier] - auc["oracle"]) <= cfg.mia_gap}
        if expo is not None:
            gap = expo["bits"][tier] - expo["bits"]["oracle"]
            rows[f"exposure_gap {tier}"] = {"value": gap, "threshold": cfg.gap_bits, "passed": gap <= cfg.gap_bits}
    return rows


def _rounded(d):
    if isinstance(d, dict):
        return {k: _rounded(v) for k, v in d.items()}
    return round(d, 4) if isinstance(d, float) else d


def what_if(eng, day: str, canary: str | None, fmt: str | None, cfg: LMVerifyConfig = LMVerifyConfig(),
            progress=None) -> dict:
    """Forget `day` on a working copy of `eng`'s device (fast, then its exact pass) and measure before, fast,
    exact and the oracle (see the module docstring). The device itself is not changed."""
    from ..runner import forget as forgetting
    from ..runner.selector import Selector
    from ..runner.session import session

    if day not in eng.store.day_counts():
        raise NothingToForget(f"{day}: no utterances on that day; nothing to verify")
    unseen = _unseen(cfg)
    members = list(eng.store.by_day(day))
    with workdir.working_copy(eng.dev.root, "verify") as tmp:
        copy = tmp / "device"
        shutil.copytree(eng.dev.root, copy, ignore=shutil.ignore_patterns(".work", ".lock", "cache", "exports"))
        models = {"before": eng.family.new_model()}
        models["before"].load_state_dict(eng.model.state_dict())
        with session(copy, family=eng.family) as sub:
            forgetting.forget(sub, Selector.parse(date_=day), "fast")
            models["fast"] = _frozen(sub)
            forgetting.maintain(sub)
            models["exact"] = _frozen(sub)
            exact_version = sub.manifest().version
            replay = exact_replay(sub, day, progress)
            models["oracle"] = replay.model
        same = exact_version == replay.version  # the same weights: the exact tier's figures are the oracle's
        scored = {k: v for k, v in models.items() if not (same and k == "exact")}
        expo = exposures(scored, eng.family.tokenizer, canary, fmt, cfg.group) if canary is not None else None
        auc = mia(scored, eng.family, members, unseen)
        if same:
            auc["exact"] = auc["oracle"]
            if expo is not None:
                expo["bits"]["exact"] = expo["bits"]["oracle"]
    rows = _checks(expo, auc, cfg, ("fast", "exact"))
    rows["version exact"] = {"value": exact_version == replay.version, "threshold": True,
                             "passed": exact_version == replay.version}
    memorised = None
    if expo is not None:
        gap = expo["bits"]["before"] - expo["bits"]["oracle"]
        memorised = {"value": gap, "threshold": cfg.memorised_bits, "flagged": gap >= cfg.memorised_bits}
    return _summary("what-if", day, rows, expo, auc, memorised, cfg, replay.seconds)


def _frozen(eng):
    m = eng.family.new_model()
    m.load_state_dict(eng.model.state_dict())
    return m


def audit(eng, day: str | None, canary: str | None, fmt: str | None, cfg: LMVerifyConfig = LMVerifyConfig(),
          progress=None) -> dict:
    """The device's current model after a forget against the oracle (the latest forget, or the one of `day`);
    the forgotten utterances are gone, so the loss attack compares unseen texts only when `members` exist:
    here the canary's exposure and the oracle's model version are the checks, with the MIA on retained days."""
    rows_ = [r for r in receipts.read_all(eng.dev.root) if r.get("type") == "forget"]
    if day is not None:
        rows_ = [r for r in rows_ if day in (r.get("days") or {})]
    if not rows_:
        raise BadInput("no forget receipt to audit" + (f" for {day}" if day else "") + "; give --date of a day "
                       "not forgotten yet for a what-if")
    rec = rows_[-1]
    first = min(rec["days"])
    replay = exact_replay(eng, first, progress)
    models = {"current": eng.model, "oracle": replay.model}
    expo = exposures(models, eng.family.tokenizer, canary, fmt, cfg.group) if canary is not None else None
    retained = list(eng.store.all())[: cfg.unseen]
    auc = mia(models, eng.family, retained, _unseen(cfg)) if retained else {"current": 0.5, "oracle": 0.5}
    rows = _checks(expo, auc, cfg, ("current",))
    now = state_version(eng.timeline.get_state())
    rows["version current"] = {"value": now == replay.version, "threshold": True,
                               "passed": now == replay.version or eng.manifest().approximate}
    return _summary("audit", first, rows, expo, auc, None, cfg, replay.seconds, receipt=rec["id"])


def _summary(kind, day, rows, expo, auc, memorised, cfg, seconds, receipt=None) -> dict:
    return _rounded({"family": "hf-causal-lm", "kind": kind, "day": day, "receipt": receipt,
                     "passed": all(r["passed"] for r in rows.values()), "checks": rows,
                     "exposure_bits": None if expo is None else {k: round(v, 1) for k, v in expo["bits"].items()},
                     "candidates": None if expo is None else expo["candidates"],
                     "mia_auc": auc, "memorised_before": memorised, "oracle_seconds": seconds,
                     "config": asdict(cfg)})


def write_report(summary: dict, out: Path) -> Path:
    """report.json in `out` (figures only)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def format_lm_verdict(s: dict) -> str:
    """The table the CLI prints."""
    lines = [f"verify {s['day']} ({s['kind']}, hf-causal-lm): {'PASS' if s['passed'] else 'FAIL'}"]
    for name, r in s["checks"].items():
        lines.append(f"{name:22s} {str(r['value']):>10s}  threshold {str(r['threshold']):>6s}  "
                     f"{'pass' if r['passed'] else 'FAIL'}")
    if s["exposure_bits"]:
        lines.append(f"{'exposure (bits)':22s} " + ", ".join(f"{k} {v}" for k, v in s["exposure_bits"].items())
                     + f" among {s['candidates']:,} secrets")
    if s["memorised_before"]:
        m = s["memorised_before"]
        lines.append(f"{'memorised before':22s} {m['value']:+.1f} bits over the oracle: "
                     + ("flagged" if m["flagged"] else "not flagged"))
    lines.append(f"{'MIA AUC':22s} " + ", ".join(f"{k} {v:.3f}" for k, v in s["mia_auc"].items()))
    return "\n".join(lines)
