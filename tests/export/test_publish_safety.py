"""Publication under crashes and unwritable files: the live path always names a complete export (atomic
exchange), and a publish that cannot finish leaves exactly one version on disk (pre-flight + rollback)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from assistant_forget.core import crashpoints, fsio
from assistant_forget.core.tensorfile import save_tensors
from assistant_forget.export import publish as pub
from assistant_forget.core.errors import CorruptFile, ForgetError
from assistant_forget.export.publish import (COREML_DIR, CURRENT, check_writable, current_export, current_version,
                                      exchange_dirs, publish, verify_export)
from assistant_forget.export.runtime import load_current

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[2]
PROBE = "book a table for two"

CHILD = r"""
import json, sys
from assistant_forget.core.tensorfile import load_tensors
from assistant_forget.export.publish import publish
from assistant_forget.families.assistant.model import AssistantModel, ModelConfig
weights, config, root, tokenizer, labels, formats = sys.argv[1:7]
model = AssistantModel(ModelConfig(**json.loads(config)))
model.load_state_dict(load_tensors(weights, None))
publish(root, model.eval(), tokenizer, labels.split("|"), "exact", formats=tuple(formats.split(",")))
print("finished")
"""


@contextmanager
def attr(path: Path, flag: str) -> Iterator[None]:
    """chattr +flag on `path` for the block (as root it binds root too); always removed again."""
    subprocess.run(["chattr", f"+{flag}", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", f"-{flag}", str(path)], check=True)


def _entries(root: Path) -> list[str]:
    return sorted(os.listdir(root / "exports"))


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file()}


def _live_is_loadable(root: Path) -> str:
    rt = load_current(root)
    verify_export(rt.path)
    rt.intent(PROBE)
    assert rt.version == rt.path.name
    return rt.version


def _killed_publish(tmp_path: Path, root: Path, model, tokenizer_path: Path, labels, formats: str,
                    crash_at: str | None) -> subprocess.CompletedProcess:
    """Publish in a child process armed to SIGKILL itself at `crash_at` (AF_CRASH_AT)."""
    weights = tmp_path / "model.safetensors"
    save_tensors(weights, model.state_dict())
    env = {k: v for k, v in os.environ.items() if k not in (crashpoints.ENV_AT, crashpoints.ENV_LOG)}
    env["PYTHONPATH"] = str(REPO)
    if crash_at:
        env[crashpoints.ENV_AT] = crash_at
    return subprocess.run([sys.executable, "-c", CHILD, str(weights), json.dumps(model.cfg.to_dict()), str(root),
                           str(tokenizer_path), "|".join(labels), formats], env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=300)


# -- the atomic exchange ------------------------------------------------------------------------------

def test_exchange_dirs_swaps_two_directories(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_bytes(b"1")
    (b / "y").write_bytes(b"2")
    assert exchange_dirs(a, b) is True  # Linux with renameat2 (glibc >= 2.28, ext4/tmpfs/overlayfs)
    assert os.listdir(a) == ["y"] and os.listdir(b) == ["x"]
    with pytest.raises(FileNotFoundError):
        exchange_dirs(a, tmp_path / "missing")  # a real error is raised, not taken for "unsupported"


def test_the_live_path_holds_a_complete_export_at_every_step_of_a_format_change(
        device_root, make_model, tokenizer_path, labels, monkeypatch) -> None:
    """At every crash point of a re-export of the live version with CoreML added, the app can load it.

    The old code moved the live directory aside first (`publish.old_moved_aside`): CURRENT named nothing.
    """
    model = make_model(seed=2)
    version = publish(device_root, model, tokenizer_path, labels, "exact")
    seen: list[str] = []
    real_hit = crashpoints.hit

    def check(name: str) -> None:
        seen.append(name)
        assert _live_is_loadable(device_root) == version, name
        real_hit(name)

    monkeypatch.setattr(crashpoints, "hit", check)
    assert publish(device_root, model, tokenizer_path, labels, "exact", formats=("onnx", "coreml")) == version
    assert "publish.exchanged" in seen
    assert verify_export(current_export(device_root))["formats"] == ["onnx", "coreml"]
    assert _entries(device_root) == sorted([CURRENT, version])


@pytest.mark.parametrize("point", ["publish.version_built", "publish.exchanged", "publish.version_renamed"])
def test_a_kill_around_the_exchange_leaves_a_loadable_live_export(tmp_path, device_root, make_model,
                                                                  tokenizer_path, labels, point) -> None:
    model = make_model(seed=2)
    version = publish(device_root, model, tokenizer_path, labels, "exact")
    res = _killed_publish(tmp_path, device_root, model, tokenizer_path, labels, "onnx,coreml", point)
    assert res.returncode == -9, res.stderr
    assert _live_is_loadable(device_root) == version  # before or after the exchange: one complete export
    formats = verify_export(current_export(device_root))["formats"]
    assert formats == (["onnx"] if point == "publish.version_built" else ["onnx", "coreml"])
    # the next publish (recovery does one) removes what the kill left behind
    assert publish(device_root, model, tokenizer_path, labels, "exact", formats=("onnx", "coreml")) == version
    assert _entries(device_root) == sorted([CURRENT, version])
    assert (device_root / "exports" / version / COREML_DIR).is_dir()


def test_without_an_exchange_the_two_rename_fallback_still_publishes(device_root, make_model, tokenizer_path,
                                                                     labels, monkeypatch) -> None:
    model = make_model(seed=2)
    version = publish(device_root, model, tokenizer_path, labels, "exact")
    monkeypatch.setattr(pub, "exchange_dirs", lambda a, b: False)  # another OS, a file system without it
    assert publish(device_root, model, tokenizer_path, labels, "exact", formats=("onnx", "coreml")) == version
    assert verify_export(current_export(device_root))["formats"] == ["onnx", "coreml"]
    assert _entries(device_root) == sorted([CURRENT, version])


def test_unsupported_exchange_errors_mean_fallback(tmp_path: Path, monkeypatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()

    def fails(err):
        def fn(*args):
            import ctypes
            ctypes.set_errno(err)
            return -1
        return fn

    for err in (errno.ENOSYS, errno.EINVAL):  # old kernel; file system without RENAME_EXCHANGE
        monkeypatch.setattr(fsio, "_exchange_fn", ("renameat2", fails(err)))
        assert exchange_dirs(a, b) is False
    monkeypatch.setattr(fsio, "_exchange_fn", (None, None))  # no such function in the C library
    assert exchange_dirs(a, b) is False


# -- never two versions side by side ------------------------------------------------------------------

def test_an_immutable_current_leaves_one_version_and_the_old_one_live(device_root, make_model, tokenizer_path,
                                                                      labels) -> None:
    """The old code renamed the new version in, then failed on CURRENT: both versions stayed on disk."""
    old = publish(device_root, make_model(seed=0), tokenizer_path, labels, "exact")
    before = _snapshot(device_root)
    cur = device_root / "exports" / CURRENT
    with attr(cur, "i"):
        with pytest.raises(ForgetError) as e:
            publish(device_root, make_model(seed=1), tokenizer_path, labels, "approximate")
        assert type(e.value) is ForgetError and e.value.exit_code == 2
        msg = str(e.value)
        assert "\n" not in msg and str(cur) in msg and "nothing was changed" in msg
        assert _entries(device_root) == sorted([CURRENT, old])
        assert current_version(device_root) == old and _live_is_loadable(device_root) == old
    assert _snapshot(device_root) == before


def test_a_failure_after_the_rename_rolls_the_new_version_back(device_root, make_model, tokenizer_path, labels,
                                                               monkeypatch) -> None:
    """Past the pre-flight (skipped here), an immutable CURRENT or a full disk still leaves one version."""
    old = publish(device_root, make_model(seed=0), tokenizer_path, labels, "exact")
    monkeypatch.setattr(pub, "check_writable", lambda root: None)
    cur = device_root / "exports" / CURRENT
    with attr(cur, "i"):
        with pytest.raises(PermissionError):
            publish(device_root, make_model(seed=1), tokenizer_path, labels, "approximate")
        assert _entries(device_root) == sorted([CURRENT, old]) and current_version(device_root) == old

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pub, "atomic_write_bytes", disk_full)
    with pytest.raises(OSError, match="No space left"):
        publish(device_root, make_model(seed=3), tokenizer_path, labels, "approximate")
    assert _entries(device_root) == sorted([CURRENT, old]) and _live_is_loadable(device_root) == old


def test_a_current_that_is_a_directory_is_a_corrupt_file(device_root, make_model, tokenizer_path, labels) -> None:
    publish(device_root, make_model(seed=0), tokenizer_path, labels, "exact")
    cur = device_root / "exports" / CURRENT
    cur.unlink()
    cur.mkdir()
    before = _snapshot(device_root)
    for call in (lambda: check_writable(device_root),
                 lambda: publish(device_root, make_model(seed=1), tokenizer_path, labels, "exact")):
        with pytest.raises(CorruptFile) as e:
            call()
        msg = str(e.value)
        assert e.value.exit_code == 4 and "\n" not in msg and str(cur) in msg and "directory" in msg
        assert "nothing was changed" in msg
    with pytest.raises(CorruptFile, match="a directory, not a file"):
        current_version(device_root)
    assert _snapshot(device_root) == before and cur.is_dir()


@pytest.mark.parametrize("case", ["exports-immutable", "current-append-only", "live-version-immutable",
                                  "live-file-immutable", "leftover-immutable"])
def test_what_a_publish_cannot_write_is_refused_before_anything_changes(device_root, make_model, tokenizer_path,
                                                                        labels, case) -> None:
    old = publish(device_root, make_model(seed=0), tokenizer_path, labels, "exact")
    ex = device_root / "exports"
    if case == "leftover-immutable":
        (ex / ".tmp-CURRENT.4242").write_bytes(b"0123456789abcdef\n")  # an interrupted swap
    target, flag = {"exports-immutable": (ex, "i"), "current-append-only": (ex / CURRENT, "a"),
                    "live-version-immutable": (ex / old, "i"), "live-file-immutable": (ex / old / "model.onnx", "i"),
                    "leftover-immutable": (ex / ".tmp-CURRENT.4242", "i")}[case]
    before = _snapshot(device_root)
    with attr(target, flag):
        with pytest.raises(ForgetError) as e:
            check_writable(device_root)
        assert type(e.value) is ForgetError and str(target) in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(ForgetError):
            publish(device_root, make_model(seed=1), tokenizer_path, labels, "approximate")
        assert current_version(device_root) == old and old in _entries(device_root)
        assert _snapshot(device_root) == before
    if case == "leftover-immutable":
        (ex / ".tmp-CURRENT.4242").unlink()
    assert publish(device_root, make_model(seed=1), tokenizer_path, labels, "approximate") != old  # writable again
    assert len(_entries(device_root)) == 2


def test_symlinks_and_wrong_types_are_refused(device_root, make_model, tokenizer_path, labels, tmp_path) -> None:
    check_writable(device_root)  # nothing published yet: the device directory must take the exports folder
    old = publish(device_root, make_model(seed=0), tokenizer_path, labels, "exact")
    cur = device_root / "exports" / CURRENT
    cur.unlink()
    (tmp_path / "elsewhere").write_bytes((old + "\n").encode("utf-8"))
    cur.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CorruptFile, match="symbolic link"):
        check_writable(device_root)
    with pytest.raises(CorruptFile, match="symbolic link"):
        current_version(device_root)
    cur.unlink()
    ex = device_root / "exports"
    ex.rename(tmp_path / "real-exports")
    ex.symlink_to(tmp_path / "real-exports")
    with pytest.raises(CorruptFile, match="symbolic link"):
        publish(device_root, make_model(seed=1), tokenizer_path, labels, "exact")
    assert sorted(os.listdir(tmp_path / "real-exports")) == [old]  # nothing written through the link


def test_a_current_without_write_permission_is_still_replaceable(device_root, make_model, tokenizer_path,
                                                                 labels) -> None:
    """Only its mode forbids writing (EACCES for a user): the atomic rename replaces it, so it passes."""
    publish(device_root, make_model(seed=0), tokenizer_path, labels, "exact")
    cur = device_root / "exports" / CURRENT
    cur.chmod(0o444)
    check_writable(device_root)
    new = publish(device_root, make_model(seed=1), tokenizer_path, labels, "exact")
    assert current_version(device_root) == new and _entries(device_root) == sorted([CURRENT, new])


def test_a_current_fifo_and_an_exports_file_are_corrupt_files_not_hangs(device_root, make_model, tokenizer_path,
                                                                        labels) -> None:
    import threading

    publish(device_root, make_model(seed=0), tokenizer_path, labels, "exact")
    cur = device_root / "exports" / CURRENT
    cur.unlink()
    os.mkfifo(cur)  # reading it would block forever
    result: list[BaseException] = []

    def read() -> None:
        for call in (lambda: current_version(device_root), lambda: check_writable(device_root)):
            try:
                call()
            except BaseException as e:  # noqa: BLE001 - collected for the asserts
                result.append(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "reading a FIFO named CURRENT blocked"
    assert [type(e) for e in result] == [CorruptFile, CorruptFile] and all("a FIFO" in str(e) for e in result)
    shutil.rmtree(device_root / "exports")
    (device_root / "exports").write_bytes(b"not a folder")
    with pytest.raises(CorruptFile, match=r"exports: not a directory; move it away.*nothing was changed"):
        check_writable(device_root)
