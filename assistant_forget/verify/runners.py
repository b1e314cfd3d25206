"""Runners of the attacks that need models besides the device's: they train, copy or fine-tune them and fill
the arrays the attack cores read (attack.py's registry, privacy.py, modeldiff.py, relearn.py).

  per_example_attacks   U-LiRA and the challenge's epsilon over a population of the forget (population.py):
                        K models that forgot the day with the method, K exact oracles, through an executor
  model_diff_attack     the model-diff attack of someone who kept the export before the forget, on the current
                        model and on the oracle (what an exact forget leaks to the same attacker)
  relearn_attack        a few fine-tuning steps on related public text, on the current model, the oracle and
                        the model before, then the forgotten set's loss and the canary's exposure

verification.evaluate calls them for the attacks `VerifyConfig.attacks` names; each returns figures (the
exact, memory-only layout: verification.public_summary coarsens them for storage).
"""

from __future__ import annotations

from typing import Sequence

from ..runner.engine import Engine
from .metrics import rounded as _r
from .oracle import Replay
from .scoring import Backend, Labeled


def model_diff_attack(backends: dict[str, Backend], forgotten: Sequence[Labeled], unseen: Sequence[Labeled],
                cfg) -> dict:
    """The model-diff attack (modeldiff.py) of an attacker who kept the model before the forget: on the
    current model, and on the oracle (what an exact forget leaks to the same attacker)."""
    from .modeldiff import model_diff

    keep = ("auc", "tpr", "fpr", "feature")
    out = {}
    for name in ("current", "oracle"):
        r = model_diff(backends["before"], backends[name], forgotten, unseen, cfg.batch_size)
        out[name] = {k: _r(r[k]) if isinstance(r[k], float) else r[k] for k in keep}
    return out


RELEARN_CANDIDATES = 10_000  # secrets the canary is ranked among after the relearning attack (a sample)


def relearn_attack(eng: Engine, replay: Replay, before, forgotten: Sequence[Labeled], canary: str | None,
                   cfg) -> dict:
    """The relearning attack (relearn.py) on the PyTorch weights of the current model, the oracle and the
    model before the forget: a few fine-tuning steps on public text of the forgotten intents (and, with a
    canary, on other secrets of its format), then the forgotten set's loss and the canary's exposure."""
    from . import relearn
    from .canary import canary_format, sample_candidates

    models = {"current": eng.model, "oracle": replay.model, **({"before": before} if before is not None else {})}
    related = relearn.related_utterances(forgotten, seed=cfg.seed, exclude=[canary] if canary else ())
    candidates = None
    if canary is not None:
        fmt = canary_format(canary, cfg.canary_format)
        related += relearn.canary_related(canary, seed=cfg.seed, fmt=fmt)
        candidates = sample_candidates(fmt, cfg.canary_candidates or RELEARN_CANDIDATES, cfg.seed + 1,
                                       exclude=[canary])
    r = relearn.relearning(models, eng.base.tokenizer, eng.base.labels, forgotten, related, canary=canary,
                           candidates=candidates, seed=cfg.seed, threshold_bits=cfg.thresholds.relearn_exposure_gap_bits)
    return {**{k: _r(v) if isinstance(v, float) else v for k, v in r.items() if k != "models"},
            "models": {m: {k: _r(v) for k, v in f.items()} for m, f in r["models"].items()}}


def per_example_attacks(eng: Engine, replay: Replay, day: str, rows: Sequence, attacked: Sequence[Labeled], plan,
                        cfg, executor=None) -> tuple[dict, dict]:
    """U-LiRA and the challenge's epsilon on a population of the forget (population.py); (figures, arrays).

    Arrays (per example, memory only) are for the report's plots."""
    from ..core.executor import local
    from . import attack
    from .population import population

    texts = [t for t, _ in attacked]
    pop = population(eng, replay.before, day, rows, texts, plan, models=cfg.models, horizon=cfg.horizon,
                     seed=cfg.seed, executor=executor or local(cfg.workers))
    ctx = {"method_stats": pop.method_stats, "oracle_stats": pop.oracle_stats}
    u = attack.get("u-lira").run(ctx)
    c = attack.get("challenge-eps").run(ctx)
    figures = {"models": pop.models, "horizon": pop.horizon, "method": pop.method, "executor": pop.executor,
               "seconds": _r(pop.seconds),
               "u_lira": {k: _r(v) if isinstance(v, float) else v for k, v in u.items() if not k.endswith("_per_example")},
               "challenge": {k: _r(v) if isinstance(v, float) else v for k, v in c.items()
                             if not k.endswith("_per_example")}}
    return figures, {"epsilon": c["epsilon_per_example"], "u_lira_tpr": u["tpr_per_example"]}
