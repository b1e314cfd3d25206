"""Literature baselines (assistant_forget.baselines): each does what its paper says, on a small real device."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from assistant_forget import api, baselines
from assistant_forget.baselines import BaselineConfig, Sisa
from assistant_forget.device import Device
from assistant_forget.engine import open_engine
from assistant_forget.errors import BadInput
from assistant_forget.oracle import set_state
from assistant_forget.personalize import DayTrainer
from assistant_forget.scoring import TorchBackend, score
from assistant_forget.store import LogStore
from devkit import make_device, persona_log
from scan import snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import bench_baselines  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
DAYS = 6


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return persona_log(DAYS)


@pytest.fixture(scope="module")
def days(records) -> list[str]:
    return sorted({r["timestamp"][:10] for r in records})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, records) -> Path:
    """A trained device, copied by each test that changes it."""
    torch.set_num_threads(1)
    return make_device(tmp_path_factory.mktemp("trained") / "dev", records)


def copy_of(trained: Path, tmp_path: Path, name: str = "dev") -> Path:
    return Path(shutil.copytree(trained, tmp_path / name))


def drop_day(eng, day: str) -> list:
    """Read a day's rows into memory and delete them from the store (what a forget does first)."""
    rows = eng.store.by_day(day)
    eng.store.delete_ids([u.id for u in rows])
    return rows


def equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_retrain_from_base_equals_the_exact_tier_bit_for_bit(tmp_path, trained, days):
    with api.session(copy_of(trained, tmp_path)) as eng:
        before = baselines.personal_state(eng, eng.model)
        horizon = eng.last_trained()
        drop_day(eng, days[2])
        model = baselines.retrain_from_base(eng)
        eng.sync(until=horizon)  # the exact tier
        assert equal_states(baselines.personal_state(eng, model), baselines.personal_state(eng, eng.model))
        assert not equal_states(baselines.personal_state(eng, model), before)


def test_sisa_retrains_only_the_forgotten_days_shard_exactly(tmp_path, trained, records, days):
    k = days[4]
    with api.session(copy_of(trained, tmp_path)) as eng:
        ens = baselines.train_sisa(eng, BaselineConfig(shards=2))
        sliced = baselines.train_sisa(eng, BaselineConfig(shards=2, slice_every=1))
        assert ens.bounds == [(days[0], days[2]), (days[3], days[5])] and ens.days == [days[:3], days[3:]]
        assert all(equal_states(a, b) for a, b in zip(ens.states, sliced.states))
        kept = [dict(s) for s in ens.states]
        drop_day(eng, k)
        model = baselines.sisa(eng, ens, [k])
        baselines.sisa(eng, sliced, [k])
    assert ens.retrained == [1] and ens.replayed == 2  # the shard from its start: days 3 and 5
    assert sliced.retrained == [1] and sliced.replayed == 1  # from the slice after day 3: day 5 only
    assert all(ens.states[0][n] is kept[0][n] for n in kept[0])  # the other shard is untouched
    assert not equal_states(ens.states[1], kept[1])
    assert ens.days[1] == [days[3], days[5]] and equal_states(sliced.states[1], ens.states[1])
    # a device that never saw day k, sharded the same way, trains the same shard models bit for bit
    never = make_device(tmp_path / "never", records, train=False, keep=lambda r: r["timestamp"][:10] != k)
    d = Device.open(never)
    with LogStore(d.store_path, readonly=True) as store:
        ref = baselines.train_sisa(open_engine(d, store), bounds=ens.bounds)
    assert all(equal_states(a, b) for a, b in zip(ens.states, ref.states))
    # the aggregate: log of the mean of the members' probabilities, both heads
    ids = torch.tensor([[2, 40, 41, 3], [2, 50, 3, 0]])  # (B, T)
    mask = (ids != 0).long()  # (B, T)
    with torch.no_grad():
        intent, lm = model(ids, mask)  # (B, I), (B, T, V)
        outs = [m(ids, mask) for m in model.members]
        ref_intent = torch.log(torch.stack([i.softmax(-1) for i, _ in outs]).mean(0))  # (B, I)
        ref_lm = torch.log(torch.stack([v.softmax(-1) for _, v in outs]).mean(0))  # (B, T, V)
    assert len(model.members) == 2 and not torch.allclose(outs[0][0], outs[1][0])
    assert torch.allclose(intent, ref_intent, atol=1e-5) and torch.allclose(lm, ref_lm, atol=1e-5)


def test_neggrad_plus_raises_the_loss_on_the_forgotten_utterances(tmp_path, trained, days):
    with api.session(copy_of(trained, tmp_path)) as eng:
        backend = TorchBackend(eng.model, eng.base.tokenizer, eng.base.labels)
        base = {n: p.detach().clone() for n, p in eng.model.named_parameters() if n not in eng.timeline.personal}
        start = baselines.personal_state(eng, eng.model)
        rows = drop_day(eng, days[3])
        data = [(u.text, u.intent) for u in rows]
        loss_before = score(backend, data).lm_loss.mean()
        baselines.neggrad_plus(eng, rows)
        after = baselines.personal_state(eng, eng.model)
        assert score(backend, data).lm_loss.mean() > loss_before + 0.01
        assert all(torch.equal(p, base[n]) for n, p in eng.model.named_parameters() if n in base)  # base untouched
        set_state(eng.model, start)
        baselines.neggrad_plus(eng, rows)
        assert equal_states(baselines.personal_state(eng, eng.model), after)  # seeded: the same steps again


def test_pure_subtraction_is_the_fast_tier_without_repair(tmp_path, trained, days):
    k = days[2]
    with api.session(copy_of(trained, tmp_path, "a")) as eng:
        before = eng.manifest().version
        drop_day(eng, k)
        baselines.pure_subtraction(eng, [k])
        m = eng.manifest()
    with api.session(copy_of(trained, tmp_path, "b")) as ref:
        drop_day(ref, k)
        no_repair = DayTrainer(ref.store, ref.base.tokenizer, ref.base.labels, replace(ref.cfg, repair_steps=0),
                               ref.base.config.max_len)
        ref.timeline.fast_forget([k], no_repair.repair)
        assert ref.manifest().version == m.version != before
    assert m.approximate and k not in m.days and m.pending_exact_from == k


def test_finetune_retained_never_reads_the_forgotten_rows(tmp_path, trained, days, monkeypatch):
    k = days[1]
    seen: list[str] = []
    with api.session(copy_of(trained, tmp_path, "a")) as eng:
        encode = eng.base.tokenizer.encode_batch
        monkeypatch.setattr(eng.base.tokenizer, "encode_batch", lambda texts, *a, **kw: (seen.extend(texts),
                                                                                           encode(texts, *a, **kw))[1])
        retained = {u.text for u in eng.store.all() if u.local_date != k}
        rows = drop_day(eng, k)
        only_k = {u.text for u in rows} - retained
        baselines.pure_subtraction(eng, [k])
        baselines.finetune_retained(eng, [k])
        assert seen and only_k and not only_k & set(seen) and set(seen) & retained
        tuned = baselines.personal_state(eng, eng.model)
        baselines.neggrad_plus(eng, rows)  # the spy does see forgotten texts when a method uses them
        assert only_k <= set(seen)
    with api.session(copy_of(trained, tmp_path, "b")) as ref:  # subtraction + fine-tune = the fast tier
        drop_day(ref, k)
        ref.timeline.fast_forget([k], ref.trainer.repair)
        assert equal_states(baselines.personal_state(ref, ref.model), tuned)


def test_bad_arguments_raise_bad_input_and_change_nothing(tmp_path, trained, days):
    for bad in ({"shards": 0}, {"shards": True}, {"slice_every": -1}, {"steps": -1}, {"alpha": 1.5}, {"lr": 0.0},
                {"lr": float("nan")}):
        with pytest.raises(BadInput):
            BaselineConfig(**bad)
    with pytest.raises(BadInput, match="shard would be empty"):
        baselines.shard_bounds(days, DAYS + 1)
    dev = copy_of(trained, tmp_path)
    before = snapshot(dev)
    with api.session(dev) as eng:
        state = baselines.personal_state(eng, eng.model)
        with pytest.raises(BadInput, match="at most 6 shards"):
            baselines.train_sisa(eng, BaselineConfig(shards=7))
        with pytest.raises(BadInput, match="not days this device trained"):
            baselines.pure_subtraction(eng, ["2020-01-01"])
        with pytest.raises(BadInput, match="non-empty list"):
            baselines.finetune_retained(eng, [])
        with pytest.raises(BadInput, match="YYYY-MM-DD"):
            baselines.finetune_retained(eng, ["03/02/2026"])
        with pytest.raises(BadInput, match="non-empty list"):
            baselines.pure_subtraction(eng, days[0])  # a string, not a list
        with pytest.raises(BadInput, match="still in the store"):
            baselines.neggrad_plus(eng, eng.store.by_day(days[0]))
        with pytest.raises(BadInput, match="forgotten utterances"):
            baselines.neggrad_plus(eng, [])
        fake = Sisa([(days[0], days[-1])], [list(days)], [state], [{}])
        with pytest.raises(BadInput, match="not days the ensemble trained on"):
            baselines.sisa(eng, fake, ["2020-01-01"])
        with pytest.raises(BadInput, match="ordered, non-overlapping"):
            baselines.train_sisa(eng, bounds=[(days[3], days[5]), (days[0], days[2])])
        assert equal_states(baselines.personal_state(eng, eng.model), state)
    assert snapshot(dev) == before


def test_bench_help_and_a_tiny_end_to_end_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench_baselines.main(["--help"])
    assert e.value.code == 0 and "--lira" in capsys.readouterr().out
    out = tmp_path / "b.json"
    assert bench_baselines.main(["--days", "5", "--forgets", "1", "--mean", "4", "--unseen", "30", "--retained", "30",
                                 "--candidates", "50", "--shards", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    res = json.loads(out.read_text())
    s = res["summary"]
    assert set(s) == {"before", *bench_baselines.METHODS}
    assert all(f"| {m} |" in table for m in s)
    for m in ("exact", "retrain_from_base"):  # both are the oracle, bit for bit
        assert s[m]["equals_oracle"] is True and s[m]["pooled_mia_gap"] == 0 and s[m]["kl_lm_forgotten"] == 0
    assert s["fast"]["over_fast"] == 1 and s["sisa"]["prep_s"] > 0 and s["sisa"]["replayed_days"] >= 1
    assert all(s[m]["wall_s"] > 0 and np.isfinite(s[m]["exposure_gap_bits"]) for m in bench_baselines.METHODS)
    assert s["before"]["kl_lm_forgotten"] > 0  # the model before the forget is not the oracle
