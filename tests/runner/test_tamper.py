"""Tampering (DESIGN invariant 6): one flipped bit or a truncation anywhere in a ledger file, a base-model file
or an export file is refused when it is loaded, with a CorruptFile that names the file; a refused command
changes nothing, and the next write command replaces a tampered export."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from assistant_forget import api
from assistant_forget.families.assistant.base import ARTEFACTS, base_dir, load_base
from assistant_forget.cli import main
from assistant_forget.core.errors import CorruptFile
from assistant_forget.core.ledger import Ledger
from assistant_forget.export.publish import MANIFEST, ONNX_FILE, TOKENIZER_FILE, current_export, verify_export
from assistant_forget.export.runtime import load_current
from devkit import make_device, persona_log
from scan import snapshot

DAYS = 7  # checkpoint_every is 7: the seventh trained day writes a checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_device(tmp_path_factory.mktemp("tamper") / "dev", persona_log(DAYS, mean=3.0))


@pytest.fixture
def dev(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "dev"))


def damages(path: Path) -> list[tuple[str, bytes]]:
    """(label, damaged bytes): the lowest bit flipped at the first, a middle and the last byte, and a truncation."""
    data = path.read_bytes()
    out = []
    for at in sorted({0, len(data) // 3, len(data) // 2, len(data) - 1}):
        flipped = bytearray(data)
        flipped[at] ^= 0x01  # the smallest change: '3' -> '2', one mantissa bit, one protobuf bit
        out.append((f"bit 0 of byte {at}", bytes(flipped)))
    return out + [("truncated to half", data[: len(data) // 2])]


def ledger_file(dev: Path, kind: str) -> Path:
    root = dev / "ledger"
    return {"manifest": lambda: root / "manifest.json", "state": lambda: next(root.glob("state-*.safetensors")),
            "delta": lambda: sorted((root / "deltas").iterdir())[2],
            "checkpoint": lambda: next((root / "checkpoints").iterdir())}[kind]()


@pytest.mark.parametrize("kind", ["manifest", "delta", "checkpoint", "state"])
def test_damaged_ledger_file_is_refused_naming_it_and_nothing_changes(dev: Path, kind: str, capsys) -> None:
    path = ledger_file(dev, kind)
    original = path.read_bytes()
    Ledger(dev / "ledger").verify()  # intact, it loads
    for label, data in damages(path):
        path.write_bytes(data)
        with pytest.raises(CorruptFile, match=re.escape(path.name)):
            Ledger(dev / "ledger").verify()
        before = snapshot(dev)
        capsys.readouterr()
        assert main(["forget", "--device", str(dev), "--date", "2026-02-04", "--mode", "fast"]) == 4, label
        err = capsys.readouterr().err
        assert path.name in err and "delete the device's ledger directory" in err, (label, err)
        assert snapshot(dev) == before, label
        path.write_bytes(original)
    assert main(["status", "--device", str(dev)]) == 0


def test_a_ledger_rebuilt_from_the_log_is_the_same(dev: Path, trained: Path) -> None:
    """What the CorruptFile message tells the user to do restores exactly the model that was damaged."""
    ledger_file(dev, "delta").write_bytes(b"garbage")
    shutil.rmtree(dev / "ledger")
    api.train(dev)
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in (root / "ledger").rglob("*") if p.is_file()}
    assert files(dev) == files(trained)


@pytest.mark.parametrize("name", sorted({*ARTEFACTS, *(p.name for p in base_dir().iterdir() if p.is_file())}))
def test_damaged_base_model_file_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    base = Path(shutil.copytree(base_dir(), tmp_path / "base"))
    load_base(base)
    path = base / name
    original = path.read_bytes()
    for label, data in damages(path):
        path.write_bytes(data)
        with pytest.raises(CorruptFile, match=re.escape(name)):
            load_base(base)
        path.write_bytes(original)


@pytest.mark.parametrize("name", [ONNX_FILE, TOKENIZER_FILE, MANIFEST])
def test_damaged_export_file_is_refused_by_the_app_and_replaced_by_the_next_write(dev: Path, name: str) -> None:
    live = current_export(dev)
    path = live / name
    original = path.read_bytes()
    intact = snapshot(live)
    for label, data in damages(path):
        path.write_bytes(data)
        with pytest.raises(CorruptFile, match=re.escape(name)):
            load_current(dev)
        with pytest.raises(CorruptFile, match=re.escape(name)):
            verify_export(live)
        path.write_bytes(original)
    path.write_bytes(damages(path)[1][1])
    api.export(dev)  # any write command re-publishes an export that does not verify
    assert snapshot(live) == intact and load_current(dev).version == live.name
