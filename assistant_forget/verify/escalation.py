"""Escalation: a forget verified at once, and the exact pass run at once when the fast tier failed a check.

`auto` forgets with the fast tier when the exact replay would be long, and leaves the exact pass for the
charging window. With `forget --verify` the forget is measured against the oracle while its utterances are
still in memory (verification.verify_forget); a check failed beyond its noise (`failed_checks`) means the
device should not keep that model until the charger, so the exact pass runs at once.
"""

from __future__ import annotations

from typing import Sequence

from ..device import receipts
from ..runner.engine import Engine
from ..runner.selector import Selector
from .scoring import Labeled
from .verification import Verification, VerifyConfig, verify_forget


NOISY = ("accuracy_gap_points", "mia_auc_gap")  # rows that carry "significant": their gap against its noise


def failed_checks(summary: dict) -> list[str]:
    """The verdict rows a forget failed beyond their noise: the accuracy and MIA rows only when their gap to
    the oracle is significant (verification.accuracy_noise, stats.auc_gap_interval), every other failed row as
    it is, and an exact state that is not the oracle's. What an escalation acts on."""
    out = []
    for name, row in (summary.get("verdict") or {}).items():
        if row.get("passed") is False and (name not in NOISY or row.get("significant", True)):
            out.append(name)
    if summary.get("state") == "exact" and not (summary.get("version") or {}).get("equal", True):
        out.append("version")
    return out


def forget_verified(eng: Engine, sel: Selector, mode: str = "auto", cfg: VerifyConfig = VerifyConfig(), *,
                    unseen: Sequence[Labeled] | None = None, canary: str | None = None, executor=None,
                    progress=None) -> tuple[dict, Verification]:
    """Forget, verify at once (verify_forget), and escalate: when `auto` chose the fast tier and a check
    failed beyond its noise (failed_checks), the exact pass runs at once, so the device does not keep a model
    that failed. The receipt records the failed checks and what was done about them (names and ids, no text):

        "escalation": {"failed": [...], "action": "exact pass run" | "none: ...", "receipt": id or null}
    """
    from ..runner.forget import maintain

    receipt, ver = verify_forget(eng, sel, mode, cfg, unseen=unseen, canary=canary, executor=executor,
                                 progress=progress)
    failed = failed_checks(ver.summary)
    if not failed or receipt["state"] == "exact":
        return receipt, ver
    if receipt.get("requested_mode") == "auto":  # recorded before it runs: a crash mid-pass leaves the reason
        receipts.append(eng.dev.root, {"id": receipt["id"], "escalation": {
            "failed": failed, "action": "exact pass started", "receipt": None, "state": "approximate"}})
        done = maintain(eng, progress)
        esc = {"failed": failed, "action": "exact pass run", "receipt": done and done["id"],
               "state": "approximate" if eng.manifest().approximate else "exact"}
    else:
        esc = {"failed": failed, "action": f"none: --mode {receipt.get('requested_mode')} was asked; "
                                          "`assistant-forget maintain` runs the exact pass", "receipt": None,
               "state": "approximate"}
    receipts.append(eng.dev.root, {"id": receipt["id"], "escalation": esc})
    return {**receipt, "escalation": esc}, ver
