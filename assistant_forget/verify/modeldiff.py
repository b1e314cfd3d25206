"""Model-diff attack (Chen et al., CCS 2021, "When machine unlearning jeopardizes privacy"): an attacker who
kept the exported model from before a forget, and has the one after, ranks candidate utterances by how much
the difference between the two changes their loss.

A forget raises the loss of what it removed and leaves unrelated text about where it was, so
`loss_after - loss_before` is a membership score for "was forgotten" that needs no shadow models and no
calibration: the model before the forget is the attacker's reference. It is measured over a pool of the
forgotten utterances and as many unseen ones (never trained on, same distribution), and reported as the
attacker's ROC AUC and true-positive rate at a low false-positive rate (privacy.tpr_at_fpr).

This attack does not ask whether the model after the forget is the oracle: the diff of two *exact* models
leaks too (the model before trained on the forgotten day, the exact one did not; that is what forgetting
is). It asks how much a forgetting method leaks to such an attacker beyond what exact forgetting must; the
verdict compares a method's AUC with the exact tier's (docs/THREAT_MODEL.md, "Model-diff attack").

Three features of each utterance are scored, each its own attack:

  lm      mean next-token NLL (where memorisation of a text shows)
  intent  cross-entropy of the gold intent
  joint   intent + lm_weight * lm, the loss the device trains with (personalize.joint_loss)

`auc` / `tpr` of the result are the best feature's: an auditor assumes the attacker picked well.

`diff_scores` and `diff_attack` are pure functions of arrays (the core the registry's "model-diff" attack
wraps, verify/attack.py); `model_diff` is the runner: it scores both models through any scoring.Backend.
tests/verify/test_modeldiff.py checks the core against a slow reference and the runner on tiny models.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.errors import BadInput
from . import metrics, privacy

FEATURES = ("lm", "intent", "joint")  # the per-utterance losses the attack is run on (module docstring)
LM_WEIGHT = 0.5  # weight of the next-token loss in the joint loss (PersonalizationConfig.lm_weight)
FPR = 0.01  # the false-positive rate the attacker's TPR is read at


def diff_scores(before_losses: Any, after_losses: Any) -> np.ndarray:
    """The attacker's score of each utterance (N,): `after - before`, how much the forget raised its loss;
    higher = more likely forgotten. BadInput unless both are finite 1-D arrays of the same length.

    >>> diff_scores([1.0, 2.0, 0.5], [1.5, 2.0, 0.25]).tolist()
    [0.5, 0.0, -0.25]
    """
    b = metrics._array(before_losses, "before_losses")  # (N,)
    a = metrics._array(after_losses, "after_losses")  # (N,)
    if a.shape != b.shape:
        raise BadInput(f"before_losses and after_losses must score the same utterances, got {b.shape} and {a.shape}")
    return a - b


def diff_attack(before_losses: Any, after_losses: Any, is_member: Any, fpr: float = FPR) -> dict:
    """The model-diff attack on one pool: ROC AUC of `diff_scores` (forgotten vs unseen, 0.5 = chance) and
    the TPR at `fpr`, with the pool's counts.

    >>> r = diff_attack([1, 1, 1, 1], [2, 1.5, 1, 0.9], [True, True, False, False], fpr=0.0)
    >>> r["auc"], r["tpr"], r["forgotten"], r["unseen"]
    (1.0, 1.0, 2, 2)
    """
    s = diff_scores(before_losses, after_losses)  # (N,)
    member = np.asarray(is_member)
    if member.dtype != bool or member.shape != s.shape or member.all() or not member.any():
        raise BadInput(f"is_member must be {s.shape} booleans with both forgotten and unseen utterances")
    return {"auc": metrics.roc_auc(s[member], s[~member]), "tpr": privacy.tpr_at_fpr(s[member], s[~member], fpr),
            "fpr": fpr, "forgotten": int(member.sum()), "unseen": int((~member).sum())}


def feature_losses(lm_loss: Any, intent_loss: Any, lm_weight: float = LM_WEIGHT) -> dict[str, np.ndarray]:
    """The per-utterance losses of each FEATURES entry, from the two heads' losses (N,) each.

    >>> {k: v.tolist() for k, v in feature_losses([2.0], [1.0]).items()}
    {'lm': [2.0], 'intent': [1.0], 'joint': [2.0]}
    """
    lm, intent = metrics._array(lm_loss, "lm_loss"), metrics._array(intent_loss, "intent_loss")
    if lm.shape != intent.shape:
        raise BadInput(f"lm_loss and intent_loss must score the same utterances, got {lm.shape} and {intent.shape}")
    return {"lm": lm, "intent": intent, "joint": intent + lm_weight * lm}


def model_diff(before, after, forgotten: Sequence[tuple[str, str]], unseen: Sequence[tuple[str, str]],
               batch_size: int = 128, *, fpr: float = FPR, lm_weight: float = LM_WEIGHT) -> dict:
    """Run the model-diff attack: score the forgotten and unseen (text, intent) utterances under the model
    `before` the forget and the one `after` (scoring.Backend each: the exported ONNX files an attacker
    kept, or PyTorch weights), and attack each feature.

    `forgotten` should hold only utterances not also said on a retained day (verification.only_forgotten):
    the exact model still knows those, and no attack should call them forgotten. Duplicates are dropped; a
    text (case-folded) in both sets is BadInput. Returns {feature: diff_attack's figures} for FEATURES, and
    "auc", "tpr", "fpr" and "feature" of the best feature (by AUC); "forgotten" and "unseen" counts.
    """
    from .scoring import score

    members, others = list(dict.fromkeys(forgotten)), list(dict.fromkeys(unseen))
    if not members or not others:
        raise BadInput(f"model-diff needs forgotten and unseen utterances, got {len(members)} and {len(others)}")
    both = {t.casefold() for t, _ in members} & {t.casefold() for t, _ in others}
    if both:
        raise BadInput(f"{len(both)} unseen utterance(s) are also among the forgotten ones; an unseen utterance "
                       "must never have been trained on")
    pool = members + others
    member = np.arange(len(pool)) < len(members)  # (N,)
    sb, sa = score(before, pool, batch_size), score(after, pool, batch_size)
    fb = feature_losses(sb.lm_loss, sb.intent_loss, lm_weight)
    fa = feature_losses(sa.lm_loss, sa.intent_loss, lm_weight)
    out: dict = {f: diff_attack(fb[f], fa[f], member, fpr) for f in FEATURES}
    best = max(FEATURES, key=lambda f: out[f]["auc"])
    out.update({"auc": out[best]["auc"], "tpr": out[best]["tpr"], "fpr": fpr, "feature": best,
                "forgotten": len(members), "unseen": len(others)})
    return out
