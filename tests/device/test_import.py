"""JSONL import: every line is checked first; one bad line means nothing is imported and nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant_forget.device import importer
from assistant_forget.cli import main
from assistant_forget.device.device import Device
from assistant_forget.core.errors import BadInput
from assistant_forget.device.importer import MAX_REPORTED, import_jsonl, validate_lines
from assistant_forget.device.store import LogStore
from scan import snapshot


def line(text: str = "wake me up at seven", intent: str = "alarm", timestamp: str = "2026-03-03T07:00:00-05:00",
         tz: str = "America/New_York", **extra: object) -> str:
    return json.dumps({"text": text, "intent": intent, "timestamp": timestamp, "tz": tz, **extra}, ensure_ascii=False)


GOOD = [line(),
        line("what's the weather in Lyon", "weather", "2026-03-03T23:30:00-05:00"),  # UTC: March 4
        line("set a timer for ten minutes", "timer", "2026-03-04T08:00:00+09:00", "Asia/Tokyo", id="tokyo-1"),
        line("rappelle-moi d'appeler Zoé", "reminder", "2026-03-04T09:15:00Z", "Europe/Paris", source="watch")]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """A device that already holds an import, to check that a refused import changes nothing."""
    root = tmp_path / "dev"
    import_jsonl(root, write(tmp_path / "first.jsonl", GOOD), seed=5)
    return root


def test_import_creates_the_device_and_stores_every_line(tmp_path: Path) -> None:
    res = import_jsonl(tmp_path / "dev", write(tmp_path / "log.jsonl", GOOD), seed=7)
    assert (res.created, res.utterances, res.days) == (True, 4, 2)
    assert Device.open(tmp_path / "dev").seed == 7
    with LogStore(tmp_path / "dev" / "logs.sqlite", readonly=True) as s:
        assert s.day_counts() == {"2026-03-03": 2, "2026-03-04": 2}
        rows = {u.text: u for u in s.all()}
    assert rows["set a timer for ten minutes"].id == "tokyo-1"
    assert rows["what's the weather in Lyon"].utc == "2026-03-04T04:30:00Z"
    assert rows["rappelle-moi d'appeler Zoé"].source == "watch"
    assert rows["wake me up at seven"].source == "import"
    assert rows["wake me up at seven"].id == importer.derive_id("2026-03-03T12:00:00Z", "America/New_York",
                                                                 "wake me up at seven", 0)


def test_second_import_into_an_existing_device_appends(device: Path, tmp_path: Path) -> None:
    more = [line("good night", "goodbye", "2026-03-05T22:00:00-05:00")]
    res = import_jsonl(device, write(tmp_path / "more.jsonl", more))
    assert (res.created, res.utterances, res.days) == (False, 1, 1)
    with LogStore(device / "logs.sqlite", readonly=True) as s:
        assert s.count() == 5


def test_derived_ids_are_deterministic_and_separate_exact_duplicates(tmp_path: Path) -> None:
    lines = [line(), line(), line("stop")]
    a, b = validate_lines(lines), validate_lines(list(lines))
    assert [u.id for u in a] == [u.id for u in b]
    assert len({u.id for u in a}) == 3
    assert a[0].text == a[1].text and a[0].id != a[1].id
    for name in ("one", "two"):  # two devices importing the same lines get the same ids
        import_jsonl(tmp_path / name, write(tmp_path / f"{name}.jsonl", lines))
    with LogStore(tmp_path / "one" / "logs.sqlite", readonly=True) as s1, \
            LogStore(tmp_path / "two" / "logs.sqlite", readonly=True) as s2:
        assert s1.all() == s2.all() and len(s1.all()) == 3


def test_crlf_bom_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "win.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n\r\n".join(GOOD).encode() + b"\r\n")
    assert import_jsonl(tmp_path / "dev", path).utterances == 4


BAD_CASES = [  # (file lines, fragment the message must contain), the bad line is always line 2
    ('{"text": "hi", "intent": "alarm",', "line 2: not valid JSON"),
    ('["wake me", "alarm"]',
     "line 2: expected a JSON object with fields text, intent, timestamp, tz, got a JSON array"),
    (json.dumps({"text": "hi", "intent": "alarm", "timestamp": "2026-03-03T07:00:00-05:00"}),
     "line 2: field 'tz': missing"),
    (line(speaker="bob"), "line 2: field 'speaker': unknown field"),
    (line(text=5), "line 2: field 'text': expected a string, got a JSON number"),  # type: ignore[arg-type]
    (line(text="   "), "line 2: field 'text': is empty"),
    (line(text="x" * 1001), "line 2: field 'text': is 1001 characters long; the limit is 1000"),
    (line(text="wake\x00me"), "line 2: field 'text': contains a NUL character"),
    (line().replace("wake me", "wake \\ud800 me"), "line 2: field 'text': contains an unpaired surrogate"),
    (line(intent="alarms"), "line 2: field 'intent': unknown intent 'alarms' (did you mean 'alarm'?)"),
    (line(timestamp="2026-03-03T07:00:00"),
     "line 2: field 'timestamp': timestamp '2026-03-03T07:00:00' has no UTC offset"),
    (line(tz="Mars/Olympus_Mons"), "line 2: field 'tz': unknown time zone 'Mars/Olympus_Mons'"),
    (line(timestamp="2026-03-03T07:00:00-04:00"),
     "line 2: field 'timestamp': offset -04:00 does not match America/New_York at that instant (-05:00)"),
    (line(id=""), "line 2: field 'id': is empty"),
    (line(id="x" * 129), "line 2: field 'id': is 129 characters long; the limit is 128"),
    (line(source=None), "line 2: field 'source': expected a string, got a JSON null"),
    ('{"text": "a", "text": "b", "intent": "alarm", "timestamp": "2026-03-03T07:00:00Z", "tz": "UTC"}',
     "line 2: field 'text': appears more than once"),
]


@pytest.mark.parametrize("bad, message", BAD_CASES, ids=[m.split(": ", 1)[1][:40] for _, m in BAD_CASES])
def test_bad_line_is_named_and_nothing_changes(bad: str, message: str, device: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", [line("first good line"), bad, line("last good line")])
    before = snapshot(device)
    with pytest.raises(BadInput) as e:
        import_jsonl(device, path)
    assert message in str(e.value) and "nothing was imported" in str(e.value)
    assert snapshot(device) == before
    with pytest.raises(BadInput):  # a device that does not exist is not created
        import_jsonl(tmp_path / "new-dev", path)
    assert not (tmp_path / "new-dev").exists()


def test_duplicate_ids_within_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.jsonl", [line("a", id="x"), line("b", id="x"), line("c", id="y")])
    with pytest.raises(BadInput, match="line 2: field 'id': 'x' is already used on line 1"):
        import_jsonl(tmp_path / "dev", path)
    assert not (tmp_path / "dev").exists()


def test_importing_the_same_file_twice_is_refused(device: Path, tmp_path: Path) -> None:
    before = snapshot(device)
    with pytest.raises(BadInput) as e:
        import_jsonl(device, write(tmp_path / "again.jsonl", GOOD))
    assert "4 problem(s) on 4 line(s); nothing was imported" in str(e.value)
    assert "line 3: field 'id': 'tokyo-1' is already in the device's log" in str(e.value)
    assert snapshot(device) == before


@pytest.mark.parametrize("content, message", [
    (b"", "the input is empty"),
    (b"\n  \n\n", "the input is empty"),
    (line().encode() + b"\n" + line("caf\xe9").encode("latin-1"), "is not UTF-8 text: line 2 has the byte 0xe9"),
])
def test_empty_or_non_utf8_files_are_refused(content: bytes, message: str, device: Path, tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_bytes(content)
    before = snapshot(device)
    with pytest.raises(BadInput, match=message):
        import_jsonl(device, path)
    assert snapshot(device) == before


def test_every_bad_line_is_reported_up_to_a_cap(tmp_path: Path) -> None:
    lines = [line(intent="nope") if i % 2 else line(f"good {i}") for i in range(60)]
    with pytest.raises(BadInput) as e:
        import_jsonl(tmp_path / "dev", write(tmp_path / "many.jsonl", lines))
    message = str(e.value)
    assert "30 problem(s) on 30 line(s)" in message
    assert "line 2: field 'intent'" in message and f"line {2 * MAX_REPORTED}: field 'intent'" in message
    assert f"line {2 * MAX_REPORTED + 2}:" not in message and f"(and {30 - MAX_REPORTED} more)" in message
    assert "\n" not in message  # the CLI promises one line


def test_a_line_with_several_problems_lists_each(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as e:
        validate_lines([line(text="", intent="nope", tz="Nowhere/City")])
    message = str(e.value)
    assert "\n" not in message and message.startswith("3 problem(s) on 1 line(s); nothing was imported: line 1: ")
    parts = message.split(": ", 1)[1].split("; line ")
    assert [p.split(": ")[1] for p in parts] == ["field 'text'", "field 'intent'", "field 'tz'"]


def test_every_import_error_is_one_clean_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Many problems, JSON syntax errors (no 'at at'), surrogates, future dates: one line each, nothing created."""
    lines = [line(tz="Mars/Base"), '{"text": "a\tb"}', line(intent="nope", id="x\ny"), "{" + "\n",
             line().replace("wake me", "wake \\ud83d me"), line(timestamp="2999-06-01T10:00:00+00:00", tz="UTC")]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["import", str(path), "--device", str(tmp_path / "dev")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert f"{path}: 7 problem(s) on 6 line(s); nothing was imported: line 1: field 'tz'" in err
    assert "line 2: not valid JSON: invalid control character at column 12" in err and "at at" not in err
    assert "line 4: not valid JSON: expecting property name enclosed in double quotes at column 2" in err
    assert "line 3: field 'id': contains a control character" in err  # a blank line 5 is skipped
    assert "line 6: field 'text': contains an unpaired surrogate ('\\ud83d')" in err
    assert "line 7: field 'timestamp': local date 2999-06-01 is in the future (the latest date anywhere now is " in err
    assert not (tmp_path / "dev").exists()


@pytest.mark.parametrize("timestamp, tz", [("2999-06-01T10:00:00+00:00", "UTC"),
                                           ("2999-06-01T10:00:00+14:00", "Pacific/Kiritimati")])
def test_a_future_local_date_is_refused_like_forget_refuses_it(timestamp: str, tz: str, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"line 1: field 'timestamp': local date 2999-06-01 is in the future "
                                       r"\(the latest date anywhere now is \d{4}-\d\d-\d\d\)"):
        validate_lines([line(timestamp=timestamp, tz=tz)])


def test_the_latest_local_day_on_earth_is_accepted(tmp_path: Path) -> None:
    """Kiritimati (UTC+14) is already on the latest date: a line spoken there now imports, and can be forgotten."""
    from datetime import datetime, timedelta, timezone

    from assistant_forget.device.localtime import latest_local_date
    now = datetime.now(timezone(timedelta(hours=14))).replace(microsecond=0)
    [u] = validate_lines([line(timestamp=now.isoformat(), tz="Pacific/Kiritimati")])
    assert u.local_date <= latest_local_date().isoformat()
    tomorrow = (now + timedelta(days=1)).isoformat()
    with pytest.raises(BadInput, match="is in the future"):
        validate_lines([line(timestamp=tomorrow, tz="Pacific/Kiritimati")])


def test_seed_of_an_existing_device_cannot_change(device: Path, tmp_path: Path) -> None:
    before = snapshot(device)
    with pytest.raises(BadInput, match="already has seed 5"):
        import_jsonl(device, write(tmp_path / "more.jsonl", [line("fresh")]), seed=6)
    assert snapshot(device) == before


def test_missing_file_or_a_file_as_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        import_jsonl(tmp_path / "dev", tmp_path / "absent.jsonl")
    assert not (tmp_path / "dev").exists()
    (tmp_path / "plain").write_text("not a device", encoding="utf-8")
    with pytest.raises(BadInput, match="is a file, not a device directory"):
        import_jsonl(tmp_path / "plain", write(tmp_path / "log.jsonl", GOOD))
    assert (tmp_path / "plain").read_text(encoding="utf-8") == "not a device"


def test_cli_import_then_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "log.jsonl", GOOD)
    assert main(["import", str(path), "--device", str(tmp_path / "dev"), "--seed", "3"]) == 0
    assert capsys.readouterr().out.startswith("imported 4 utterances over 2 local days into ")
    assert main(["status", "--device", str(tmp_path / "dev"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["days"] == {"2026-03-03": 2, "2026-03-04": 2}


def test_cli_import_of_a_bad_file_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "bad.jsonl", GOOD[:2] + [line(tz="Mars/Base")])
    assert main(["import", str(path), "--device", str(tmp_path / "dev")]) == BadInput.exit_code != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 3: field 'tz': unknown time zone 'Mars/Base'" in err
    assert not (tmp_path / "dev").exists()
