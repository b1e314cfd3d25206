"""Relearning attack: fine-tune the model after a forget for a few steps on text *related* to what it forgot
(never the forgotten texts themselves), and see how much of the forgotten data comes back.

Unlearned models give data back after a little fine-tuning on related text (Hu et al. 2024, "Jogging the
memory of unlearned LLMs"; Lynch et al. 2024): an approximate forget that only pushed the forgotten data
below the surface lets a few gradient steps pull it up again, where a model that never saw it has nothing
to recall. So the attack is run the same way on the model after the forget ("current"), on the exact
oracle (never trained on the data) and on the model before the forget (it remembered), and judged
against the oracle: after the same attack, the canary may be at most `threshold_bits` more exposed on the
current model than on the oracle (metrics.Thresholds.exposure_gap_bits, 1 bit).

What the attacker fine-tunes on (`related_utterances`, `canary_related`): public CLINC150 *train*
utterances of the intents of the forgotten utterances (same intents), and for a canary other secrets of
its format (same entities: "my bank pin is 0 3 3 7 1" for the canary "my bank pin is 4 8 1 9 3"). Never a
forgotten text, never the canary; the candidates the canary is ranked among after the attack leave out the
secrets the attacker trained on (they would outrank it for having been trained on, not for anything the
model kept).

How (`relearn`): a deep copy of the PyTorch model, AdamW (core.fitting.fit) on the device's joint loss
(intent cross-entropy + lm_weight x next-token loss, personalize.joint_loss), seeded batch order, one
torch thread: the same attack on the same model gives the same weights. Which weights move: all of them
by default (`parameters="all"`): an attacker holding the app's export can change every weight, not only
the adapters the device personalises, and a full fine-tune is the stronger attack. `parameters` takes any
name of PERSONAL_SETS ("adapters": the device's own choice) to compare.

`relearn_figures` is the pure core the registry's "relearn" attack wraps (verify/attack.py): per-model
losses and canary scores before and after the attack in, the figures and the pass rule out. `relearning`
is the runner: it attacks each model and fills the core's arrays through scoring.TorchBackend.
tests/verify/test_relearn.py checks the core against a slow reference, and that a model which memorised a
canary and did not forget it is flagged while models that never saw it score like chance.
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..core.errors import BadInput
from . import metrics

Labeled = tuple[str, str]  # (text, intent name)
STEPS = 16  # the attacker's fine-tuning steps ("a few")
LR = 1e-3  # its AdamW learning rate (the device's own, PersonalizationConfig.lr)
BATCH = 16  # utterances per step
RELATED = 64  # public utterances of the forgotten intents the attacker fine-tunes on
CANARY_RELATED = 4  # other secrets of a canary's format it adds (more push a memorised canary down: docs)
LM_WEIGHT = 0.5  # weight of the next-token loss in the joint loss (PersonalizationConfig.lm_weight)
THRESHOLD_BITS = 1.0  # after the attack, exposure <= the oracle's after it + this (Thresholds.exposure_gap_bits)
REQUIRED = ("current", "oracle")  # the models `relearn_figures` compares; "before" is optional
EPS = 1e-9  # float slack of the comparison on bits


def _folded(texts: Iterable[str]) -> set[str]:
    return {t.casefold() for t in texts}


def related_utterances(forgotten: Sequence[Labeled], n: int = RELATED, seed: int = 0, *,
                       exclude: Iterable[str] = ()) -> list[Labeled]:
    """`n` public CLINC150 *train* (text, intent) utterances of the forgotten utterances' intents: what an
    attacker who knows what the user talked about (alarms, transfers) can find without the user's words.

    Intents are drawn in proportion to how often the forgotten utterances have them (a seeded shuffle of
    the forgotten intents, taken in turn), each intent's utterances in a seeded order; never a text that,
    case-folded, is a forgotten one or in `exclude` (the canary, the device's own texts). Fewer than `n`
    when the intents have fewer such utterances (CLINC150 has 100 per intent, 100 out-of-scope);
    BadInput when there are none, or for an intent that is not a CLINC150 label.
    """
    from ..device.clinc import intent_labels, load_clinc

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BadInput(f"n related utterances must be a positive integer, got {n!r}")
    if not forgotten:
        raise BadInput("related_utterances needs the forgotten utterances (their intents)")
    banned = _folded(t for t, _ in forgotten) | _folded(exclude)
    data = load_clinc()
    pools: dict[str, list[str]] = {}
    for text, intent in data["train"] + data["oos_train"]:
        if text.casefold() not in banned:
            pools.setdefault(intent, []).append(text)
    intents = [i for _, i in forgotten]
    unknown = sorted(set(intents) - set(intent_labels()))
    if unknown:
        raise BadInput(f"intent {unknown[0]!r} of a forgotten utterance is not a CLINC150 label")
    rng = random.Random(f"relearn.related:{seed}")
    rng.shuffle(intents)
    queues = {}
    for i in sorted(set(intents)):
        texts = sorted(set(pools.get(i, [])))
        rng.shuffle(texts)
        queues[i] = texts
    out: list[Labeled] = []
    seen: set[str] = set()
    while len(out) < n and any(queues[i] for i in intents):
        for i in intents:
            if len(out) == n:
                break
            while queues[i]:
                t = queues[i].pop()
                if t.casefold() not in seen:
                    seen.add(t.casefold())
                    out.append((t, i))
                    break
    if not out:
        raise BadInput("no public utterance of the forgotten intents is left once the forgotten and excluded "
                       "texts are removed")
    return out


def canary_related(canary: str, n: int = CANARY_RELATED, seed: int = 0, *, intent: str = "oos",
                   fmt: str | None = None) -> list[Labeled]:
    """`n` other secrets of the canary's format as (text, `intent`): related text with the same entities
    ("my bank pin is ...") and another secret, never the canary itself (nor its spelling in the format).
    `fmt`: the format (canary.canary_format: given, or read off the canary's slots).

    >>> r = canary_related("my bank pin is 4 8 1 9 3", 3, seed=1)
    >>> len(r), all(t.startswith("my bank pin is ") and t != "my bank pin is 4 8 1 9 3" for t, _ in r)
    (3, True)
    """
    from .canary import candidate, canary_format, sample_candidates, secret_index

    fmt = canary_format(canary, fmt)
    spelled = candidate(fmt, secret_index(fmt, canary))
    texts = sample_candidates(fmt, n, seed, exclude=sorted({canary, spelled}))
    return [(t, intent) for t in texts]


def relearn(model, tok, labels: Sequence[str], related: Sequence[Labeled], *, steps: int = STEPS, lr: float = LR,
            seed: int = 0, batch_size: int = BATCH, lm_weight: float = LM_WEIGHT, parameters: str = "all"):
    """The attacker's fine-tune: a deep copy of the PyTorch `model` (an AssistantModel; `model` itself is
    not changed) after `steps` AdamW steps of the joint loss on `related` (text, intent) utterances, in
    batches of `batch_size` drawn in a seeded order, on one torch thread. `parameters`: which weights
    move, a PERSONAL_SETS name ("all" by default, module docstring). Returns the copy, in eval mode.
    """
    import torch

    from ..core.fitting import fit, minibatches
    from ..core.threads import one_torch_thread
    from ..families.assistant.config import PERSONAL_SETS
    from ..families.assistant.personalize import joint_loss

    if parameters not in PERSONAL_SETS:
        raise BadInput(f"parameters must be one of {', '.join(sorted(PERSONAL_SETS))}, got {parameters!r}")
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "steps" else 1):
            raise BadInput(f"{name} must be an integer >= {0 if name == 'steps' else 1}, got {v!r}")
    if not (isinstance(lr, (int, float)) and 0 < lr < math.inf):
        raise BadInput(f"lr must be a positive number, got {lr!r}")
    index = {name: i for i, name in enumerate(labels)}
    bad = [i for _, i in related if i not in index]
    if bad:
        raise BadInput(f"related utterance intent {bad[0]!r} is not one of the model's labels")
    if not related and steps:
        raise BadInput("nothing to relearn on: no related utterances")
    attacked = copy.deepcopy(model)
    pick = PERSONAL_SETS[parameters]
    for name, p in attacked.named_parameters():
        p.requires_grad_(pick(name))
    max_len = attacked.cfg.max_len

    def loss(batch: list[Labeled]):
        y = torch.tensor([index[i] for _, i in batch])
        return joint_loss(attacked, tok, [t for t, _ in batch], y, lm_weight, max_len)

    with one_torch_thread():
        torch.manual_seed(seed)  # dropout, if the model has any
        batches = minibatches(random.Random(f"relearn.order:{seed}"), list(related), batch_size, steps)
        fit(attacked, batches, loss, lr, check_every=0)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, p in attacked.named_parameters():
        p.requires_grad_(flags[name])  # the copy trains like the original if anyone trains it further
    return attacked.eval()


def _pairs(arrays: Mapping[str, Any], name: str, min_cols: int) -> dict[str, np.ndarray]:
    """{model: (2, N) finite float array}, rows = before / after the attack, one N for every model."""
    if not isinstance(arrays, Mapping):
        raise BadInput(f"{name} must map a model name to its (2, N) array, got {type(arrays).__name__}")
    missing = [m for m in REQUIRED if m not in arrays]
    if missing:
        raise BadInput(f"{name} needs the models {', '.join(REQUIRED)}; missing {', '.join(missing)}")
    out = {}
    for model, a in arrays.items():
        x = metrics._array(a, f"{name}[{model!r}]", 2, 2, min_cols)  # (2, N)
        if out and x.shape != next(iter(out.values())).shape:
            raise BadInput(f"{name}: every model must score the same utterances, got shapes "
                           f"{next(iter(out.values())).shape} and {x.shape}")
        out[model] = x
    return out


def relearn_figures(losses: Mapping[str, Any], canary_scores: Mapping[str, Any] | None = None,
                    threshold_bits: float = THRESHOLD_BITS) -> dict:
    """The relearning attack's figures from per-model scores before and after the same attack (pure).

    losses: {model: (2, N)} LM loss of each forgotten utterance, row 0 before the attack, row 1 after;
    models "current" and "oracle", optionally "before" (the model before the forget). canary_scores:
    {model: (2, 1 + C)} the canary's NLL (column 0) then its C candidates', rows likewise; optional.

    Per model: loss_before / loss_after (means) and loss_drop (before - after); then
      loss_gap_after       oracle's mean loss after the attack - current's (nats; > 0: the attack gives
                           back more of the forgotten set on the current model than on a never-saw one)
      loss_recovered       current's drop - oracle's drop (what the attack brought back beyond what the
                           related text teaches any model) = loss_gap_after - the gap before the attack
      recovered_fraction   loss_gap_after / (oracle - before, before the attack): the share of what the
                           forget took away that is back (0: like the oracle, 1: as before); with "before"
    and with canary scores, per model exposure_before / exposure_after (metrics.exposure_rank, bits), and
      exposure_after_gap_bits   current's exposure after the attack - oracle's after it
      exposure_recovered_bits   current's rise in exposure under the attack - oracle's rise
      passed                    exposure_after_gap_bits <= threshold_bits (None without a canary)

    >>> f = relearn_figures({"current": [[2.0, 2.0], [1.0, 1.0]], "oracle": [[2.0, 2.0], [1.5, 1.5]]})
    >>> f["loss_gap_after"], f["loss_recovered"], f["passed"]
    (0.5, 0.5, None)
    """
    if not (isinstance(threshold_bits, (int, float)) and math.isfinite(threshold_bits)):
        raise BadInput(f"threshold_bits must be a finite number, got {threshold_bits!r}")
    ls = _pairs(losses, "relearn_losses", 1)
    per = {m: {"loss_before": float(x[0].mean()), "loss_after": float(x[1].mean())} for m, x in ls.items()}
    for p in per.values():
        p["loss_drop"] = p["loss_before"] - p["loss_after"]
    cur, orc = per["current"], per["oracle"]
    out: dict = {"models": per, "forgotten": int(ls["current"].shape[1]),
                 "loss_gap_after": orc["loss_after"] - cur["loss_after"],
                 "loss_recovered": cur["loss_drop"] - orc["loss_drop"], "recovered_fraction": None,
                 "exposure_after_gap_bits": None, "exposure_recovered_bits": None, "candidates": None,
                 "threshold_bits": float(threshold_bits), "passed": None}
    if "before" in per:
        removed = orc["loss_before"] - per["before"]["loss_before"]
        out["recovered_fraction"] = out["loss_gap_after"] / removed if removed > EPS else None
    if canary_scores is not None:
        cs = _pairs(canary_scores, "relearn_canary", 2)
        if set(cs) != set(ls):
            raise BadInput(f"relearn_canary must score the models relearn_losses does ({', '.join(sorted(ls))}), "
                           f"got {', '.join(sorted(cs))}")
        for m, x in cs.items():
            per[m]["exposure_before"] = metrics.exposure_rank(x[0, 0], x[0, 1:])
            per[m]["exposure_after"] = metrics.exposure_rank(x[1, 0], x[1, 1:])
        gap = cur["exposure_after"] - orc["exposure_after"]
        out.update({"exposure_after_gap_bits": gap, "candidates": int(cs["current"].shape[1] - 1),
                    "exposure_recovered_bits": (cur["exposure_after"] - cur["exposure_before"])
                    - (orc["exposure_after"] - orc["exposure_before"]),
                    "passed": bool(gap <= threshold_bits + EPS)})
    return out


def relearning(models: Mapping[str, Any], tok, labels: Sequence[str], forgotten: Sequence[Labeled],
               related: Sequence[Labeled], *, canary: str | None = None, candidates: Sequence[str] | None = None,
               steps: int = STEPS, lr: float = LR, seed: int = 0, batch_size: int = BATCH,
               threshold_bits: float = THRESHOLD_BITS, parameters: str = "all", lm_weight: float = LM_WEIGHT,
               score_batch: int = 128) -> dict:
    """Run the relearning attack on each named PyTorch model ("current" and "oracle", optionally "before"):
    the same `relearn` (steps, lr, seed, batch_size, parameters) on `related`, then `relearn_figures` over
    the forgotten set's LM loss and, with a `canary`, its exposure among `candidates` (other secrets of its
    format, e.g. canary.sample_candidates), before and after.

    `related` must not hold a forgotten text or the canary (BadInput); candidates the attacker trained on
    are dropped (counted in "candidates_dropped"). Scores go through scoring.TorchBackend, so the figures
    are those of any model it runs. The result holds figures only (no text): the core's, plus "steps",
    "lr", "related" (how many), "parameters".
    """
    from .scoring import TorchBackend, score, sequence_nll

    if not forgotten:
        raise BadInput("relearning needs the forgotten utterances")
    leaked = _folded(t for t, _ in related) & (_folded(t for t, _ in forgotten) | _folded([canary] if canary else []))
    if leaked:
        raise BadInput(f"{len(leaked)} related utterance(s) are forgotten texts or the canary; the attacker "
                       "fine-tunes on related text only (related_utterances, canary_related)")
    ranked: list[str] = []
    dropped = 0
    if canary is not None:
        if not candidates:
            raise BadInput("a canary needs candidates to be ranked among (canary.sample_candidates)")
        trained_on = _folded(t for t, _ in related) | {canary.casefold()}
        ranked = [c for c in dict.fromkeys(candidates) if c.casefold() not in trained_on]
        dropped = len(candidates) - len(ranked)
        if not ranked:
            raise BadInput("every candidate is a text the attacker trained on; sample others")
    data = list(dict.fromkeys(forgotten))
    losses: dict[str, np.ndarray] = {}
    canary_scores: dict[str, np.ndarray] = {}
    for name, model in models.items():
        attacked = relearn(model, tok, labels, related, steps=steps, lr=lr, seed=seed, batch_size=batch_size,
                           lm_weight=lm_weight, parameters=parameters)
        pair = (TorchBackend(model, tok, labels), TorchBackend(attacked, tok, labels))
        losses[name] = np.stack([score(b, data, score_batch).lm_loss for b in pair])  # (2, N)
        if canary is not None:
            enc = pair[0].encode([canary] + ranked)
            canary_scores[name] = np.stack([sequence_nll(b, [canary] + ranked, score_batch, enc) for b in pair])
    out = relearn_figures(losses, canary_scores if canary is not None else None, threshold_bits)
    out.update({"steps": steps, "lr": lr, "related": len(related), "parameters": parameters,
                "candidates_dropped": dropped})
    return out
