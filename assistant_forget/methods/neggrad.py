"""NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): gradient ascent on the
forgotten examples, descent on retained ones. Measured only: it needs the forgotten data in memory, and a
crash-safe forget deletes the data before the model changes (a forget rolled forward after a crash could not
run it again).

Implemented for the assistant's family: from the current model, `steps` AdamW steps on
alpha * L(retained batch) - (1 - alpha) * L(forgotten batch), personal parameters only, every random choice
from a seed derived from the device seed and the first forgotten day; torch runs on one thread.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from ..core.errors import BadInput
from ..core.fitting import AdamW, minibatches, sample
from ..core.method import Method, Plan, Request, Subject, check_count, check_positive, register
from ..core.threads import one_torch_thread
from ..core.timeline import day_seed
from ..device.store import Utterance
from ..families.assistant.personalize import joint_loss
from ._shared import assistant

Example = tuple[str, str]  # (text, intent)


@dataclass(frozen=True)
class NegGradConfig:
    steps: int | None = None  # AdamW steps; None: the family's shortest repair
    lr: float | None = None  # learning rate; None: the personalisation lr
    alpha: float = 0.5  # alpha * retained loss - (1 - alpha) * forgotten loss (tuned on another persona)

    def __post_init__(self) -> None:
        check_count("steps", self.steps, 0, optional=True)
        check_positive("lr", self.lr, optional=True)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise BadInput(f"alpha must be in [0, 1] (the weight of the retained loss), got {self.alpha!r}")


def _examples(family, rows: Sequence[Utterance], name: str) -> list[Example]:
    """(text, intent) pairs of `rows`, whose intents must be the model's labels; BadInput otherwise."""
    out = [(u.text, u.intent) for u in rows]
    bad = [i for _, i in out if i not in family.trainer.label_index]
    if bad:
        raise BadInput(f"{name}: intent {bad[0]!r} is not one of the model's labels (see clinc.intent_labels())")
    return out


def _budget(family, cfg: NegGradConfig) -> tuple[int, float]:
    """(steps, lr): the config's, else the family's shortest repair (the fast tier's fewest steps) and the
    personalisation lr."""
    return (family.min_repair_steps if cfg.steps is None else cfg.steps), (family.cfg.lr if cfg.lr is None else cfg.lr)


@one_torch_thread()
def neggrad_plus(subject: Subject, forgotten: Sequence[Utterance], cfg: NegGradConfig = NegGradConfig()) -> nn.Module:
    """NegGrad+ on `subject`'s current model, in memory (not the ledger); returns the model.

    L is the training loss (intent + next-token); retained batches draw, like the repair, from the retained
    log and public replay. `forgotten`: the forgotten utterances held in memory, already gone from the store.
    """
    family = assistant(subject, NegGradPlus.name)
    if isinstance(forgotten, (str, bytes)) or not forgotten or not all(isinstance(u, Utterance) for u in forgotten):
        raise BadInput("NegGrad+ needs the forgotten utterances (store Utterance rows read before deleting them)")
    still = family.store.existing_ids([u.id for u in forgotten])
    if still:
        raise BadInput(f"{len(still)} forgotten utterances are still in the store; delete them first (a baseline "
                       "runs on the log after the forget)")
    steps, lr = _budget(family, cfg)
    seed = day_seed(subject.seed, min(u.local_date for u in forgotten), "neggrad+")
    rng = random.Random(seed)
    forget_set = _examples(family, forgotten, "forgotten")
    retain_set = (sample(rng, _examples(family, family.store.all(), "retained"), family.cfg.repair_sample)
                  + sample(rng, family.trainer.public, family.cfg.replay_public))
    model = subject.timeline.model
    params = dict(model.named_parameters())
    opt = AdamW([params[n] for n in subject.timeline.personal], lr=lr)
    bs, labels = family.cfg.batch_size, family.trainer.label_index
    loss = lambda batch: joint_loss(model, family.base.tokenizer, [t for t, _ in batch],  # noqa: E731
                                    torch.tensor([labels[i] for _, i in batch]),
                                    family.cfg.lm_weight, family.base.config.max_len)
    torch.manual_seed(seed)  # dropout
    model.train()
    for kept, gone in zip(minibatches(rng, retain_set, bs, steps), minibatches(rng, forget_set, bs, steps)):
        opt.zero_grad()
        (cfg.alpha * loss(kept) - (1.0 - cfg.alpha) * loss(gone)).backward()
        opt.step()
    return model.eval()


@register
class NegGradPlus(Method):
    """Ascent on forgotten, descent on retained (measured only)."""

    name, exact, commits, Config = "neggrad+", False, False, NegGradConfig
    why_not = "it needs the forgotten data in memory, which a crash-safe forget deletes before the model changes"

    def apply(self, subject: Subject, request: Request, plan: Plan, progress=None,
              forgotten: Sequence[Utterance] | None = None, prepared=None) -> nn.Module:
        """The subject's model after NegGrad+ on `forgotten` (the rows, read before they were deleted)."""
        return neggrad_plus(subject, forgotten, self.config)
