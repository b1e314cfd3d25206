"""Bad input through the command line: every case gets a clear one-line reason on stderr, a non-zero exit code,
and leaves every file of the device directory (and of the work directory) exactly as it was.

Dates, zones, ranges, selectors, JSONL lines, damaged device files, wrong or unwritable device directories,
huge inputs, Unicode (RTL, emoji, surrogates) and SQL-looking text; most run `cli.main` in-process, a few the
installed `assistant-forget` script. A SQL-looking phrase that matches nothing is "nothing to forget" (5); one
that the log holds, like a Unicode phrase in its many spellings, is matched and forgotten, exactly those rows.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from assistant_forget.cli import main
from devkit import make_device, persona_log, unwritable
from scan import snapshot

DAY = "2026-02-03"  # a day of the device's log (persona_log starts on 2026-02-02)
LINE = {"text": "wake me at 7", "intent": "alarm", "timestamp": "2026-02-03T07:00:00-05:00", "tz": "America/New_York"}


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Path, Path], list[str]]  # (device, work dir) -> arguments; may prepare files in the work dir
    code: int  # expected exit code
    says: str  # regex the stderr message must match


def jsonl(tmp: Path, *lines: str | dict, raw: bytes | None = None) -> str:
    """Write lines (dicts as JSON) to tmp/in.jsonl and return its path."""
    path = tmp / "in.jsonl"
    text = "\n".join(json.dumps(x, ensure_ascii=False) if isinstance(x, dict) else x for x in lines) + "\n"
    path.write_bytes(raw if raw is not None else text.encode())
    return str(path)


def damaged(dev: Path, tmp: Path, change: Callable[[Path], None]) -> str:
    """A copy of the device in the work dir with `change` applied; returns its path."""
    copy = Path(shutil.copytree(dev, tmp / "dev"))
    change(copy)
    return str(copy)


def F(dev: Path, *args: str) -> list[str]:
    return ["forget", "--device", str(dev), *args]


def I(path: str, dev: Path | str, *args: str) -> list[str]:
    return ["import", path, "--device", str(dev), *args]


def write(rel: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / rel).write_bytes(data)


def truncate(rel: str) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        p = next(d.glob(rel))
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return change


def replace_with_file(rel: str) -> Callable[[Path], None]:
    return lambda d: (shutil.rmtree(d / rel), (d / rel).write_text("not a directory\n", encoding="utf-8"))


CASES = [
    # dates
    Case("date-format", lambda d, t: F(d, "--date", "2026-2-3"), 2, r"not of the form YYYY-MM-DD"),
    Case("date-feb-30", lambda d, t: F(d, "--date", "2026-02-30"), 2, r"'2026-02-30' is not a calendar date"),
    Case("date-month-13", lambda d, t: F(d, "--date", "2026-13-01"), 2, r"not a calendar date"),
    Case("date-year-0", lambda d, t: F(d, "--date", "0000-01-01"), 2, r"not a calendar date"),
    Case("date-future", lambda d, t: F(d, "--date", "2999-01-01"), 2, r"in the future"),
    Case("date-empty", lambda d, t: F(d, "--date", ""), 2, r"give exactly one selector"),
    Case("date-slashes", lambda d, t: F(d, "--date", "03/02/2026"), 2, r"not of the form YYYY-MM-DD"),
    Case("date-with-time", lambda d, t: F(d, "--date", "2026-02-03T10:00"), 2, r"not of the form YYYY-MM-DD"),
    Case("date-space", lambda d, t: F(d, "--date", " 2026-02-03"), 2, r"not of the form YYYY-MM-DD"),
    Case("date-newline", lambda d, t: F(d, "--date", "2026-02-03\n"), 2, r"not of the form YYYY-MM-DD"),
    Case("date-fullwidth", lambda d, t: F(d, "--date", "２０２６-０２-０３"), 2, r"YYYY-MM-DD|calendar date"),
    Case("date-arabic-digits", lambda d, t: F(d, "--date", "٢٠٢٦-٠٢-٠٣"), 2, r"YYYY-MM-DD|calendar date"),
    Case("date-nothing-said", lambda d, t: F(d, "--date", "2025-01-01"), 5, r"nothing matches"),
    Case("until-feb-30", lambda d, t: ["train", "--device", str(d), "--until", "2026-02-30"], 2, r"calendar date"),
    Case("until-format", lambda d, t: ["train", "--device", str(d), "--until", "yesterday"], 2, r"YYYY-MM-DD"),
    Case("verify-date", lambda d, t: ["verify", "--device", str(d), "--date", "2026-02-31"], 2, r"calendar date"),
    # ranges, selectors, modes
    Case("range-inverted", lambda d, t: F(d, "--from", "2026-02-04", "--to", "2026-02-02"), 2, r"after --to"),
    Case("range-from-only", lambda d, t: F(d, "--from", "2026-02-02"), 2, r"needs both --from and --to"),
    Case("range-to-only", lambda d, t: F(d, "--to", "2026-02-04"), 2, r"needs both --from and --to"),
    Case("range-bad-end", lambda d, t: F(d, "--from", "2026-02-02", "--to", "2026-02-31"), 2, r"calendar date"),
    Case("range-future", lambda d, t: F(d, "--from", "2026-02-02", "--to", "2999-12-31"), 2, r"in the future"),
    Case("range-nothing", lambda d, t: F(d, "--from", "2020-01-01", "--to", "2020-12-31"), 5, r"nothing matches"),
    Case("two-selectors", lambda d, t: F(d, "--date", DAY, "--contains", "alarm"), 2, r"exactly one selector"),
    Case("no-selector", lambda d, t: F(d), 2, r"exactly one selector.*got none"),
    Case("mode-unknown", lambda d, t: F(d, "--date", DAY, "--mode", "fastest"), 2, r"--mode must be one of"),
    Case("mode-empty", lambda d, t: F(d, "--date", DAY, "--mode", ""), 2, r"--mode must be one of"),
    # phrases: empty, huge, NUL, surrogates, SQL, RTL, emoji
    Case("contains-empty", lambda d, t: F(d, "--contains", ""), 2, r"non-empty phrase"),
    Case("contains-blank", lambda d, t: F(d, "--contains", " \t "), 2, r"non-empty phrase"),
    Case("contains-100k", lambda d, t: F(d, "--contains", "a" * 100_000), 2, r"100000 characters; at most"),
    Case("contains-nul", lambda d, t: F(d, "--contains", "wake\x00me"), 2, r"NUL"),
    Case("contains-surrogate", lambda d, t: F(d, "--contains", "wake \ud800"), 2, r"surrogate"),
    Case("contains-sql-drop", lambda d, t: F(d, "--contains", "'; DROP TABLE utterances; --"), 5, r"nothing matches"),
    Case("contains-sql-or", lambda d, t: F(d, "--contains", "' OR '1'='1"), 5, r"nothing matches"),
    Case("contains-sql-comment", lambda d, t: F(d, "--contains", "*/ DELETE FROM utterances /*"), 5, r"nothing"),
    Case("contains-rtl", lambda d, t: F(d, "--contains", "שלום עולם"), 5, r"nothing matches"),
    Case("contains-rtl-override", lambda d, t: F(d, "--contains", "\u202edrowssap"), 5, r"nothing matches"),
    Case("contains-emoji", lambda d, t: F(d, "--contains", "🎂🎉🔥"), 5, r"nothing matches"),
    Case("contains-zwj-family", lambda d, t: F(d, "--contains", "👨‍👩‍👧"), 5, r"nothing matches"),
    # accents are ignored when matching (utterance.fold), so stacked marks sit on a letter pair no text has
    Case("contains-combining", lambda d, t: F(d, "--contains", "xq\u0301\u0301\u0301"), 5, r"nothing matches"),
    Case("contains-only-marks", lambda d, t: F(d, "--contains", "\u0301\u0301\u0301"), 2,
         r"only invisible characters, spaces or accents; it would match every utterance"),
    Case("contains-only-invisible", lambda d, t: F(d, "--contains", "\u200b\u200d\ufeff\u00ad"), 2,
         r"would match every utterance"),
    Case("contains-fullwidth-space-only", lambda d, t: F(d, "--contains", "\u3000\u00a0"), 2, r"non-empty phrase"),
    Case("contains-ansi", lambda d, t: F(d, "--contains", "\x1b[31mred"), 5, r"nothing matches"),
    Case("utterance-empty", lambda d, t: F(d, "--utterance", ""), 2, r"non-empty and at most 128"),
    Case("utterance-long", lambda d, t: F(d, "--utterance", "u" * 200), 2, r"at most 128 characters"),
    Case("utterance-unknown", lambda d, t: F(d, "--utterance", "u0000"), 5, r"no utterance with id u0000"),
    Case("utterance-sql", lambda d, t: F(d, "--utterance", "x' OR '1'='1"), 5, r"no utterance with id"),
    # device directory: missing, a file, not a device, unreadable metadata, other commands
    Case("device-missing", lambda d, t: F(t / "nope", "--date", DAY), 3, r"no such device directory"),
    Case("device-is-file", lambda d, t: ((t / "f").write_text("x", encoding="utf-8"), F(t / "f", "--date", DAY))[1],
         3, r"no such device directory"),
    Case("device-not-device", lambda d, t: ((t / "e").mkdir(), F(t / "e", "--date", DAY))[1], 3,
         r"device.json is missing"),
    Case("device-json-garbage", lambda d, t: F(damaged(d, t, write("device.json", b"{nope")), "--date", DAY), 4,
         r"unreadable device metadata"),
    Case("device-json-format", lambda d, t: F(damaged(d, t, write("device.json", b'{"format": 99, "seed": 0}')),
                                              "--date", DAY), 4, r"device format 99 is not supported"),
    Case("status-missing", lambda d, t: ["status", "--device", str(t / "nope")], 3, r"no such device"),
    Case("history-missing", lambda d, t: ["history", "--device", str(t / "nope")], 3, r"no such device"),
    Case("maintain-missing", lambda d, t: ["maintain", "--device", str(t / "nope")], 3, r"no such device"),
    Case("export-format", lambda d, t: ["export", "--device", str(d), "--format", "pdf"], 2, r"--format takes"),
    Case("export-format-empty", lambda d, t: ["export", "--device", str(d), "--format", ",,"], 2, r"--format takes"),
    Case("init-existing", lambda d, t: ["init", "--device", str(d)], 2, r"already a device directory"),
    Case("init-negative-seed", lambda d, t: ["init", "--device", str(t / "new"), "--seed", "-1"], 2,
         r"seed must be an integer"),
    Case("init-not-empty", lambda d, t: ((t / "x.txt").write_text("x", encoding="utf-8"),
                                         ["init", "--device", str(t)])[1], 2, r"exists and is not empty"),
    # JSONL import: every line valid or nothing imported, nothing created
    Case("import-missing", lambda d, t: I(str(t / "none.jsonl"), d), 2, r"no such file"),
    Case("import-directory", lambda d, t: I(str(t), d), 2, r"not a regular file"),
    Case("import-empty", lambda d, t: I(jsonl(t, ""), d), 2, r"no utterances: the input is empty"),
    Case("import-not-json", lambda d, t: I(jsonl(t, "{text: hi}"), d), 2, r"line 1: not valid JSON"),
    Case("import-array", lambda d, t: I(jsonl(t, "[1, 2]"), d), 2, r"got a JSON array"),
    Case("import-missing-field", lambda d, t: I(jsonl(t, {k: v for k, v in LINE.items() if k != "tz"}), d), 2,
         r"field 'tz': missing"),
    Case("import-unknown-field", lambda d, t: I(jsonl(t, {**LINE, "mood": "x"}), d), 2, r"'mood': unknown field"),
    Case("import-naive-time", lambda d, t: I(jsonl(t, {**LINE, "timestamp": "2026-02-03T07:00:00"}), d), 2,
         r"has no UTC offset"),
    Case("import-feb-30", lambda d, t: I(jsonl(t, {**LINE, "timestamp": "2026-02-30T07:00:00Z"}), d), 2,
         r"not a valid date and time"),
    Case("import-bad-zone", lambda d, t: I(jsonl(t, {**LINE, "tz": "Mars/Olympus_Mons"}), d), 2,
         r"unknown time zone 'Mars/Olympus_Mons'"),
    Case("import-bad-offset", lambda d, t: I(jsonl(t, {**LINE, "tz": "+15:00"}), d), 2, r"outside -14:00\.\.\+14:00"),
    Case("import-offset-mismatch", lambda d, t: I(jsonl(t, {**LINE, "tz": "Asia/Tokyo"}), d), 2,
         r"does not match Asia/Tokyo"),
    Case("import-duplicate-key", lambda d, t: I(jsonl(t, '{"text": "a", "text": "b"}'), d), 2,
         r"appears more than once"),
    Case("import-not-utf8", lambda d, t: I(jsonl(t, raw=b'{"text": "caf\xe9"}\n'), d), 2, r"is not UTF-8"),
    Case("import-10mb-line", lambda d, t: I(jsonl(t, {**LINE, "text": "x" * 10_000_000}), d), 2,
         r"is 10000000 characters long; the limit is 1000"),
    Case("import-deep-nesting", lambda d, t: I(jsonl(t, "[" * 100_000 + "]" * 100_000), d), 2, r"not valid JSON"),
    Case("import-empty-text", lambda d, t: I(jsonl(t, {**LINE, "text": "  "}), d), 2, r"'text': is empty"),
    Case("import-unknown-intent", lambda d, t: I(jsonl(t, {**LINE, "intent": "teleport"}), d), 2, r"'intent'"),
    Case("import-one-bad-line", lambda d, t: I(jsonl(t, {**LINE, "text": "שלום 🎂 مرحبا"},
                                                     {**LINE, "tz": "Nowhere"},
                                                     {**LINE, "text": "Robert'); DROP TABLE utterances;--"}), d),
         2, r"1 problem\(s\) on 1 line\(s\); nothing was imported"),
    Case("import-new-device-bad", lambda d, t: I(jsonl(t, {**LINE, "tz": "Nowhere"}), t / "fresh"), 2,
         r"unknown time zone"),
    Case("import-into-file", lambda d, t: ((t / "f").write_text("x", encoding="utf-8"),
                                           I(jsonl(t, LINE), t / "f"))[1], 2, r"is a file, not a device directory"),
    Case("import-seed-mismatch", lambda d, t: I(jsonl(t, LINE), d, "--seed", "7"), 2, r"already has seed 0"),
    # damaged files: refused before anything changes, naming the file and what to do
    Case("journal-garbage", lambda d, t: ["train", "--device", damaged(d, t, write("journal.json", b"{"))], 4,
         r"journal.json: (unreadable forget journal|damaged journal)"),
    Case("manifest-truncated", lambda d, t: ["train", "--device", damaged(d, t, truncate("ledger/manifest.json"))],
         4, r"manifest.json: unreadable ledger manifest .*rebuild"),
    Case("state-truncated", lambda d, t: F(damaged(d, t, truncate("ledger/state-*")), "--date", DAY), 4,
         r"state-\w+\.safetensors: checksum mismatch"),
    Case("delta-truncated", lambda d, t: F(damaged(d, t, truncate("ledger/deltas/*")), "--date", DAY), 4,
         r"deltas/[-\w]+\.safetensors: checksum mismatch"),
    Case("store-garbage", lambda d, t: ["status", "--device", damaged(d, t, write("logs.sqlite", b"x" * 4096))], 4,
         r"logs.sqlite is not a readable log database"),
    Case("store-truncated", lambda d, t: F(damaged(d, t, truncate("logs.sqlite")), "--date", DAY), 4,
         r"logs.sqlite is not a readable log database"),
    Case("receipts-garbage", lambda d, t: ["history", "--device", damaged(d, t, write("receipts.jsonl", b"{\n"))], 4,
         r"receipts.jsonl: line 1 is not a valid receipt"),
    Case("current-garbage", lambda d, t: ["status", "--device", damaged(d, t, write("exports/CURRENT", b"zz\n"))], 4,
         r"CURRENT: 'zz' is not an export version"),
    # paths that cannot be written, even by root: a file where a directory belongs and vice versa
    Case("ledger-is-file", lambda d, t: ["train", "--device", damaged(d, t, replace_with_file("ledger"))], 4,
         r"ledger: not a directory"),
    Case("exports-is-file", lambda d, t: ["train", "--device", damaged(d, t, replace_with_file("exports"))], 4,
         r"exports: (not a regular file, )?not a directory; move it away"),
    Case("store-is-directory", lambda d, t: F(damaged(d, t, lambda c: ((c / "logs.sqlite").unlink(),
                                                                       (c / "logs.sqlite").mkdir())), "--date", DAY),
         2, r"logs.sqlite: cannot be opened for writing \(Is a directory\)"),
    Case("lock-is-directory", lambda d, t: F(damaged(d, t, lambda c: ((c / ".lock").unlink(), (c / ".lock").mkdir())),
                                             "--date", DAY), 2, r"\.lock: cannot open the device's lock file"),
]


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_device(tmp_path_factory.mktemp("bad") / "dev", persona_log(3, mean=5.0))


def tree(root: Path) -> dict[str, str]:
    """Every path under `root` with its file hash ('dir' for directories): equal means nothing changed."""
    return {**{str(p.relative_to(root)): "dir" for p in root.rglob("*") if p.is_dir()}, **snapshot(root)}


def test_the_corpus_is_large_and_each_case_is_distinct() -> None:
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(case: Case, device: Path, tmp_path: Path, capsys) -> None:
    argv = case.argv(device, tmp_path)
    before = (tree(device), tree(tmp_path))
    capsys.readouterr()
    assert main(argv) == case.code
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and "Traceback" not in err and out == ""
    assert re.search(case.says, err, re.S), err[:500]
    assert (tree(device), tree(tmp_path)) == before


@pytest.mark.parametrize("what", ["device directory", "logs.sqlite"])
def test_read_only_device_is_refused_before_anything_is_written(what: str, device: Path, tmp_path: Path,
                                                                capsys) -> None:
    dev = Path(shutil.copytree(device, tmp_path / "dev"))
    before = tree(dev)
    with unwritable(dev if what == "device directory" else dev / "logs.sqlite"):
        for argv in (F(dev, "--date", DAY), ["train", "--device", str(dev)], ["export", "--device", str(dev)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert re.search(r"^error: .*(cannot open the device's lock file|cannot be opened for writing).*"
                             r"nothing was changed", err), err
    assert tree(dev) == before


def test_the_installed_script_exits_with_the_same_codes(device: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("assistant-forget")
    before = tree(device)
    runs = [(code, subprocess.Popen([str(script), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                             encoding="utf-8"))
            for code, argv in [(2, F(device, "--date", "2026-02-30")),
                               (5, F(device, "--contains", "'; DROP TABLE utterances; --")),
                               (3, ["status", "--device", str(tmp_path / "nope")])]]
    for code, proc in runs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == code and err.startswith("error: ") and "Traceback" not in err, (code, err)
    assert tree(device) == before


# -- phrases the log holds: matched and forgotten, exactly those rows -------------------------------------

def said(uid: str, text: str, minute: int) -> dict:
    return {"id": uid, "text": text, "intent": "oos", "timestamp": f"2026-02-03T21:{minute:02d}:00-06:00",
            "tz": "America/Chicago", "source": "test"}


SAID = [said(uid, text, i) for i, (uid, text) in enumerate([
    ("acc-1", "Call Dr Álvarez-Nuñez tomorrow"), ("acc-2", "DR\u00a0ÁLVAREZ-NUÑEZ called back"),
    ("acc-3", "dr\u200balvarez-nunez is late"), ("acc-x", "dr alvaro nunez is someone else"),
    ("wide-1", "ｓｅｔ ａ ｔｉｍｅｒ ｆｏｒ ｔｈｅ ｑｕｉｎｃｅ ｊａｍ"), ("wide-2", "buy QUINCE jam"), ("wide-x", "buy quince paste"),
    ("zw-1", "door code 4\u200d8\u200c1\u200b9 please"), ("zw-2", "door code 4819 again"), ("zw-x", "door code 4818"),
    ("emoji-1", "happy birthday 🎂🎉 grandma"), ("emoji-2", "family dinner 👨\u200d👩\u200d👧 at eight"),
    ("emoji-x", "birthday 🎂 only"), ("sql-1", "he typed '; DROP TABLE utterances; -- into the form"),
    ("sql-x", "drop table at the utterances shop"), ("pct-1", "battery at 100% now"), ("us-1", "my handle is zoe_42"),
    ("us-2", "rename it to snake_case"),
])]
LITERAL = lambda ch: lambda r: ch in r["text"]  # noqa: E731  (% and _ are plain characters, not wildcards)
PRESENT = [  # (id, phrase, the ids it must match among SAID, which of the persona's own rows it matches too)
    ("accents", "DR ÁLVAREZ-NUÑEZ", {"acc-1", "acc-2", "acc-3"}, None),
    ("accents-ascii", "dr alvarez-nunez", {"acc-1", "acc-2", "acc-3"}, None),
    ("fullwidth", "ｑｕｉｎｃｅ\u3000ｊａｍ", {"wide-1", "wide-2"}, None),
    ("zero-width", "code 4\u200b819", {"zw-1", "zw-2"}, None),
    ("emoji", "🎂🎉", {"emoji-1"}, None),
    ("emoji-zwj", "👨\u200d👩\u200d👧", {"emoji-2"}, None),
    ("sql-drop", "'; DROP TABLE utterances; --", {"sql-1"}, None),
    ("sql-percent", "%", {"pct-1"}, LITERAL("%")),
    ("sql-underscore", "_", {"us-1", "us-2"}, LITERAL("_")),
]


@pytest.fixture(scope="module")
def phrased(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """An untrained device holding the persona's log and SAID; its ids -> texts."""
    from assistant_forget.device.device import Device
    from assistant_forget.device.store import LogStore

    records = persona_log(3, mean=5.0) + SAID
    dev = make_device(tmp_path_factory.mktemp("phrased") / "dev", records, train=False)
    with LogStore(Device.open(dev).store_path, readonly=True) as store:
        texts = {u.id: u.text for u in store.all()}
    assert len(texts) == len(records) and {r["id"] for r in SAID} <= set(texts)
    return dev, texts


@pytest.mark.parametrize("phrase,mine,others", [c[1:] for c in PRESENT], ids=[c[0] for c in PRESENT])
def test_a_phrase_the_log_holds_is_matched_and_forgotten_exactly(phrase: str, mine: set[str], others,
                                                                 phrased, tmp_path: Path, capsys) -> None:
    import sqlite3

    from assistant_forget.device.device import Device
    from assistant_forget.device.store import LogStore

    dev = Path(shutil.copytree(phrased[0], tmp_path / "dev"))
    texts = phrased[1]
    persona = {i for i in texts if i not in {r["id"] for r in SAID}}
    want = mine | {i for i in persona if others is not None and others({"text": texts[i]})}
    capsys.readouterr()
    assert main(F(dev, "--contains", phrase, "--dry-run", "--json")) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {m["id"] for m in plan["matched"]} == want and plan["utterances"] == len(want)
    assert main(F(dev, "--contains", phrase, "--json")) == 0
    receipt = json.loads(capsys.readouterr().out)
    assert receipt["utterances"] == len(want) and receipt["selector"] == {"kind": "contains"}
    with LogStore(Device.open(dev).store_path, readonly=True) as store:
        left = {u.id: u.text for u in store.all()}
    assert left == {i: t for i, t in texts.items() if i not in want}  # exactly those rows, the rest untouched
    conn = sqlite3.connect(f"{(dev / 'logs.sqlite').resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [("utterances",)]
        assert conn.execute("SELECT count(*) FROM utterances").fetchone() == (len(texts) - len(want),)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert main(F(dev, "--contains", phrase)) == 5  # nothing of it is left to match
    assert capsys.readouterr().err.startswith("error: nothing matches")
