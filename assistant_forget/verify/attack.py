"""Attacks on a forget: the protocol each follows, and the registry that names them (like core/method.py's).

An attack is split in two. Its *core* (`run`) is a pure function of arrays: the statistics of some
examples under some models, in a context dict whose keys are named in CONTEXT. A *runner* trains or loads
the models those statistics come from (the oracles, the method's models, shadow models, the exported
files) and fills the context; the heavy training goes through core/executor.py, so the same runner runs on
a local process pool or a distributed engine. `needs` says which context keys an attack reads, so a runner
builds only what the attacks asked for need.

Registered here are the cores that run on arrays alone, each with a test against a slow reference
(tests/verify/test_metrics.py, tests/verify/test_privacy.py):

  loss-mia      loss-threshold membership attack, forgotten vs unseen (metrics.loss_threshold_mia_auc)
  lira          online LiRA with shadow models (metrics.lira_scores, metrics.lira_auc)
  exposure      canary exposure among the secrets of its format (metrics.exposure_rank, exposure_skew_normal)
  u-lira        per-example U-LiRA, method models vs exact oracles (privacy.u_lira)
  challenge-eps the NeurIPS 2023 challenge's per-example epsilon and score (privacy.challenge_score)
  relearn       forgotten-set loss and canary exposure after a relearning fine-tune, vs the oracle under the
                same attack (relearn.relearn_figures; runner relearn.relearning)
  model-diff    an attacker with the models before and after the forget ranks utterances by how much the
                diff raised their loss (modeldiff.diff_attack; runner modeldiff.model_diff)

The first three are what `verify` runs today: verify/verification.py (`evaluate`, `lira`, `exposure`)
scores the live export, the oracle and the model before the forget and calls the same metrics functions
directly, so its output is unchanged. The last two have no runner in `verify` yet (they need K models
that forgot each example with the method and K oracles); `get(name).run(context)` is how a runner calls them.

    figures = get("u-lira", fpr=0.01).run({"method_stats": m, "oracle_stats": o})
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol

import numpy as np

from ..core.errors import BadInput
from ..core.method import NAME_RE
from . import metrics, modeldiff, privacy, relearn

CONTEXT = {  # what an attack's core may read, and what a runner computes it from
    "member_losses": "(N,) LM loss of each forgotten utterance under the model attacked",
    "nonmember_losses": "(M,) LM loss of each unseen utterance (never trained on) under the same model",
    "target_stats": "(N,) the attacked model's statistic of each pooled utterance (LiRA)",
    "in_stats": "(N, K) the statistic under K shadow models trained with each utterance",
    "out_stats": "(N, K) the statistic under K shadow models trained without it",
    "is_member": "(N,) booleans: which pooled utterances are forgotten (the rest are unseen)",
    "canary_score": "the canary's NLL under the model attacked",
    "candidate_scores": "(C,) NLL of every other secret of the canary's format under the same model",
    "method_stats": "(N, K) statistic of each forgotten utterance under K models that forgot it with the method",
    "oracle_stats": "(N, K) the same under K exact oracles (never trained on it)",
    "relearn_losses": "{model: (2, N)} LM loss of each forgotten utterance before (row 0) and after (row 1) the "
                      "relearning attack, for models 'current' and 'oracle' (optionally 'before')",
    "relearn_canary": "{model: (2, 1 + C)} (optional) NLL of the canary (column 0) and of C candidates under the "
                      "same models, before / after the attack",
    "before_losses": "(N,) loss of each pooled utterance under the model before the forget (model-diff)",
    "after_losses": "(N,) the same under the model after the forget",
}


class Attack(Protocol):
    """An attack's core: `run(context)` reads the context keys in `needs` and returns its figures (floats,
    and per-example arrays under names ending in `_per_example`: memory only, never stored)."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]]
    Config: ClassVar[type]
    config: Any

    def run(self, context: Mapping[str, Any]) -> dict: ...


@dataclass(frozen=True)
class NoConfig:
    """An attack without settings."""


class AttackBase:
    """Base class of the registered attacks: a validated config and the check that the context has `needs`."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type] = NoConfig

    def __init__(self, **settings: Any) -> None:
        known = {f.name for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise BadInput(f"attack {self.name}: unknown setting(s) {', '.join(unknown)}; it takes "
                           f"{', '.join(sorted(known)) or 'none'}")
        self.config = self.Config(**settings)

    def _context(self, context: Mapping[str, Any]) -> Mapping[str, Any]:
        missing = [k for k in self.needs if k not in context]
        if missing:
            raise BadInput(f"attack {self.name} needs {', '.join(missing)} in its context: "
                           + "; ".join(f"{k}: {CONTEXT[k]}" for k in missing))
        return context

    def run(self, context: Mapping[str, Any]) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


_REGISTRY: dict[str, type[AttackBase]] = {}


def register(cls: type[AttackBase]) -> type[AttackBase]:
    """Class decorator: make `cls` available as `get(cls.name)`. Names are unique and lower-case; every
    context key it needs is one CONTEXT names; Config is a frozen dataclass."""
    if not isinstance(cls.name, str) or not NAME_RE.match(cls.name):
        raise ValueError(f"attack name {cls.name!r}: lower-case letters, digits, _ + -, at most 32")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"an attack named {cls.name!r} is registered already ({_REGISTRY[cls.name].__module__})")
    if not cls.needs or any(k not in CONTEXT for k in cls.needs):
        raise ValueError(f"{cls.name}: needs must name context keys of CONTEXT, got {cls.needs!r}")
    if not (dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen):
        raise ValueError(f"{cls.name}: Config must be a frozen dataclass")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """Registered attack names, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **settings: Any) -> AttackBase:
    """The registered attack `name` with `settings` (its Config's fields)."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise BadInput(f"no attack {name!r}; registered: {', '.join(names())}")
    return cls(**settings)


@register
class LossMia(AttackBase):
    """Loss-threshold membership attack (Yeom et al. 2018): AUC of "lower loss => member"."""

    name, needs = "loss-mia", ("member_losses", "nonmember_losses")

    def run(self, context: Mapping[str, Any]) -> dict:
        c = self._context(context)
        return {"auc": metrics.loss_threshold_mia_auc(c["member_losses"], c["nonmember_losses"])}


@register
class Lira(AttackBase):
    """Online LiRA (Carlini et al. 2022) over a pool of forgotten and unseen utterances: AUC and TPR at FPR."""

    @dataclass(frozen=True)
    class Config:
        fixed_variance: bool = True  # pool the shadows' variance over utterances (advised for small K)
        fpr: float = 0.01  # the false-positive rate the TPR is read at

    name, needs = "lira", ("target_stats", "in_stats", "out_stats", "is_member")

    def run(self, context: Mapping[str, Any]) -> dict:
        c = self._context(context)
        s = metrics.lira_scores(c["target_stats"], c["in_stats"], c["out_stats"], self.config.fixed_variance)
        member = np.asarray(c["is_member"], dtype=bool)
        if member.shape != s.shape or member.all() or not member.any():
            raise BadInput(f"is_member must be {s.shape} booleans with both members and non-members")
        return {"auc": metrics.lira_auc(s[member], s[~member]),
                "tpr": privacy.tpr_at_fpr(s[member], s[~member], self.config.fpr), "fpr": self.config.fpr}


@register
class Exposure(AttackBase):
    """Canary exposure (Carlini et al. 2019): rank among the other secrets, and the skew-normal estimate."""

    name, needs = "exposure", ("canary_score", "candidate_scores")

    def run(self, context: Mapping[str, Any]) -> dict:
        c = self._context(context)
        return {"rank_bits": metrics.exposure_rank(c["canary_score"], c["candidate_scores"]),
                "skew_normal_bits": metrics.exposure_skew_normal(c["canary_score"], c["candidate_scores"])}


@register
class ULiraAttack(AttackBase):
    """Per-example U-LiRA (Hayes et al. 2024), method models vs exact oracles: see privacy.u_lira."""

    @dataclass(frozen=True)
    class Config:
        fpr: float = 0.01  # the false-positive rate the attacker is held to
        fixed_variance: bool = True  # one variance per side pooled over examples: per-example variances
        # from a few models have heavy tails (at K = 6 they hide a 3-sigma shift at 1 % FPR; pooled, half show)

    name, needs = "u-lira", ("method_stats", "oracle_stats")

    def run(self, context: Mapping[str, Any]) -> dict:
        c = self._context(context)
        r = privacy.u_lira(c["method_stats"], c["oracle_stats"], self.config.fpr, self.config.fixed_variance)
        return {**r.figures(), "tpr_per_example": r.per_example}


@register
class ChallengeEpsilon(AttackBase):
    """The NeurIPS 2023 unlearning challenge's per-example epsilon and forgetting quality: privacy.challenge_score."""

    @dataclass(frozen=True)
    class Config:
        delta: float = privacy.DELTA

    name, needs = "challenge-eps", ("method_stats", "oracle_stats")

    def run(self, context: Mapping[str, Any]) -> dict:
        c = self._context(context)
        s = privacy.challenge_score(c["method_stats"], c["oracle_stats"], self.config.delta)
        return {**s.figures(), "epsilon_per_example": s.epsilons, "points_per_example": s.points}


@register
class Relearn(AttackBase):
    """Relearning attack (relearn.py): how much forgotten-set loss and canary exposure a few fine-tuning steps on
    related text bring back, against the oracle under the same attack; passes when the canary is at most
    `threshold_bits` more exposed than on the oracle after it. Reads "relearn_canary" when present. Per-model
    figures come flattened as "<model>_<figure>" (e.g. current_exposure_after); figures not defined are left out."""

    @dataclass(frozen=True)
    class Config:
        threshold_bits: float = relearn.THRESHOLD_BITS

    name, needs = "relearn", ("relearn_losses",)

    def run(self, context: Mapping[str, Any]) -> dict:
        c = self._context(context)
        f = relearn.relearn_figures(c["relearn_losses"], c.get("relearn_canary"), self.config.threshold_bits)
        out = {k: v for k, v in f.items() if k != "models" and v is not None}
        out.update({f"{m}_{k}": v for m, by in f["models"].items() for k, v in by.items()})
        return out


@register
class ModelDiff(AttackBase):
    """Model-diff attack (Chen et al. 2021, modeldiff.py): AUC and TPR at `fpr` of "the forget raised its loss"
    (after - before), forgotten vs unseen."""

    @dataclass(frozen=True)
    class Config:
        fpr: float = modeldiff.FPR

    name, needs = "model-diff", ("before_losses", "after_losses", "is_member")

    def run(self, context: Mapping[str, Any]) -> dict:
        c = self._context(context)
        return modeldiff.diff_attack(c["before_losses"], c["after_losses"], c["is_member"], self.config.fpr)
