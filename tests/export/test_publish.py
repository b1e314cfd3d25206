"""Publication: one complete version on disk, swapped atomically, never seen half-written by a reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant_forget.core.errors import BadInput, CorruptFile, DeviceNotFound
from assistant_forget.export.convert import onnx_metadata
from assistant_forget.core.fsio import sha256_file
from assistant_forget.export.publish import (COREML_DIR, CURRENT, MANIFEST, ONNX_FILE, TOKENIZER_FILE, current_export,
                                      current_version, publish, verify_export)

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[2]

READER = r"""
import json, sys, time
from pathlib import Path
from assistant_forget.export.publish import read_manifest
from assistant_forget.export.runtime import load_current
root, stop = Path(sys.argv[1]), Path(sys.argv[2])
seen, errors, loads = set(), [], 0
while not stop.exists() or loads == 0:
    try:
        rt = load_current(root)
        label = rt.intent("book a table for two").label
        if rt.version != rt.path.name:
            errors.append(f"version {rt.version} loaded from {rt.path.name}")
        try:
            if read_manifest(rt.path)["version"] != rt.version:
                errors.append(f"export.json of {rt.path.name} names another version")
        except FileNotFoundError:
            pass  # replaced since the load: fine
        seen.add(rt.version)
        loads += 1
        if loads == 1:
            print("ready", flush=True)
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
print(json.dumps({"loads": loads, "seen": sorted(seen), "errors": errors[:5]}))
"""


def _entries(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def test_publish_writes_one_verified_version(device_root, make_model, tokenizer_path, labels):
    model = make_model(seed=0)
    version = publish(device_root, model, tokenizer_path, labels, "exact")
    ex = device_root / "exports"
    assert sorted(os.listdir(ex)) == sorted([CURRENT, version])
    assert (ex / CURRENT).read_text(encoding="utf-8") == version + "\n"
    assert current_version(device_root) == version and current_export(device_root) == ex / version
    manifest = verify_export(ex / version)
    assert manifest["version"] == version and manifest["state"] == "exact" and manifest["formats"] == ["onnx"]
    assert sorted(manifest["files"]) == [ONNX_FILE, TOKENIZER_FILE]
    assert manifest["files"][TOKENIZER_FILE] == sha256_file(tokenizer_path)
    assert onnx_metadata((ex / version / ONNX_FILE).read_bytes())["version"] == version
    assert not [p for p in ex.rglob("*") if p.name.startswith(".tmp-")]


def test_republishing_the_live_version_rewrites_nothing_and_cleans_up(device_root, make_model, tokenizer_path,
                                                                     labels):
    model = make_model(seed=0)
    version = publish(device_root, model, tokenizer_path, labels, "exact")
    ex = device_root / "exports"
    before = _snapshot(ex)
    (ex / ".tmp-0123456789abcdef.999").mkdir()  # an interrupted publish
    (ex / ".tmp-0123456789abcdef.999" / ONNX_FILE).write_bytes(b"half")
    (ex / "fedcba9876543210").mkdir()  # an orphan version (crash between rename and CURRENT)
    (ex / f".tmp-{CURRENT}.999").write_bytes(b"fedcba9876543210\n")  # an interrupted CURRENT swap
    assert publish(device_root, model, tokenizer_path, labels, "exact") == version
    assert _snapshot(ex) == before
    assert _entries(ex) == sorted([CURRENT, version] + [f"{version}/{f}" for f in (MANIFEST, ONNX_FILE,
                                                                                   TOKENIZER_FILE)])


def test_a_new_version_replaces_and_deletes_the_old(device_root, make_model, tokenizer_path, labels):
    first = publish(device_root, make_model(seed=0), tokenizer_path, labels, "exact")
    second = publish(device_root, make_model(seed=1), tokenizer_path, labels, "approximate")
    assert first != second
    assert sorted(os.listdir(device_root / "exports")) == sorted([CURRENT, second])
    assert verify_export(current_export(device_root))["state"] == "approximate"


def test_a_tampered_live_version_is_rebuilt(device_root, make_model, tokenizer_path, labels):
    model = make_model(seed=0)
    version = publish(device_root, model, tokenizer_path, labels, "exact")
    onnx_path = device_root / "exports" / version / ONNX_FILE
    good = onnx_path.read_bytes()
    onnx_path.write_bytes(good[:100])
    with pytest.raises(CorruptFile, match="checksum mismatch"):
        verify_export(onnx_path.parent)
    assert publish(device_root, model, tokenizer_path, labels, "exact") == version
    assert onnx_path.read_bytes() == good and verify_export(onnx_path.parent)


def test_publish_with_coreml_lists_every_package_file(device_root, make_model, tokenizer_path, labels):
    model = make_model(seed=2)
    onnx_only = publish(device_root, model, tokenizer_path, labels, "exact")
    version = publish(device_root, model, tokenizer_path, labels, "exact", formats=("coreml", "onnx"))
    assert version == onnx_only  # same weights, same version; the directory now also holds CoreML
    manifest = verify_export(device_root / "exports" / version)
    assert manifest["formats"] == ["onnx", "coreml"]
    pkg_files = [f for f in manifest["files"] if f.startswith(COREML_DIR + "/")]
    assert f"{COREML_DIR}/Manifest.json" in pkg_files and any(f.endswith("weight.bin") for f in pkg_files)
    assert sorted(os.listdir(device_root / "exports")) == sorted([CURRENT, version])


def test_bad_input_changes_nothing(device_root, make_model, tokenizer_path, labels, tmp_path):
    model = make_model(seed=0)
    version = publish(device_root, model, tokenizer_path, labels, "exact")
    before = _snapshot(device_root)
    other = make_model(seed=5)
    cases = [
        (BadInput, "state", dict(state="forgotten")),
        (BadInput, "labels", dict(labels=labels[:10])),
        (BadInput, "include 'onnx'", dict(formats=("coreml",))),
        (BadInput, "formats must be distinct", dict(formats=("onnx", "tflite"))),
        (BadInput, "cannot read the tokenizer", dict(tokenizer_path=tmp_path / "missing.model")),
        (BadInput, "oos_threshold", dict(oos_threshold=-0.1)),
    ]
    for error, message, change in cases:
        args = dict(device_root=device_root, model=other, tokenizer_path=tokenizer_path, labels=labels,
                    state="exact") | change
        with pytest.raises(error, match=message):
            publish(**args)
    with pytest.raises(DeviceNotFound):
        publish(tmp_path / "not-a-device", other, tokenizer_path, labels, "exact")
    assert _snapshot(device_root) == before and current_version(device_root) == version
    assert not (tmp_path / "not-a-device").exists()


def test_a_corrupt_current_file_is_reported(device_root, make_model, tokenizer_path, labels):
    assert current_export(device_root) is None
    publish(device_root, make_model(seed=0), tokenizer_path, labels, "exact")
    (device_root / "exports" / CURRENT).write_text("../../etc\n", encoding="utf-8")
    with pytest.raises(CorruptFile, match="not an export version"):
        current_export(device_root)


def test_a_reader_never_sees_a_half_written_or_mixed_version(device_root, make_model, tokenizer_path, labels,
                                                            tmp_path):
    models = [make_model(seed=s) for s in (0, 1, 2)]
    publish(device_root, models[0], tokenizer_path, labels, "exact")
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    reader = subprocess.Popen([sys.executable, "-c", READER, str(device_root), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                              env=env)
    try:
        assert reader.stdout.readline().strip() == "ready"
        published, i, until = [], 1, time.monotonic() + 2.0  # publishing takes ms: keep the reader busy
        while i < 7 or time.monotonic() < until:
            published.append(publish(device_root, models[i % 3], tokenizer_path, labels, "exact"))
            i += 1
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == []
    assert result["loads"] >= 5 and len(result["seen"]) >= 2 and set(result["seen"]) <= set(published)
    assert sorted(os.listdir(device_root / "exports")) == sorted([CURRENT, published[-1]])
