"""`python -m device_sim run --family hf-causal-lm`: a synthetic user's days on a device whose model is a causal LM.

The assistant's simulation (simulate.py) measures intent accuracy, which an LM does not have. This one lives
the same kind of days on an `hf-causal-lm` device (families/hf_lm, docs/lm.md) through the library API: the
persona's log is generated (with a secret said on one day), the device is created with the family and the log
imported, each night trains that day (timed), and the LM's loss on the next day's utterances, before it
trains on them, is compared with the base's: what personalisation buys. At the end the user asks to forget the
day of the secret: a fast forget (timed), the exact pass (`maintain`), then a byte scan of the device directory
for that day's texts and the secret's loss before and after. The report is printed and written as report.json.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

from assistant_forget.core.errors import BadInput

SECRET = "remember my locker code is 4 1 9 7 3"


@dataclass(frozen=True)
class LMRunConfig:
    device: Path
    days: int = 10
    seed: int = 0
    start: date = date(2026, 1, 1)
    mean: float = 20.0
    report: Path | None = None
    fresh: bool = False
    base_model: Path | None = None  # default: models/lm-tiny

    def __post_init__(self) -> None:
        if not isinstance(self.days, int) or self.days < 2:
            raise BadInput(f"--days must be an integer >= 2 for the LM run (one day is forgotten), got {self.days!r}")
        if not self.mean > 0:
            raise BadInput(f"--mean must be > 0, got {self.mean!r}")


def _scan(root: Path, texts: list[str]) -> list[str]:
    """The files under `root` whose raw bytes hold any of `texts` (UTF-8): what an attacker reading them finds."""
    needles = [t.encode() for t in texts if t]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and any(n in p.read_bytes() for n in needles))


def run_lm(cfg: LMRunConfig, on_day: Callable[[str], None] | None = None) -> dict:
    """Live `cfg.days` days on a new hf-causal-lm device, then forget the secret's day; the report (a dict)."""
    from assistant_forget import api
    from assistant_forget.device.importer import import_jsonl
    from assistant_forget.runner import forget as forgetting
    from assistant_forget.runner.selector import Selector

    from .canary import Canary
    from .generator import generate_log

    root = Path(cfg.device)
    if root.exists():
        if not cfg.fresh:
            raise BadInput(f"{root} exists; give --fresh to delete it and start over, or another --device")
        shutil.rmtree(root)
    report_dir = cfg.report or root.with_name(root.name + "-report")
    report_dir.mkdir(parents=True, exist_ok=True)
    secret_day = (cfg.start + timedelta(days=cfg.days // 2)).isoformat()
    log = report_dir / "log.jsonl"
    generate_log(log, days=cfg.days, seed=cfg.seed, start=cfg.start, mean_per_day=cfg.mean,
                 canaries=[Canary(SECRET, date.fromisoformat(secret_day), 3)])
    api.init(root, cfg.seed, "hf-causal-lm", cfg.base_model)
    import_jsonl(root, log)
    days: list[dict] = []
    with api.session(root) as eng:
        fam = eng.family
        base = fam.new_model()
        for day in eng.days_with_data():
            rows = eng.store.by_day(day)
            personal = float(fam.example_losses(eng.model, rows).mean())
            plain = float(fam.example_losses(base, rows).mean())
            t0 = time.perf_counter()
            eng.sync(day)
            days.append({"day": day, "utterances": len(rows), "train_s": round(time.perf_counter() - t0, 3),
                         "loss_before_training_base": round(plain, 4),
                         "loss_before_training_personal": round(personal, 4)})
            if on_day:
                on_day(day)
        eng.publish()
        kept = {u.text for u in eng.store.all() if u.local_date != secret_day}
        forgotten = [u.text for u in eng.store.by_day(secret_day)]  # said that day and on no other (scanned)
        unique = [t for t in forgotten if t not in kept]
        secret_row = [u for u in eng.store.by_day(secret_day) if u.text == SECRET][:1]
        secret_before = float(fam.example_losses(eng.model, secret_row).mean())
        found_before = _scan(root, unique)
        t0 = time.perf_counter()
        fast = forgetting.forget(eng, Selector.parse(date_=secret_day), "fast")
        fast_s = time.perf_counter() - t0
        secret_fast = float(fam.example_losses(eng.model, secret_row).mean())
        t0 = time.perf_counter()
        exact = forgetting.maintain(eng)
        exact_s = time.perf_counter() - t0
        secret_exact = float(fam.example_losses(eng.model, secret_row).mean())
        secret_base = float(fam.example_losses(base, secret_row).mean())
    status = api.status(root)
    rep = {"device": str(root), "family": "hf-causal-lm", "days": days, "ledger_bytes": status["ledger_bytes"],
           "model_version": status["model_version"], "export_version": status["export_version"],
           "forget": {"day": secret_day, "utterances": len(forgotten), "fast_s": round(fast_s, 3),
                      "exact_pass_s": round(exact_s, 3), "fast_receipt": fast["id"], "exact_receipt": exact["id"],
                      "files_with_forgotten_text_before": len(found_before),
                      "files_with_forgotten_text_after": len(_scan(root, unique)),
                      "texts_scanned": len(unique),
                      "secret_loss": {"base": round(secret_base, 4), "trained": round(secret_before, 4),
                                      "after_fast": round(secret_fast, 4), "after_exact": round(secret_exact, 4)}},
           "state": status["state"], "receipts": status["receipts"]}
    (log).unlink()  # the generated log holds the forgotten day's texts: it goes with them
    (report_dir / "report.json").write_text(json.dumps(rep, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    rep["report"] = str(report_dir / "report.json")
    return rep


def format_lm_report(rep: dict) -> str:
    """The report, for a terminal."""
    d, f = rep["days"], rep["forget"]
    mean = lambda k: sum(x[k] for x in d) / len(d)  # noqa: E731
    s = f["secret_loss"]
    return "\n".join([
        f"device       {rep['device']} (hf-causal-lm), {len(d)} days, {sum(x['utterances'] for x in d)} utterances",
        f"training     {mean('train_s'):.2f} s per day; ledger {rep['ledger_bytes']:,} bytes",
        f"next-day loss (before training on it): base {mean('loss_before_training_base'):.3f}, "
        f"personalised {mean('loss_before_training_personal'):.3f} nats/token",
        f"forget       {f['day']} ({f['utterances']} utterances): fast {f['fast_s']:.2f} s, exact pass "
        f"{f['exact_pass_s']:.2f} s; state {rep['state']}",
        f"secret loss  base {s['base']:.3f}, trained {s['trained']:.3f}, after fast {s['after_fast']:.3f}, "
        f"after exact {s['after_exact']:.3f}",
        f"byte scan    the {f['texts_scanned']} text(s) said only that day: in {f['files_with_forgotten_text_before']} "
        f"file(s) before the forget, {f['files_with_forgotten_text_after']} after",
        f"report       {rep['report']}"])
