"""The method × family contract: every registered method, on the assistant and on a plain nn.Module.

- A method that commits and is exact leaves every ledger file and export byte-identical to a device that
  never saw the forgotten key.
- One that commits and is approximate marks the state approximate with the exact pass pending from the
  forgotten key, and no file left in the device holds the forgotten key's delta (nor its readers'); the
  exact pass then gives the never-saw-it bytes.
- A SIGKILL at each crash point the forget passes, then recovery, completes the forget with that method:
  one receipt naming it, and the same files as a forget that was never interrupted. (The assistant's retrain
  replays the whole history, passing the timeline and ledger points the exact method is killed at already;
  it is killed at the runner's points and once inside its replay, to keep the suite short.)
- A measured-only method is refused by `--mode` with its reason, and the device is left as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from assistant_forget import api
from assistant_forget.core import crashpoints
from assistant_forget.core import method as methods
from assistant_forget.core.errors import BadInput
from assistant_forget.core.ledger import Ledger
from assistant_forget.device import receipts
from assistant_forget.device.localtime import localize
from assistant_forget.families.module import ModuleFamily
from devkit import make_device, model_files, persona_log
from scan import snapshot

COMMITTING = methods.names(commits=True)
MEASURED = methods.names(commits=False)


class Assistant:
    """The assistant's device: a persona's 9-day log, trained; forgets its 8th day (after the checkpoint)."""

    name = "assistant"

    def __init__(self, tmp: Path) -> None:
        records = persona_log(days=9, seed=5, mean=5.0)
        self.full = make_device(tmp / "assistant-full", records)
        self.day = sorted(api.status(self.full)["days"])[7]
        self.oracle = make_device(tmp / "assistant-oracle", records,
                                  keep=lambda r: localize(r["timestamp"], r["tz"]).local_date != self.day)

    def forget(self, root: Path, mode: str) -> dict:
        return api.forget(root, date=self.day, mode=mode)

    def reopen(self, root: Path) -> None:
        api.export(root)  # any writing command recovers first

    def maintain(self, root: Path) -> None:
        api.maintain(root)


class Module:
    """A small MLP on a keyed dataset of nine keys; forgets the 8th key."""

    name = "module"

    def __init__(self, tmp: Path) -> None:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        self.family = ModuleFamily(net, F.cross_entropy)
        keys = [f"user-{k:02d}" for k in range(9)]
        self.data = {k: [(torch.randn(4), torch.tensor(i % 3)) for _ in range(12)] for i, k in enumerate(keys)}
        self.day = keys[7]
        self.full = self._make(tmp / "module-full", self.data)
        self.oracle = self._make(tmp / "module-oracle", {k: v for k, v in self.data.items() if k != self.day})

    def _make(self, root: Path, data: dict) -> Path:
        with api.open_device(root, self.family, seed=1) as dev:
            dev.add(data)
            dev.train()
        return root

    def forget(self, root: Path, mode: str) -> dict:
        with api.open_device(root, self.family) as dev:
            return dev.forget(keys=[self.day], mode=mode)

    def reopen(self, root: Path) -> None:
        with api.open_device(root, self.family):
            pass

    def maintain(self, root: Path) -> None:
        with api.open_device(root, self.family) as dev:
            dev.maintain()


@pytest.fixture(scope="module", params=[Assistant, Module], ids=lambda c: c.name)
def case(request, tmp_path_factory):
    return request.param(tmp_path_factory.mktemp(request.param.name))


def copy_of(case, tmp_path: Path, name: str = "dev") -> Path:
    root = tmp_path / name
    shutil.copytree(case.full, root)
    return root


def forgotten_deltas(root: Path, day: str) -> dict[str, bytes]:
    """The ledger files that hold the delta of `day` and of the days whose replay read it, by name."""
    ledger = Ledger(root / "ledger")
    m = ledger.load_manifest()
    hit = [d for d, e in m.days.items() if d == day or day in e.reads]
    return {m.days[d].delta.file: (ledger.root / m.days[d].delta.file).read_bytes() for d in hit if m.days[d].delta}


def holders(root: Path, blobs: dict[str, bytes]) -> list[str]:
    """Files under `root` whose bytes equal one of `blobs`, or that bear one of their names."""
    digests = {hashlib.sha256(b).hexdigest() for b in blobs.values()}
    names = {Path(n).name for n in blobs}
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and
                  (p.name in names or hashlib.sha256(p.read_bytes()).hexdigest() in digests))


@pytest.mark.parametrize("mode", COMMITTING)
def test_a_committing_method_keeps_its_promise(case, mode, tmp_path):
    root = copy_of(case, tmp_path)
    deltas = forgotten_deltas(root, case.day)
    assert deltas, "the forgotten key has a delta before the forget"
    receipt = case.forget(root, mode)
    method = methods.get(receipt["method"])
    assert receipt["requested_mode"] == mode and receipt["family"] == case.name
    assert receipt["config"] == method.settings()
    m = Ledger(root / "ledger").load_manifest()
    if method.exact:
        assert receipt["state"] == "exact" and not m.approximate
        assert model_files(root) == model_files(case.oracle)  # every ledger file and export, byte for byte
    else:
        assert receipt["state"] == "approximate" and m.pending_exact_from == case.day
        assert not holders(root, deltas), "a file still holds the forgotten key's delta"
        case.maintain(root)
        assert model_files(root) == model_files(case.oracle)


@pytest.mark.parametrize("mode", MEASURED)
def test_a_measured_method_is_refused_and_changes_nothing(case, mode, tmp_path):
    root = copy_of(case, tmp_path)
    before = snapshot(root)
    with pytest.raises(BadInput, match="measured only") as e:
        case.forget(root, mode)
    assert methods.get(mode).why_not in str(e.value)
    assert snapshot(root) == before


def points_passed(case, root: Path, mode: str, tmp_path: Path) -> list[str]:
    """Crash points an uninterrupted forget with `mode` passes, in order of first hit."""
    log = tmp_path / "hits.log"
    crashpoints.configure(None, log=log)
    try:
        case.forget(root, mode)
    finally:
        crashpoints.configure(None)
    return list(dict.fromkeys(log.read_text().split()))


def killed_at(case, root: Path, mode: str, point: str) -> None:
    """Run the forget in a forked child armed to SIGKILL itself at `point`; it must die there."""
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery runs here
        try:
            crashpoints.configure(point)
            case.forget(root, mode)
        finally:
            os._exit(0)  # not killed: the point was not reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"not killed at {point}"


@pytest.mark.parametrize("mode", COMMITTING)
def test_a_kill_at_every_crash_point_is_finished_by_the_same_method(case, mode, tmp_path):
    clean = copy_of(case, tmp_path, "clean")
    points = points_passed(case, clean, mode, tmp_path)
    ran = receipts.read_all(clean)[-1]["method"]  # auto: the method it picked
    assert "forget.journal_written" in points and "forget.receipt_appended" in points
    expected = model_files(clean)
    order = list(points)  # a kill before the receipt is appended leaves the forget to recovery
    if (case.name, mode) == ("assistant", "retrain"):  # see the module docstring
        points = [p for p in points if not p.startswith(("timeline.", "ledger."))] + ["timeline.day_trained"]
    for point in points:
        root = copy_of(case, tmp_path, point)
        killed_at(case, root, mode, point)
        case.reopen(root)
        forgets = [r for r in receipts.read_all(root) if r["type"] == "forget"]
        assert [r["method"] for r in forgets] == [ran] and forgets[0]["recovered"] == (
            order.index(point) < order.index("forget.receipt_appended")), point
        assert not (root / "journal.json").exists(), point
        assert model_files(root) == expected, f"{mode} killed at {point}: not the uninterrupted forget's files"
        shutil.rmtree(root)
