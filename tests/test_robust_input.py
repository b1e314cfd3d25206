"""Adversarial input beyond the bad-input corpus (issue 15): spellings that must match, read-only media, a
tampered log schema, and the CLI's promise of one clear line on stderr whatever goes wrong.

Each test fails on the code before the fix: `--contains` missed spellings, `status` failed on a read-only
device, a log with a trigger or without its table was accepted or reported as bad input, errors spanned
several lines or printed "error: : Broken pipe", a bug printed a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from assistant_forget.device import store as store_module
from assistant_forget.cli import BROKEN_PIPE, INTERNAL_ERROR, main
from assistant_forget.core.errors import BadInput, CorruptFile, ForgetError
from assistant_forget.device.localtime import localize
from assistant_forget.device.store import LogStore, Utterance
from assistant_forget.device.utterance import fold, match_key
from devkit import make_device, persona_log, unwritable
from scan import find_texts, snapshot

SCRIPT = Path(sys.executable).with_name("assistant-forget")


def utt(uid: str, text: str, timestamp: str = "2026-03-03T12:00:00-05:00", tz: str = "America/New_York") -> Utterance:
    c = localize(timestamp, tz)
    return Utterance(uid, text, "alarm", c.utc, c.tz, c.local_date, "test")


def tree(root: Path) -> dict[str, str]:
    """Every path under `root` with its hash ('dir' for directories): equal means nothing changed or appeared."""
    return {**{str(p.relative_to(root)): "dir" for p in root.rglob("*") if p.is_dir()}, **snapshot(root)}


@contextmanager
def read_only_mount(source: Path, target: Path) -> Iterator[Path]:
    """A read-only bind mount of `source` at `target` (root only; skipped where mounting is not allowed)."""
    target.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    r = subprocess.run(f"mount --bind '{source}' '{target}' && mount -o remount,ro,bind '{target}'", shell=True,
                       capture_output=True, text=True, encoding="utf-8")
    if r.returncode != 0:
        subprocess.run(["umount", str(target)], capture_output=True)
        pytest.skip(f"cannot make a read-only bind mount here: {r.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained device (import only: fast) with a few days of a persona's log."""
    return make_device(tmp_path_factory.mktemp("robust") / "dev", persona_log(3, mean=4.0), train=False)


def copy_of(device: Path, tmp_path: Path, name: str = "dev") -> Path:
    return Path(shutil.copytree(device, tmp_path / name))


# -- 1. --contains matches every spelling ---------------------------------------------------------

SPELLINGS = {
    "nbsp": "call dr\u00a0alvarez at noon",
    "double-space": "call Dr  Alvarez at noon",
    "tab": "call dr\talvarez",
    "newline": "call Dr\nAlvarez",
    "ideographic-space": "call dr\u3000alvarez",
    "zwsp-between": "call dr\u200b alvarez",
    "zwsp-instead-of-space": "call dr\u200balvarez",
    "zwsp-inside": "call dr alva\u200brez",
    "zwj-inside": "call d\u200dr alvarez",
    "zwnj-inside": "call dr al\u200cvarez",
    "soft-hyphen": "call dr alva\u00adrez",
    "bom": "call \ufeffdr alvarez",
    "word-joiner": "call dr\u2060 alvarez",
    "bidi-marks": "call \u202adr alvarez\u202c \u200e",
    "variation-selector": "call dr alvare\ufe0fz",
    "fullwidth": "ｃａｌｌ ｄｒ ａｌｖａｒｅｚ",
    "fullwidth-upper": "ＤＲ ＡＬＶＡＲＥＺ",
    "uppercase": "CALL DR ALVAREZ",
    "accented": "call Dr Álvarez",
    "decomposed-accent": "call Dr A\u0301lvarez",
    "math-bold": "call 𝐝𝐫 𝐚𝐥𝐯𝐚𝐫𝐞𝐳",
    "circled": "call ⓓⓡ ⓐⓛⓥⓐⓡⓔⓩ",
}


@pytest.mark.parametrize("kind", SPELLINGS)
def test_contains_matches_every_spelling_of_a_name(kind: str, tmp_path: Path) -> None:
    db = tmp_path / "logs.sqlite"
    with LogStore(db) as s:
        s.add([utt("hit", SPELLINGS[kind]), utt("miss", "call dr alvares at noon", "2026-03-03T13:00:00-05:00")])
        for needle in ("dr alvarez", "Dr. Alvarez".replace(".", ""), "DR ALVAREZ", "ｄｒ ａｌｖａｒｅｚ",
                       "dr\u00a0alvarez", "dr alvarez\u200b", " dr   alvarez "):
            assert [u.id for u in s.matching(needle)] == ["hit"], (kind, needle)
        assert s.delete_matching("dr alvarez") == 1
        assert [u.id for u in s.all()] == ["miss"]
    assert find_texts(tmp_path, [SPELLINGS[kind]]) == {}


@pytest.mark.parametrize("text, needle", [
    ("İSTANBUL'a uçuş", "istanbul"), ("istanbul trip", "İSTANBUL"), ("ISTANBUL", "ıstanbul"),
    ("Zoé's birthday", "zoe"), ("ZOE", "Zoé"), ("Straße 5", "STRASSE"), ("ﬁnd the ﬁle", "find the file"),
    ("Ἀθῆναι", "αθηναι"), ("МОСКВА", "москва"), ("Ёлка", "елка"), ("مُحَمَّد", "محمد"), ("pin 4 8 1 9 3", "48193"),
])
def test_contains_ignores_case_accents_and_word_breaks_in_any_script(text: str, needle: str, tmp_path: Path) -> None:
    with LogStore(tmp_path / "logs.sqlite") as s:
        s.add([utt("a", text)])
        assert [u.id for u in s.matching(needle)] == ["a"]


def test_marks_that_make_another_letter_still_count(tmp_path: Path) -> None:
    """Only accents are ignored: Japanese voiced marks, Indic vowel signs keep words apart."""
    with LogStore(tmp_path / "logs.sqlite") as s:
        s.add([utt("a", "がっこう"), utt("b", "कमल", "2026-03-03T13:00:00-05:00")])
        assert [u.id for u in s.matching("かっこう")] == []
        assert [u.id for u in s.matching("कमला")] == []
        assert [u.id for u in s.matching("がっこう")] == ["a"]


def test_fold_is_one_idempotent_normal_form() -> None:
    samples = list(SPELLINGS.values()) + ["İSTANBUL", "ǅemal", "ﬃ", "Ⅻ", "㍿", "e\u0301\u0301", "\u200b"]
    for s in samples:
        assert fold(fold(s)) == fold(s) and match_key(match_key(s)) == match_key(s), s
        assert " " not in match_key(s) and fold(s) == fold(s).strip() and "  " not in fold(s)
    assert all("dralvarez" in match_key(s) for s in SPELLINGS.values())


def test_a_phrase_of_only_invisible_characters_or_marks_is_refused(tmp_path: Path) -> None:
    with LogStore(tmp_path / "logs.sqlite") as s:
        s.add([utt("a", "anything")])
        for needle in ("\u200b", "\u0301\u0301", "\ufeff \u2060", "\u00ad"):
            with pytest.raises(BadInput, match="would match every utterance"):
                s.matching(needle)
            with pytest.raises(BadInput, match="would match every utterance"):
                s.delete_matching(needle)
        assert s.count() == 1


def test_dry_run_lists_what_a_phrase_matched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [{"text": t, "intent": "calendar", "timestamp": f"2026-02-0{d}T10:00:00-05:00", "tz": "America/New_York",
              "id": f"m{d}"} for d, t in [(2, "lunch with Dr\u00a0Alvarez"), (3, "ｄｒ ａｌｖａｒｅｚ\u200b called"),
                                          (4, "dinner with mum")]]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    dev = tmp_path / "dev"
    assert main(["import", str(src), "--device", str(dev)]) == 0
    capsys.readouterr()
    before = tree(dev)
    assert main(["forget", "--device", str(dev), "--contains", "dr alvarez", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would forget 2 utterance(s) on 2 day(s)")
    assert "  2026-02-02  m2  lunch with Dr\u00a0Alvarez" in out
    assert "  2026-02-03  m3  ｄｒ ａｌｖａｒｅｚ\\u200b called" in out  # invisible characters shown, escaped
    assert "mum" not in out and tree(dev) == before
    assert main(["forget", "--device", str(dev), "--contains", "dr alvarez", "--dry-run", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert sorted(m["id"] for m in res["matched"]) == ["m2", "m3"]


def test_dry_run_text_output_works_without_the_matched_key(device: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from assistant_forget import api

    plan = {"dry_run": True, "utterances": 1, "days": {"2026-02-02": 1}, "mode": "exact", "trained_days": [],
            "exact_replay_days": 0}
    monkeypatch.setattr(api, "forget", lambda *a, **k: dict(plan))
    assert main(["forget", "--device", str(device), "--contains", "x", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  2026-02-02     1"]
    monkeypatch.setattr(api, "forget", lambda *a, **k: {**plan, "matched": [{"id": "u1", "day": "2026-02-02",
                                                                             "text": "a\nb\x1b[2J"}]})
    assert main(["forget", "--device", str(device), "--contains", "x", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == ["matched (1):", "  2026-02-02  u1  a\\u000ab\\u001b[2J"]


# -- 2. read-only commands write nothing, also on read-only media ---------------------------------

def test_readonly_store_on_an_unwritable_directory_is_immutable_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "d" / "logs.sqlite"
    db.parent.mkdir()
    with LogStore(db) as s:
        s.add([utt("a", "hello there")])
    before = tree(db.parent)
    with unwritable(db.parent):
        with LogStore(db, readonly=True) as s:
            assert s.immutable and s.day_counts() == {"2026-03-03": 1} and [u.id for u in s.matching("HELLO")] == ["a"]
            with pytest.raises(ForgetError, match="read-only"):
                s.delete_day("2026-03-03")
        assert tree(db.parent) == before
    with LogStore(db, readonly=True) as s:  # writable again: shares the writer's WAL, leaves nothing behind
        assert not s.immutable and s.count() == 1
    assert tree(db.parent) == before


def test_readonly_store_reads_a_crashed_writers_wal_on_read_only_media(tmp_path: Path) -> None:
    """Committed rows still in a -wal (the writer died before folding it in) are read, not silently dropped."""
    live = tmp_path / "live" / "logs.sqlite"
    live.parent.mkdir()
    with LogStore(live) as s:
        s.add([utt("a", "first")])
    conn = sqlite3.connect(live)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    with LogStore(live) as s:  # a second writer commits into the WAL while `conn` keeps it from being folded
        s._conn.execute("PRAGMA wal_autocheckpoint = 0")
        s.add([utt("b", "second", "2026-03-04T12:00:00-05:00")])
        conn.execute("SELECT count(*) FROM utterances").fetchone()
        crashed = Path(shutil.copytree(live.parent, tmp_path / "crashed"))  # the files as a crash leaves them
    conn.close()
    assert (crashed / "logs.sqlite-wal").stat().st_size > 0
    no_shm = Path(shutil.copytree(crashed, tmp_path / "no-shm"))
    (no_shm / "logs.sqlite-shm").unlink()
    for folder in (crashed, no_shm):
        before = tree(folder)
        with unwritable(folder):
            if folder == crashed:
                with LogStore(folder / "logs.sqlite", readonly=True) as s:
                    assert not s.immutable and s.day_counts() == {"2026-03-03": 1, "2026-03-04": 1}
            else:
                with pytest.raises(ForgetError, match="write-ahead log logs.sqlite-wal holds changes that were never "
                                                      "folded in .* open the device once where it is writable"):
                    LogStore(folder / "logs.sqlite", readonly=True)
        assert tree(folder) == before


@pytest.mark.parametrize("how", ["immutable files", "read-only mount"])
def test_read_only_commands_work_on_a_read_only_device_and_write_nothing(how: str, device: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    dev = copy_of(device, tmp_path)
    expected = {}
    readers = (["status", "--json"], ["history", "--json"], ["forget", "--date", "2026-02-03", "--dry-run", "--json"])
    for argv in readers:
        assert main([argv[0], "--device", str(dev), *argv[1:]]) == 0
        expected[argv[0]] = json.loads(capsys.readouterr().out)
    before = tree(dev)
    guard = unwritable(dev) if how == "immutable files" else read_only_mount(dev, tmp_path / "ro")
    with guard as mounted:
        root = mounted if how == "read-only mount" else dev
        for argv in readers:
            code = main([argv[0], "--device", str(root), *argv[1:]])
            out, err = capsys.readouterr()
            assert code == 0 and err == "", (argv, err)
            got = json.loads(out)
            if argv[0] == "status":
                got["device"] = str(dev)
            assert got == expected[argv[0]]
        assert tree(dev) == before
    assert tree(dev) == before


# -- 3. the log's schema is checked on open -------------------------------------------------------

def _tamper(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(sql)
    conn.close()


TAMPERS = {
    "no-table": ("DROP TABLE utterances;", r"no table 'utterances' and no index 'utterances_by_day' \(schema"),
    "trigger": ("CREATE TABLE IF NOT EXISTS kept (text TEXT); CREATE TRIGGER x AFTER DELETE ON utterances "
                "BEGIN INSERT INTO kept VALUES (old.text); END;",
                r"unexpected table 'kept' and an unexpected trigger 'x'"),
    "temp-looking-trigger": ("CREATE TRIGGER t BEFORE DELETE ON utterances BEGIN SELECT 1; END;",
                             r"unexpected trigger 't'"),
    "extra-table": ("CREATE TABLE notes (x);", r"unexpected table 'notes'"),
    "view": ("CREATE VIEW v AS SELECT text FROM utterances;", r"unexpected view 'v'"),
    "index": ("CREATE INDEX by_text ON utterances (text);", r"unexpected index 'by_text'"),
    "changed-table": ("ALTER TABLE utterances ADD COLUMN copy TEXT;", r"a changed table 'utterances'"),
    "no-index": ("DROP INDEX utterances_by_day;", r"no index 'utterances_by_day'"),
}


@pytest.mark.parametrize("kind", TAMPERS)
def test_a_tampered_schema_is_a_corrupt_file_named_before_anything_runs(kind: str, tmp_path: Path) -> None:
    db = tmp_path / "logs.sqlite"
    with LogStore(db) as s:
        s.add([utt("a", "secret words")])
    sql, says = TAMPERS[kind]
    _tamper(db, sql)
    before = tree(tmp_path)
    for readonly in (True, False):
        with pytest.raises(CorruptFile, match=rf"^schema of {db} has .*{says}.*the log database was modified "
                                              r"outside assistant-forget") as e:
            LogStore(db, readonly=readonly)
        assert "\n" not in str(e.value)
        assert tree(tmp_path) == before


def test_the_trigger_never_fires_and_the_cli_exits_4(device: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    dev = copy_of(device, tmp_path)
    _tamper(dev / "logs.sqlite", "CREATE TABLE kept (text TEXT); CREATE TRIGGER copy_deleted AFTER DELETE ON "
                                 "utterances BEGIN INSERT INTO kept VALUES (old.text); END;")
    before = tree(dev)
    for argv in (["status"], ["forget", "--date", "2026-02-03"], ["forget", "--contains", "a"], ["train"]):
        assert main([argv[0], "--device", str(dev), *argv[1:]]) == 4
        err = capsys.readouterr().err
        assert err.startswith(f"error: schema of {dev / 'logs.sqlite'} has ") and "trigger 'copy_deleted'" in err
        assert err.count("\n") == 1
    assert tree(dev) == before
    conn = sqlite3.connect(dev / "logs.sqlite")
    assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    conn.close()


def test_a_store_without_its_table_exits_4_naming_the_file(device: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    dev = copy_of(device, tmp_path)
    _tamper(dev / "logs.sqlite", "DROP TABLE utterances;")
    before = tree(dev)
    for argv in (["status"], ["forget", "--date", "2026-02-03"], ["history"]):
        code = main([argv[0], "--device", str(dev), *argv[1:]])
        err = capsys.readouterr().err
        if argv[0] == "history":  # reads receipts only
            continue
        assert code == 4 and f"{dev / 'logs.sqlite'} has no table 'utterances'" in err, err
    assert tree(dev) == before


def test_sqlite_bookkeeping_tables_are_accepted(tmp_path: Path) -> None:
    db = tmp_path / "logs.sqlite"
    with LogStore(db) as s:
        s.add([utt("a", "hello")])
    _tamper(db, "ANALYZE;")  # creates sqlite_stat1
    with LogStore(db, readonly=True) as s:
        assert s.count() == 1
    with LogStore(db) as s:
        assert s.delete_day("2026-03-03") == 1


def test_a_v0_database_holding_tables_is_refused_not_migrated(tmp_path: Path) -> None:
    db = tmp_path / "logs.sqlite"
    _tamper(db, "CREATE TABLE utterances (id TEXT); CREATE TRIGGER x AFTER DELETE ON utterances BEGIN SELECT 1; END;")
    with pytest.raises(CorruptFile, match=r"unexpected table 'utterances'.*schema version 0"):
        LogStore(db)


def test_a_registered_migration_defines_the_expected_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "logs.sqlite"
    with LogStore(db) as s:
        s.add([utt("a", "hello")])
    monkeypatch.setattr(store_module, "MIGRATIONS", list(store_module.MIGRATIONS))
    store_module.migration(lambda conn: conn.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)"))
    with LogStore(db) as s:  # v1 checked, then migrated to v2
        assert s.schema_version == 2
    with LogStore(db, readonly=True) as s:  # v2 with its meta table is exactly what is expected
        assert s.count() == 1
    _tamper(db, "CREATE TABLE more (x);")
    with pytest.raises(CorruptFile, match="unexpected table 'more'"):
        LogStore(db, readonly=True)


# -- 4. one clean line on stderr, whatever goes wrong ----------------------------------------------

def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *argv], capture_output=True, timeout=120, **kw)


def test_a_closed_stdout_exits_quietly_like_a_unix_tool(device: Path) -> None:
    """`status | head -1`: no 'error: : Broken pipe', no traceback; exit 141 as if killed by SIGPIPE."""
    for argv in (["status"], ["status", "--json"], ["history"], ["forget", "--date", "2026-02-03", "--dry-run"]):
        proc = subprocess.Popen([str(SCRIPT), argv[0], "--device", str(device), *argv[1:]], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the command prints
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == BROKEN_PIPE and err == b"", (argv, err)
    r = subprocess.run(f"'{SCRIPT}' status --device '{device}' | head -1", shell=True, capture_output=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.startswith(b"device ") and r.stderr == b""


def test_a_broken_pipe_during_the_final_flush_is_caught(device: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    class Closed:
        def write(self, s: str) -> int:
            return len(s)

        def flush(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["status", "--device", str(device)]) == BROKEN_PIPE
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("error, says", [
    (OSError(errno.ENOSPC, "No space left on device"),
     r"^error: status in {dev}: No space left on device; free space on the file system holding {dev} "),
    (OSError(errno.ENOSPC, "No space left on device", "/x/receipts.jsonl"),
     r"^error: /x/receipts.jsonl: No space left on device; free space on the file system holding {dev} "),
    (OSError(errno.EROFS, "Read-only file system", "/x/a", None, "/x/b"),
     r"^error: /x/a -> /x/b: Read-only file system; make the device directory and its files writable"),
    (OSError(errno.EIO, "Input/output error"), r"^error: status in {dev}: Input/output error; check the device"),
])
def test_a_file_system_refusal_names_the_file_or_the_device(error: OSError, says: str, device: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from assistant_forget.runner import status

    def fail(root: Path) -> dict:
        raise error

    monkeypatch.setattr(status, "device_status", fail)
    assert main(["status", "--device", str(device)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ": :" not in err
    assert __import__("re").search(says.format(dev=device), err), err


def test_a_full_disk_during_import_names_the_file_and_leaves_no_device(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        src = tmp_path / "big.jsonl"
        src.write_text("\n".join(json.dumps({"text": f"remind me about item {i} " + "x" * 500, "intent": "reminder",
                                             "timestamp": "2026-02-03T07:00:00-05:00", "tz": "America/New_York"})
                                 for i in range(300)) + "\n", encoding="utf-8")
        assert main(["import", str(src), "--device", str(small / "dev")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "logs.sqlite" in err and "full" in err and "free space" in err, err
        assert not (small / "dev").exists()  # the half-created device is removed
        with open(small / "fill", "wb", buffering=0) as f:  # now even device.json cannot be written
            try:
                while f.write(b"\0" * 1024):
                    pass
            except OSError:
                pass
        assert main(["import", str(src), "--device", str(small / "dev2")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ": :" not in err and "dev2" in err and "No space left" in err, err
        assert not (small / "dev2").exists()
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_an_unexpected_exception_is_one_line_without_traceback(device: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from assistant_forget.runner import status

    def bug(root: Path) -> dict:
        raise KeyError("time_utc")

    monkeypatch.setattr(status, "device_status", bug)
    monkeypatch.delenv("ASSISTANT_FORGET_DEBUG", raising=False)
    assert main(["status", "--device", str(device)]) == INTERNAL_ERROR == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: internal error (KeyError: 'time_utc'); this is a bug in assistant-forget")
    monkeypatch.setenv("ASSISTANT_FORGET_DEBUG", "1")
    assert main(["status", "--device", str(device)]) == INTERNAL_ERROR
    assert "Traceback" in capsys.readouterr().err


def test_multi_line_messages_and_argument_errors_become_one_line(device: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from assistant_forget.runner import status

    def bad(root: Path) -> dict:
        raise BadInput("first part\n  second part\n")

    monkeypatch.setattr(status, "device_status", bad)
    assert main(["status", "--device", str(device)]) == 2
    assert capsys.readouterr().err == "error: first part; second part\n"
    for argv in (["forget"], ["status", "--device"], ["nope"], ["forget", "--device", str(device), "--bogus"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "--help" in err, err


# -- 6. UTF-8 whatever the locale -----------------------------------------------------------------

def test_non_ascii_output_and_paths_work_under_the_c_locale(device: Path, tmp_path: Path) -> None:
    dev = copy_of(device, tmp_path, "dév-ü")
    src = tmp_path / "zoé.jsonl"
    src.write_text(json.dumps({"text": "dîner avec Zoé 🎂", "intent": "calendar", "id": "z1",
                               "timestamp": "2026-02-04T19:00:00+01:00", "tz": "Europe/Paris"},
                              ensure_ascii=False) + "\n", encoding="utf-8")
    for utf8_mode in ("0", "1"):
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": utf8_mode}
        env.pop("PYTHONIOENCODING", None)
        if utf8_mode == "0":
            r = _run(["import", str(src), "--device", str(dev)], env=env)
            assert r.returncode == 0 and "dév-ü".encode() in r.stdout, r.stderr
        r = _run(["status", "--device", str(dev)], env=env)
        assert r.returncode == 0 and f"device       {dev} ".encode() in r.stdout and r.stderr == b"", r.stderr
        r = _run(["forget", "--device", str(dev), "--contains", "ZOE", "--dry-run"], env=env)
        assert r.returncode == 0 and "z1  dîner avec Zoé 🎂".encode() in r.stdout, r.stderr
        r = _run(["status", "--device", str(tmp_path / "nöpe")], env=env)
        assert r.returncode == 3 and r.stderr.startswith(b"error: ") and "nöpe".encode() in r.stderr
        assert b"Traceback" not in r.stderr
