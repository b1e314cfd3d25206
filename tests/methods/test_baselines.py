"""The literature baselines and the in-memory method protocol (prepare / apply): each registered method does
what its paper says, on a small real device (methods/sisa.py, neggrad.py, retrain.py, finetune.py,
subtraction.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from assistant_forget import api
from assistant_forget.core import method as methods
from assistant_forget.core.errors import BadInput
from assistant_forget.core.timeline import day_seed, load_state, personal_state
from assistant_forget.device.device import Device
from assistant_forget.device.store import LogStore
from assistant_forget.methods import sisa
from assistant_forget.methods._shared import trained_days
from assistant_forget.methods.auto import AutoConfig
from assistant_forget.methods.fast import FastConfig
from assistant_forget.methods.finetune import Finetune, FinetuneConfig
from assistant_forget.methods.neggrad import NegGradConfig, NegGradPlus, neggrad_plus
from assistant_forget.methods.retrain import retrained
from assistant_forget.methods.sisa import Ensemble, Sisa, SisaConfig
from assistant_forget.runner.engine import open_engine
from assistant_forget.runner.forget import make_plan
from assistant_forget.runner.selector import Selector
from assistant_forget.verify.scoring import TorchBackend, score
from devkit import make_device, persona_log
from scan import snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
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


def request_for(eng, day: str):
    """The Request of a forget of `day`, as the runner computes it before the rows go."""
    return make_plan(eng, Selector("date", day, day), "fast").request


def drop_day(eng, day: str) -> list:
    """Read a day's rows into memory and delete them from the store (what a forget does first)."""
    rows = eng.store.by_day(day)
    eng.store.delete_ids([u.id for u in rows])
    return rows


def state(eng, model=None) -> dict:
    """A copy of the personal parameters of `model` (default: the engine's)."""
    return personal_state(eng.model if model is None else model, eng.timeline.personal)


def equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_retrain_equals_the_exact_tier_bit_for_bit(tmp_path, trained, days):
    with api.session(copy_of(trained, tmp_path)) as eng:
        before = state(eng)
        request = request_for(eng, days[2])
        drop_day(eng, days[2])
        assert trained_days(eng) == [d for d in days if d != days[2]]
        seen: list[str] = []
        model = retrained(eng, progress=seen.append)  # default: trained_days, the retained days
        assert seen == trained_days(eng) and model is not eng.model
        assert equal_states(state(eng, retrained(eng, trained_days(eng))), state(eng, model))
        auto = methods.get("auto", AutoConfig(exact_max_days=DAYS))  # picks the exact tier
        plan = auto.plan(request, eng.family)
        assert plan.method == "exact" and plan.exact
        assert auto.apply(eng, request, plan, prepared=None) is None  # the exact tier, through auto
        assert equal_states(state(eng, model), state(eng))
        assert not equal_states(state(eng, model), before)


def test_sisa_retrains_only_the_forgotten_days_shard_exactly(tmp_path, trained, records, days):
    k = days[4]
    with api.session(copy_of(trained, tmp_path)) as eng:
        # one shard is the device itself: same day trainer, same day seeds, bit for bit
        (whole,) = sisa.train_sisa(eng, SisaConfig(shards=1)).states
        assert equal_states(whole, state(eng))
        method = methods.get("sisa", {"shards": 2})
        assert isinstance(method, Sisa) and method.config == SisaConfig(shards=2)
        ens = method.prepare(eng)  # SISA's nightly training, before the forget
        sliced = sisa.train_sisa(eng, SisaConfig(shards=2, slice_every=1))
        assert ens.bounds == [(days[0], days[2]), (days[3], days[5])] and ens.days == [days[:3], days[3:]]
        assert all(equal_states(a, b) for a, b in zip(ens.states, sliced.states))
        kept = [dict(s) for s in ens.states]
        request = request_for(eng, k)
        plan = method.plan(request, eng.family)
        drop_day(eng, k)
        model = method.apply(eng, request, plan, prepared=ens)
        sisa.sisa(eng, sliced, [k])
    assert ens.retrained == [1] and ens.replayed == 2  # the shard from its start: days 3 and 5
    assert sliced.retrained == [1] and sliced.replayed == 1  # from the slice after day 3: day 5 only
    assert all(ens.states[0][n] is kept[0][n] for n in kept[0])  # the other shard is untouched
    assert not equal_states(ens.states[1], kept[1])
    assert ens.days[1] == [days[3], days[5]] and equal_states(sliced.states[1], ens.states[1])
    # a device that never saw day k, sharded the same way, trains the same shard models bit for bit
    never = make_device(tmp_path / "never", records, train=False, keep=lambda r: r["timestamp"][:10] != k)
    d = Device.open(never)
    with LogStore(d.store_path, readonly=True) as store:
        ref = sisa.train_sisa(open_engine(d, store), bounds=ens.bounds)
    assert all(equal_states(a, b) for a, b in zip(ens.states, ref.states))
    # the aggregate: log of the mean of the members' probabilities, both heads
    ids = torch.tensor([[2, 40, 41, 3], [2, 50, 3, 0]])  # (B, T)
    mask = (ids != 0).long()  # (B, T)
    with torch.no_grad():
        intent, lm = model(ids, mask)  # (B, I), (B, T, V)
        outs = [m(ids, mask) for m in model.members]
        ref_intent = torch.log(torch.stack([i.softmax(-1) for i, _ in outs]).mean(0))  # (B, I)
        ref_lm = torch.log(torch.stack([v.softmax(-1) for _, v in outs]).mean(0))  # (B, T, V)
    assert isinstance(model, sisa.EnsembleModel) and len(model.members) == 2
    assert not torch.allclose(outs[0][0], outs[1][0])
    assert torch.allclose(intent, ref_intent, atol=1e-5) and torch.allclose(lm, ref_lm, atol=1e-5)


def test_neggrad_plus_raises_the_loss_on_the_forgotten_utterances(tmp_path, trained, days):
    dev = copy_of(trained, tmp_path)
    with api.session(dev) as eng:
        backend = TorchBackend(eng.model, eng.base.tokenizer, eng.base.labels)
        base = {n: p.detach().clone() for n, p in eng.model.named_parameters() if n not in eng.timeline.personal}
        start = state(eng)
        method = methods.get("neggrad+")
        request = request_for(eng, days[3])
        plan = method.plan(request, eng.family)
        assert method.prepare(eng) is None  # it prepares nothing: it reads the forgotten rows themselves
        rows = drop_day(eng, days[3])
        data = [(u.text, u.intent) for u in rows]
        loss_before = score(backend, data).lm_loss.mean()
        assert method.apply(eng, request, plan, forgotten=rows) is eng.model  # in memory: the ledger is as it was
        after = state(eng)
        assert score(backend, data).lm_loss.mean() > loss_before + 0.01
        assert all(torch.equal(p, base[n]) for n, p in eng.model.named_parameters() if n in base)  # base untouched
        assert equal_states(committed(dev), start)  # the ledger still holds the state before
        load_state(eng.model, start)
        neggrad_plus(eng, rows, NegGradConfig())
        assert equal_states(state(eng), after)  # seeded: the same steps again
        load_state(eng.model, start)
        neggrad_plus(eng, rows, NegGradConfig(alpha=1.0, steps=3))  # alpha 1: descent on retained data only
        assert not equal_states(state(eng), after)


def ledger_tensors(dev: Path, ref: dict) -> dict[str, torch.Tensor]:
    """A ledger tensor file named by a manifest reference, read with safetensors (not the library), as float32."""
    return {k: v.float() for k, v in load_file(str(dev / "ledger" / ref["file"])).items()}


def subtracted_by_hand(dev: Path, k: str) -> tuple[dict, dict, dict, list[str]]:
    """(state before, the expected state after subtracting, the deltas, the readers of k), read from the files."""
    raw = json.loads((dev / "ledger" / "manifest.json").read_text(encoding="utf-8"))
    readers = sorted(d for d, e in raw["days"].items() if k in e["reads"])
    assert readers and all(d > k for d in readers)
    before = ledger_tensors(dev, raw["state"])
    deltas = {d: ledger_tensors(dev, raw["days"][d]["delta"]) for d in [k, *readers]}
    expected = {n: before[n] - sum(deltas[d][n] for d in [k, *readers]) for n in before}
    return before, expected, deltas, readers


def committed(dev: Path) -> dict[str, torch.Tensor]:
    return ledger_tensors(dev, json.loads((dev / "ledger" / "manifest.json").read_text(encoding="utf-8"))["state"])


def test_subtraction_subtracts_the_stored_deltas_of_the_day_and_its_readers(tmp_path, trained, days):
    """Amnesiac unlearning: the state after it is the state before minus the stored deltas of the day and of
    the later days whose replay read it (read here from the ledger's files), with no repair after."""
    k = days[2]
    dev = copy_of(trained, tmp_path, "a")
    before, expected, deltas, readers = subtracted_by_hand(dev, k)
    with api.session(dev) as eng:
        method = methods.get("subtraction")
        request = request_for(eng, k)
        plan = method.plan(request, eng.family)
        assert plan.subtract == [k, *readers] and plan.repair_steps == 0
        drop_day(eng, k)
        assert method.apply(eng, request, plan, prepared=method.prepare(eng)) is None  # no repair steps
        live = state(eng)
        m = eng.manifest()
    assert live.keys() == before.keys()
    assert all(torch.allclose(live[n], expected[n], rtol=0, atol=1e-6) for n in before)
    assert max((live[n] - before[n] + deltas[k][n]).abs().max().item() for n in before) > 1e-4  # readers count
    assert equal_states(committed(dev), live)  # what it committed is what it computed
    assert m.approximate and k not in m.days and m.pending_exact_from == k
    assert all(m.days[d].delta is None for d in readers)
    with api.session(copy_of(trained, tmp_path, "b")) as ref:  # the fast tier: the same subtraction, then a repair
        drop_day(ref, k)
        ref.timeline.fast_forget([k], ref.trainer.repair)
        fast = state(ref)
    assert max((fast[n] - live[n]).abs().max().item() for n in before) > 1e-5


def repaired(eng, start: dict, k: str, steps: int) -> dict:
    """`start` fine-tuned by the family's repair on the log as it is now, seeded as the fast tier's repair of a
    forget of k: on a fresh model, outside the timeline."""
    model = eng.family.new_model()
    personal = set(eng.family.personal(model))
    for n, p in model.named_parameters():
        p.requires_grad_(n in personal)
    load_state(model, start)
    eng.family.repair(model, day_seed(eng.seed, k, "repair"), steps)
    return personal_state(model, eng.timeline.personal)


def test_finetune_never_reads_the_forgotten_rows_and_is_the_fast_repair_without_subtraction(tmp_path, trained, days,
                                                                                         monkeypatch):
    k = days[1]
    seen: list[str] = []
    dev = copy_of(trained, tmp_path, "a")
    _, subtracted, _, readers = subtracted_by_hand(dev, k)
    with api.session(dev) as eng:
        encode = eng.base.tokenizer.encode_batch
        monkeypatch.setattr(eng.base.tokenizer, "encode_batch", lambda texts, *a, **kw: (seen.extend(texts),
                                                                                           encode(texts, *a, **kw))[1])
        retained = {u.text for u in eng.store.all() if u.local_date != k}
        start = state(eng)
        method = methods.get("finetune")
        assert isinstance(method, Finetune)
        request = request_for(eng, k)
        plan = method.plan(request, eng.family)
        assert plan.repair_steps == eng.family.min_repair_steps and plan.subtract == [k, *readers]
        rows = drop_day(eng, k)
        only_k = {u.text for u in rows} - retained
        seen.clear()
        assert method.apply(eng, request, plan, forgotten=rows) == plan.repair_steps
        assert seen and only_k and not only_k & set(seen) and set(seen) & retained
        tuned = state(eng)
        m = eng.manifest()
        assert equal_states(committed(dev), tuned)
        assert m.approximate and k not in m.days and m.pending_exact_from == k  # its delta left the ledger
        assert all(m.days[d].delta is None for d in readers)
        # the fast tier's repair (same sample, seed, steps) of the state before, not subtracted
        assert equal_states(tuned, repaired(eng, start, k, plan.repair_steps))
        load_state(eng.model, start)
        neggrad_plus(eng, rows)  # the spy does see forgotten texts when a method uses them
        assert only_k <= set(seen)
        after_sub = {n: subtracted[n].to(start[n].dtype) for n in start}
        by_hand_fast = repaired(eng, after_sub, k, plan.repair_steps)
    with api.session(copy_of(trained, tmp_path, "b")) as ref:  # subtraction + the same fine-tune = the fast tier
        drop_day(ref, k)
        ref.timeline.fast_forget([k], ref.trainer.repair)
        fast = state(ref)
    assert max((fast[n] - tuned[n]).abs().max().item() for n in fast) > 1e-5
    assert all(torch.allclose(fast[n], by_hand_fast[n], rtol=0, atol=1e-5) for n in fast)


def test_bad_arguments_raise_bad_input_and_change_nothing(tmp_path, trained, days):
    for Config, name, bad in [
        (SisaConfig, "sisa", {"shards": 0}), (SisaConfig, "sisa", {"shards": True}),
        (SisaConfig, "sisa", {"slice_every": -1}), (SisaConfig, "sisa", {"shards": 2.0}),
        (NegGradConfig, "neggrad+", {"steps": -1}), (NegGradConfig, "neggrad+", {"alpha": 1.5}),
        (NegGradConfig, "neggrad+", {"alpha": True}), (NegGradConfig, "neggrad+", {"lr": 0.0}),
        (NegGradConfig, "neggrad+", {"lr": float("nan")}),
        (FinetuneConfig, "finetune", {"steps": -1}), (FinetuneConfig, "finetune", {"lr": float("inf")}),
        (FastConfig, "fast", {"steps": 1.5}), (AutoConfig, "auto", {"exact_max_days": -1}),
    ]:
        with pytest.raises(BadInput):
            Config(**bad)
        with pytest.raises(BadInput):
            type(methods.get(name))(**bad)  # Method(**settings)
        with pytest.raises(BadInput):
            methods.get(name, bad)
    with pytest.raises(BadInput, match="unknown setting.*alpha"):
        methods.get("sisa", {"alpha": 0.5})
    with pytest.raises(BadInput, match="takes a SisaConfig"):
        Sisa(NegGradConfig())
    with pytest.raises(BadInput, match="shard would be empty"):
        sisa.shard_bounds(days, DAYS + 1)
    module = SimpleNamespace(family=SimpleNamespace(name="module"), seed=0)  # a subject of another family
    with pytest.raises(BadInput, match="sisa is implemented for the assistant family only, not 'module'"):
        methods.get("sisa").prepare(module)
    with pytest.raises(BadInput, match="neggrad\\+ is implemented for the assistant family only"):
        methods.get("neggrad+").apply(module, None, None, forgotten=["x"])
    dev = copy_of(trained, tmp_path)
    before = snapshot(dev)
    with api.session(dev) as eng:
        start = state(eng)
        request = request_for(eng, days[0])
        with pytest.raises(BadInput, match="at most 6 shards"):
            sisa.train_sisa(eng, SisaConfig(shards=7))
        with pytest.raises(BadInput, match="at most 6 shards"):
            methods.get("sisa", {"shards": 7}).prepare(eng)
        with pytest.raises(BadInput, match="prepared=method.prepare"):
            methods.get("sisa").apply(eng, request, methods.get("sisa").plan(request, eng.family))
        with pytest.raises(BadInput, match="still in the store"):
            neggrad_plus(eng, eng.store.by_day(days[0]))
        with pytest.raises(BadInput, match="forgotten utterances"):
            neggrad_plus(eng, [])
        with pytest.raises(BadInput, match="forgotten utterances"):
            NegGradPlus().apply(eng, request, NegGradPlus().plan(request, eng.family))  # forgotten not given
        fake = Ensemble([(days[0], days[-1])], [list(days)], [start], [{}])
        with pytest.raises(BadInput, match="not days the ensemble trained on"):
            sisa.sisa(eng, fake, ["2020-01-01"])
        with pytest.raises(BadInput, match="non-empty list"):
            sisa.sisa(eng, fake, [])
        with pytest.raises(BadInput, match="non-empty list"):
            sisa.sisa(eng, fake, days[0])  # a string, not a list
        with pytest.raises(BadInput, match="YYYY-MM-DD"):
            sisa.sisa(eng, fake, ["03/02/2026"])
        with pytest.raises(BadInput, match="ordered, non-overlapping"):
            sisa.train_sisa(eng, bounds=[(days[3], days[5]), (days[0], days[2])])
        with pytest.raises(BadInput, match="lost all its days"):
            sisa.ensemble_model(eng, Ensemble([(days[0], days[-1])], [[]], [start], [{}]))
        assert equal_states(state(eng), start)
    assert snapshot(dev) == before


def test_bench_help_and_a_tiny_end_to_end_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench_baselines.main(["--help"])
    assert e.value.code == 0 and "--lira" in capsys.readouterr().out
    assert set(bench_baselines.METHODS) == set(methods.names()) - {"auto"}  # every registered method but auto
    for bad in (["--methods", "nope"], ["--methods", "fast,fast"], ["--shards", "0"], ["--alpha", "2"]):
        with pytest.raises(SystemExit) as e:
            bench_baselines.main(bad)
        assert e.value.code == 2, bad
    capsys.readouterr()
    out = tmp_path / "b.json"
    assert bench_baselines.main(["--days", "5", "--forgets", "1", "--mean", "4", "--unseen", "30", "--retained", "30",
                                 "--candidates", "50", "--shards", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    res = json.loads(out.read_text())
    s = res["summary"]
    assert set(s) == {"before", *bench_baselines.METHODS}
    assert all(f"| {m} |" in table for m in s)
    for m in ("exact", "retrain"):  # both are the oracle, bit for bit
        assert s[m]["equals_oracle"] is True and s[m]["pooled_mia_gap"] == 0 and s[m]["kl_lm_forgotten"] == 0
    assert s["fast"]["over_fast"] == 1 and s["sisa"]["prep_s"] > 0 and s["sisa"]["replayed_days"] >= 1
    assert all(s[m]["wall_s"] > 0 and np.isfinite(s[m]["exposure_gap_bits"]) for m in bench_baselines.METHODS)
    assert s["before"]["kl_lm_forgotten"] > 0  # the model before the forget is not the oracle
    (day,) = res["days"]
    rows = day["rows"]
    assert all(rows[m]["method"] == m for m in bench_baselines.METHODS)
    budget = rows["fast"]["repair_steps"]  # NegGrad+ and fine-tuning get the fast tier's repair budget as steps
    assert budget >= 1 and rows["neggrad+"]["config"]["steps"] == budget == rows["finetune"]["config"]["steps"]
    assert rows["sisa"]["config"] == {"shards": 2, "slice_every": 0} == res["configs"]["sisa"]
