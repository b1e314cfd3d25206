"""Import utterances from a JSONL file into a device: validate every line first, then store all or nothing.

One utterance per line (blank lines are skipped; line numbers count every physical line):

    {"text": "wake me at 7", "intent": "alarm", "timestamp": "2026-03-03T23:30:00-05:00", "tz": "America/New_York"}

`id` and `source` are optional; `source` defaults to "import". Without an `id`, the id is derived from
the content, 'u' + sha256(utc|tz|text|n)[:20], where n counts earlier id-less lines of this file with the
same utc, tz and text. Two devices importing the same lines therefore get the same ids.

Importing the same lines twice is refused: their ids (given or derived) are already in the log, so the
second import names those lines, stores nothing and leaves the device directory exactly as it was. The same
holds for any bad line: the device is not even created when the input is bad. A line whose local date is later
than the latest date anywhere on Earth now is refused (the bound `forget --date` uses), and so is a line on a
day this device forgot whole (tombstones.py).

Every problem is reported in ONE line (the CLI's promise): a count, then the first MAX_REPORTED problems,
each as "line N: field 'f': what is wrong", separated by "; ".
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .device import Device
from ..core.errors import BadInput
from .localtime import localize, parse_timestamp, zone
from .store import LogStore
from .utterance import Utterance, future_date_problem, id_problem, intent_problem, source_problem, text_problem

REQUIRED = ("text", "intent", "timestamp", "tz")  # fields every line must have
OPTIONAL = ("id", "source")  # fields a line may have
DEFAULT_SOURCE = "import"  # source of lines that do not name one
MAX_REPORTED = 10  # problems listed in the one-line error message; the rest are counted

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
               type(None): "null"}


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    device: Path  # the device directory imported into
    created: bool  # True when this import created the device
    utterances: int  # utterances stored
    days: int  # distinct local days among them


def derive_id(utc: str, tz: str, text: str, n: int) -> str:
    """Content-derived id of an id-less line: the n-th line with this utc, tz and text in one import.

    >>> derive_id("2026-03-04T04:30:00Z", "America/New_York", "wake me at 7", 0)
    'u3989dc6b6571165c58eb'
    """
    return "u" + hashlib.sha256(f"{utc}|{tz}|{text}|{n}".encode("utf-8")).hexdigest()[:20]


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json object hook: a key given twice is an error, not a silent overwrite."""
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _check_line(raw: str) -> tuple[Utterance | None, list[str]]:
    """Parse and check one line: (utterance with id '' when none was given, []) or (None, problems)."""
    try:
        obj = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as e:
        return None, [f"field {e.key!r}: appears more than once"]
    except json.JSONDecodeError as e:
        return None, [_json_problem(e)]
    except RecursionError:
        return None, ["not valid JSON: nested too deeply"]
    if not isinstance(obj, dict):
        return None, [f"expected a JSON object with fields {', '.join(REQUIRED)}, got a JSON {_JSON_TYPES[type(obj)]}"]
    problems = [f"field {f!r}: missing (required fields: {', '.join(REQUIRED)})" for f in REQUIRED if f not in obj]
    problems += [f"field {f!r}: unknown field (allowed: {', '.join(REQUIRED + OPTIONAL)})"
                 for f in obj if f not in REQUIRED + OPTIONAL]
    strings = {f: v for f, v in obj.items() if isinstance(v, str)}
    problems += [f"field {f!r}: expected a string, got a JSON {_JSON_TYPES[type(v)]}"
                 for f, v in obj.items() if f in REQUIRED + OPTIONAL and f not in strings]
    checks = {"text": text_problem, "intent": intent_problem, "id": id_problem, "source": source_problem}
    problems += [f"field {f!r}: {p}" for f, check in checks.items() if f in strings
                 for p in [check(strings[f])] if p is not None]
    capture = None
    if "timestamp" in strings and "tz" in strings:
        before = len(problems)
        try:
            parse_timestamp(strings["timestamp"])
        except BadInput as e:
            problems.append(f"field 'timestamp': {e}")
        try:
            zone(strings["tz"])
        except BadInput as e:
            problems.append(f"field 'tz': {e}")
        if len(problems) == before:
            try:
                capture = localize(strings["timestamp"], strings["tz"])
            except BadInput as e:
                problems.append(f"field 'timestamp': {e}")
            else:
                future = future_date_problem(capture.local_date)
                if future:
                    problems.append(f"field 'timestamp': {future}")
                    capture = None
    if problems or capture is None:
        return None, problems
    return Utterance(id=strings.get("id", ""), text=strings["text"], intent=strings["intent"], utc=capture.utc,
                     tz=capture.tz, local_date=capture.local_date, source=strings.get("source", DEFAULT_SOURCE)), []


def _json_problem(e: json.JSONDecodeError) -> str:
    """A JSON syntax error in words: 'not valid JSON: invalid control character at column 12'.

    >>> try:
    ...     json.loads('{"text": "a' + chr(9) + 'b"}')
    ... except json.JSONDecodeError as e:
    ...     _json_problem(e)
    'not valid JSON: invalid control character at column 12'
    """
    msg = e.msg.removesuffix(" at").rstrip(": ")  # json's messages end in "at" before the position
    return f"not valid JSON: {msg[:1].lower()}{msg[1:]} at column {e.colno}"


def _validate(lines: Iterable[str]) -> list[tuple[int, Utterance]]:
    """Check every line; return (line number, utterance) pairs with ids filled in, or raise BadInput."""
    errors: list[tuple[int, str]] = []
    found: list[tuple[int, Utterance]] = []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        utterance, problems = _check_line(raw)
        errors += [(lineno, p) for p in problems]
        if utterance is not None:
            found.append((lineno, utterance))
    if not found and not errors:
        raise BadInput("no utterances: the input is empty (expected one JSON object per line)")
    seen: Counter[tuple[str, str, str]] = Counter()
    first_line: dict[str, int] = {}
    numbered = []
    for lineno, u in found:
        if not u.id:
            key = (u.utc, u.tz, u.text)
            u = Utterance(derive_id(*key, seen[key]), u.text, u.intent, u.utc, u.tz, u.local_date, u.source)
            seen[key] += 1
        if u.id in first_line:
            errors.append((lineno, f"field 'id': {u.id!r} is already used on line {first_line[u.id]}"))
        first_line.setdefault(u.id, lineno)
        numbered.append((lineno, u))
    if errors:
        raise BadInput(_report(sorted(errors, key=lambda e: e[0])))
    return numbered


def _report(errors: list[tuple[int, str]]) -> str:
    """One line for many bad lines: a count, then the first MAX_REPORTED problems.

    >>> print(_report([(1, "field 'tz': missing"), (4, "not valid JSON: extra data at column 3")]))
    ... # doctest: +ELLIPSIS
    2 problem(s) on 2 line(s); nothing was imported: line 1: field 'tz': missing; line 4: not valid JSON: ...
    """
    lines = len({lineno for lineno, _ in errors})
    body = "; ".join(f"line {lineno}: {' '.join(p.split())}" for lineno, p in errors[:MAX_REPORTED])
    more = f" (and {len(errors) - MAX_REPORTED} more)" if len(errors) > MAX_REPORTED else ""
    return f"{len(errors)} problem(s) on {lines} line(s); nothing was imported: {body}{more}"


def validate_lines(lines: Iterable[str]) -> list[Utterance]:
    """Validate JSONL lines and return their utterances (ids filled in), or raise BadInput naming every bad line.

    >>> [u.local_date for u in validate_lines(['{"text": "hi", "intent": "greeting", '
    ...     '"timestamp": "2026-03-03T23:30:00-05:00", "tz": "America/New_York"}'])]
    ['2026-03-03']
    """
    return [u for _, u in _validate(lines)]


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a leading BOM and CRLF line ends are accepted)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BadInput(f"{path} is not UTF-8 text: line {line} has the byte 0x{data[e.start]:02x}, which is not "
                       f"valid UTF-8 there; save the file as UTF-8 and run again") from None
    text = text.removeprefix("\ufeff")
    return [line.removesuffix("\r") for line in text.split("\n")]


def import_jsonl(device_root: Path, path: Path, seed: int | None = None) -> ImportResult:
    """Import a JSONL file into the device at `device_root` (created with `seed` if absent): all lines or none."""
    try:
        numbered = _validate(read_lines(path))
    except BadInput as e:
        raise BadInput(f"{path}: {e}") from None
    root = Path(device_root)
    if root.exists() and not root.is_dir():
        raise BadInput(f"{root} is a file, not a device directory; choose a directory for --device")
    existed = (root / "device.json").is_file()
    if existed:
        _refuse_known_ids(Device.open_or_create(root, seed), numbered, path)  # also refuses a different seed
    before = set(root.iterdir()) if root.is_dir() else None  # None: this import creates the directory
    try:
        device = Device.open_or_create(root, seed)
        with device.locked(), LogStore(device.store_path) as store:
            from . import tombstones

            tombstones.admit_rows(device.root, [(u.id, u.local_date) for _, u in numbered])
            store.add(u for _, u in numbered)
    except BaseException:
        if not existed:  # a disk that filled up, a refusal: leave no half-created device behind
            _remove_created(root, before)
        raise
    return ImportResult(device=device.root, created=not existed, utterances=len(numbered),
                        days=len({u.local_date for _, u in numbered}))


def _remove_created(root: Path, before: set[Path] | None) -> None:
    """Undo a device creation that failed: remove `root` if this import made it, else only what it added."""
    if before is None:
        shutil.rmtree(root, ignore_errors=True)
        return
    for p in set(root.iterdir()) - before if root.is_dir() else ():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _refuse_known_ids(device: Device, numbered: list[tuple[int, Utterance]], path: Path) -> None:
    """Raise BadInput naming the lines whose ids the device already holds (read-only: changes nothing)."""
    with LogStore(device.store_path, readonly=True) as store:
        taken = store.existing_ids(u.id for _, u in numbered)
    if taken:
        clashes = [(lineno, f"field 'id': {u.id!r} is already in the device's log (were these lines imported "
                            f"before?)") for lineno, u in numbered if u.id in taken]
        raise BadInput(f"{path}: {_report(clashes)}")
