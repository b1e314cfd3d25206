"""The plain nn.Module family: a keyed dataset in the item store, trained key by key, forgotten like the assistant."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from assistant_forget import api
from assistant_forget.core.errors import BadInput
from assistant_forget.families.module import ModuleConfig, ModuleFamily, decode, items_of
from scan import snapshot


def family(seed: int = 0) -> ModuleFamily:
    torch.manual_seed(seed)
    return ModuleFamily(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)), F.cross_entropy,
                        ModuleConfig(epochs=2, batch_size=4))


def data(keys=("a", "b", "c"), n=6, seed=1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: [(torch.randn(3, generator=g), torch.tensor(i % 2)) for i in range(n)] for k in keys}


def test_items_round_trip_and_ids_are_stable_and_distinct():
    items = items_of(data())
    assert len({i.id for i in items}) == len(items) == 18
    x, y = decode(items[0].payload)
    assert x.shape == (3,) and y.dtype == torch.int64
    assert [i.id for i in items_of(data())] == [i.id for i in items]  # same content, same ids


@pytest.mark.parametrize("bad", [{}, {"a/b": [(torch.zeros(3), torch.tensor(0))]}, {"a": [(torch.zeros(3),)]},
                                 {"a": [([0.0], 1)]}, [("a", 1)]], ids=["empty", "slash", "single", "lists", "list"])
def test_bad_data_is_refused_and_the_device_is_unchanged(tmp_path, bad):
    fam = family()
    with api.open_device(tmp_path / "dev", fam, seed=1) as dev:
        dev.add(data())
        dev.train()
    before = snapshot(tmp_path / "dev")
    with api.open_device(tmp_path / "dev", fam) as dev:
        with pytest.raises(BadInput):
            dev.add(bad)
    assert snapshot(tmp_path / "dev") == before


def test_adding_an_item_twice_is_refused(tmp_path):
    with api.open_device(tmp_path / "dev", family(), seed=1) as dev:
        dev.add(data())
        with pytest.raises(BadInput, match="already|duplicate"):
            dev.add(data(keys=("a",)))


def test_bad_modules_and_settings_are_refused():
    with pytest.raises(BadInput, match="nn.Module"):
        ModuleFamily(lambda x: x, F.cross_entropy)
    with pytest.raises(BadInput, match="callable"):
        ModuleFamily(nn.Linear(2, 2), "mse")
    with pytest.raises(BadInput, match="personal"):
        ModuleFamily(nn.Linear(2, 2), F.mse_loss, personal=["nope"])
    with pytest.raises(BadInput):
        ModuleConfig(lr=-1)


def test_training_is_deterministic_and_a_forgotten_key_stays_forgotten(tmp_path):
    versions = []
    for name in ("one", "two"):
        with api.open_device(tmp_path / name, family(), seed=3) as dev:
            dev.add(data())
            versions.append(dev.train()["version"])
    assert versions[0] == versions[1]
    with api.open_device(tmp_path / "one", family()) as dev:
        dev.forget(keys=["b"], mode="exact")
        with pytest.raises(BadInput, match="forgotten"):
            dev.add(data(keys=("b",), seed=9))  # a key forgotten whole takes no new data
        assert set(dev.status()["items"]) == {"a", "c"}


def test_example_losses_are_per_item_and_match_the_loss(tmp_path):
    fam = family()
    with api.open_device(tmp_path / "dev", fam, seed=1) as dev:
        dev.add(data())
        rows = dev._eng.store.by_day("a")
        losses = dev._eng.family.example_losses(dev.model, rows)
    x, y = decode(rows[0].payload)
    assert losses.shape == (6,)
    assert torch.allclose(losses[0], F.cross_entropy(dev.model(x[None]), y[None]))


def test_a_family_of_another_model_refuses_the_ledger(tmp_path):
    with api.open_device(tmp_path / "dev", family(0), seed=1) as dev:
        dev.add(data())
        dev.train()
    from assistant_forget.core.errors import CorruptFile

    with pytest.raises(CorruptFile, match="ledger belongs to model"):
        with api.open_device(tmp_path / "dev", family(5)):
            pass
