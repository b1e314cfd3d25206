"""Nightly personalisation on a device: determinism, late arrivals, tamper detection, CLI behaviour."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from assistant_forget import api
from assistant_forget.cli import main
from assistant_forget.core.errors import CorruptFile
from assistant_forget.core.ledger import Ledger
from devkit import make_device, model_files, persona_log


def day_of(r: dict) -> str:
    return r["timestamp"][:10]


def test_two_devices_train_to_identical_bytes_and_retrain_is_a_no_op(tmp_path: Path) -> None:
    recs = persona_log(5)
    a = make_device(tmp_path / "a", recs)
    b = make_device(tmp_path / "b", recs)
    assert model_files(a) == model_files(b)
    files = model_files(a)
    res = api.train(a)
    assert res["trained_days"] == [] and res["export_version"] is None
    assert model_files(a) == files
    st = api.status(a)
    assert st["trained_days"] == 5 and st["model_version"] == Ledger(a / "ledger").load_manifest().version


def test_train_until_then_the_rest_equals_training_at_once(tmp_path: Path) -> None:
    recs = persona_log(5)
    days = sorted({day_of(r) for r in recs})
    a = make_device(tmp_path / "a", recs, train=False)
    assert api.train(a, until=days[1])["trained_days"] == days[:2]
    assert api.train(a)["trained_days"] == days[2:]
    assert model_files(a) == model_files(make_device(tmp_path / "b", recs))


def test_late_utterances_for_a_trained_day_replay_from_that_day(tmp_path: Path) -> None:
    """Policy: a day that gains utterances after it was trained is retrained, and every day after it."""
    recs = persona_log(5)
    days = sorted({day_of(r) for r in recs})
    late = [r for r in recs if day_of(r) == days[2]][-2:]
    a = make_device(tmp_path / "a", recs, keep=lambda r: r not in late)
    src = tmp_path / "late.jsonl"
    from device_sim.generator import write_jsonl
    from assistant_forget.device.importer import import_jsonl

    write_jsonl(late, src)
    import_jsonl(a, src)
    res = api.train(a)
    assert res["rewound_to"] == "initial" and res["trained_days"] == days  # no checkpoint before that day yet
    assert model_files(a) == model_files(make_device(tmp_path / "b", recs))


def test_tampered_ledger_state_is_refused_with_the_file_name(tmp_path: Path) -> None:
    dev = make_device(tmp_path / "dev", persona_log(3))
    state = next((dev / "ledger").glob("state-*.safetensors"))
    raw = bytearray(state.read_bytes())
    raw[-1] ^= 0x40
    state.write_bytes(bytes(raw))
    with pytest.raises(CorruptFile, match=state.name):
        api.train(dev)
    assert main(["train", "--device", str(dev)]) == CorruptFile.exit_code


def test_a_day_replays_whole_recent_days_and_the_ledger_records_which(tmp_path: Path) -> None:
    recs = persona_log(6)
    days = sorted({day_of(r) for r in recs})
    dev = make_device(tmp_path / "dev", recs)
    m = Ledger(dev / "ledger").load_manifest()
    with api.session(dev) as eng:
        cfg = eng.cfg
        picked = list(eng.trainer.replay_days(days[-1], random.Random(0)))
        assert picked == list(eng.trainer.replay_days(days[-1], random.Random(0)))  # the seed decides
    assert cfg.replay_days >= 1 and m.days[days[0]].reads == ()  # nothing earlier to replay
    assert m.days[days[1]].reads == (days[0],)
    for i, d in enumerate(days[1:], start=1):
        reads = m.days[d].reads
        assert len(reads) == min(cfg.replay_days, i) and list(reads) == sorted(set(reads))
        assert set(reads) <= set(days[max(0, i - cfg.replay_window):i])  # among the last `replay_window` days
    assert len(picked) == cfg.replay_days and set(picked) <= set(days[-1 - cfg.replay_window:-1])


def test_the_repair_sees_more_retained_utterances_when_it_runs_longer(monkeypatch) -> None:
    """At its fewest steps the repair draws `repair_sample` retained utterances; a longer one draws about a
    batch per step, so it does not keep revisiting the same few."""
    from assistant_forget.families.assistant.base import load_base
    from assistant_forget.families.assistant.personalize import DayTrainer, PersonalizationConfig
    from assistant_forget.device.store import Utterance

    base, cfg = load_base(), PersonalizationConfig()
    rows = [Utterance(f"u{i}", f"text {i}", "greeting", "2026-01-01T00:00:00Z", "UTC", "2026-01-01", "sim")
            for i in range(2000)]
    store = type("Rows", (), {"all": lambda self: rows})()
    trainer = DayTrainer(store, base.tokenizer, base.labels, cfg, base.config.max_len)
    mine, seen = {u.text for u in rows}, []
    monkeypatch.setattr(DayTrainer, "_fit", lambda self, model, ex, seed, steps, done, lr=None: seen.append(
        (sum(t in mine for t, _ in ex), steps)))
    trainer.repair(None, 1)
    trainer.repair(None, 1, steps=40)
    trainer.repair(None, 1, steps=0)
    assert seen == [(cfg.repair_sample, cfg.repair_steps), (40 * cfg.batch_size - cfg.replay_public, 40),
                    (cfg.repair_sample, 0)]
    assert cfg.repair_budget(0, 10**6) == cfg.repair_steps and cfg.repair_budget(10**9, 10**6) == cfg.repair_steps_max
    assert cfg.repair_budget(10**9, 0) == cfg.repair_steps  # nothing left to fit: the floor


def test_a_long_repair_stops_once_the_retained_loss_is_back(tmp_path: Path, monkeypatch) -> None:
    """Past `repair_steps` the budget is a ceiling: the repair looks at the retained loss every `repair_steps`
    steps (the last excepted) and stops at the first look where it is at or below the target; with no target,
    or one it never reaches, it runs the whole budget, along the same trajectory."""
    import math

    import torch
    import torch.nn.functional as F

    from assistant_forget.families.assistant.personalize import DayTrainer

    dev = make_device(tmp_path / "dev", persona_log(4))
    with api.session(dev) as eng:
        trainer, n, model = eng.trainer, eng.cfg.repair_steps, eng.model
        rows = eng.store.all()
        assert len(rows) <= min(eng.cfg.repair_sample, eng.cfg.batch_size)  # the yardstick reads all, in one batch
        ids, mask = eng.base.tokenizer.encode_batch([u.text for u in rows], eng.base.config.max_len)
        y = torch.tensor([trainer.label_index[u.intent] for u in rows])

        def loss() -> float:
            """The retained loss, computed here: intent cross-entropy + lm_weight x next-token cross-entropy."""
            model.eval()
            with torch.no_grad():
                intent, lm = model(ids, mask)
            target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            nll = F.cross_entropy(lm[:, :-1].reshape(-1, lm.shape[-1]), target.reshape(-1), ignore_index=-100)
            return (F.cross_entropy(intent, y) + eng.cfg.lm_weight * nll).item()

        start = {k: v.clone() for k, v in model.state_dict().items()}
        personal = eng.timeline.personal

        def run(target: float | None) -> tuple[int, float, dict]:
            model.load_state_dict(start)
            taken = trainer.repair(model, 7, 3 * n, target)
            return taken, loss(), {k: model.state_dict()[k].clone() for k in personal}

        looks: list[float] = []  # what the repair saw at each look, on a run that never stops early
        retained_loss = DayTrainer.retained_loss
        monkeypatch.setattr(DayTrainer, "retained_loss", lambda self, m, r=None: (
            looks.append(retained_loss(self, m, r)), looks[-1])[1])
        whole, whole_loss, whole_state = run(None)
        assert whole == 3 * n and looks == []  # no target: no look, the whole budget
        for unreachable in (float("-inf"), 0.0):  # a joint cross-entropy is never <= 0
            looks.clear()
            taken, _, state = run(unreachable)
            assert taken == 3 * n and len(looks) == 2  # looked after n and 2n steps, never after the last
            assert all(torch.equal(state[k], whole_state[k]) for k in personal)  # looking changes nothing
        monkeypatch.undo()
        l_n, l_2n = looks
        assert l_2n < l_n  # the repair fits the retained data better as it goes on
        model.load_state_dict(start)
        start_loss = loss()
        first, first_loss, _ = run(math.inf)
        assert first == n and abs(first_loss - l_n) < 1e-5  # the yardstick is the retained loss
        assert run(start_loss + 1.0)[0] == n  # a target above the starting loss: back after the shortest repair
        for target in (l_n, math.nextafter(l_n, -math.inf), (l_n + l_2n) / 2, min(l_n, l_2n) - 1e-3):
            expected = n if l_n <= target else 2 * n if l_2n <= target else 3 * n  # the stopping rule
            taken, stopped_at, _ = run(target)
            assert taken == expected, (target, l_n, l_2n)
            if taken < 3 * n:
                assert stopped_at <= target + 1e-5
