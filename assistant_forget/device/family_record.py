"""Which model family a device directory belongs to: DIR/family.json, a small sealed file written at creation.

A device made by `assistant-forget init` without `--family` is the assistant's and has no such file (every
device made before families existed reads the same way). A device of another family (`init --family
hf-causal-lm`) records the family's name and its settings here once, so that every later command opens it
with the same family without being told again. The file is sealed (core/fsio.sealed_json_bytes): a changed
byte is a CorruptFile (exit 4) before anything is read or written. What the settings mean is the family's
business (families/hf_lm/record.py); this module only stores and checks them.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import CorruptFile
from ..core.fsio import atomic_write_bytes, sealed_json_bytes, unseal_json

FAMILY_FILE = "family.json"
RECORD_FORMAT = 1
ASSISTANT = "assistant"  # the family of a device without a family.json


def write_family(root: Path, name: str, settings: dict) -> None:
    """Record `name` and its JSON-ready `settings` as `root`'s family (atomically; at creation only)."""
    atomic_write_bytes(Path(root) / FAMILY_FILE,
                       sealed_json_bytes({"format": RECORD_FORMAT, "family": name, "settings": settings}))


def read_family(root: Path) -> tuple[str, dict]:
    """(family name, settings) of the device `root`: (ASSISTANT, {}) when it records none; CorruptFile when
    the record is unreadable, tampered with or of another format."""
    path = Path(root) / FAMILY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ASSISTANT, {}
    except OSError as e:
        raise CorruptFile(f"{path}: cannot be read ({e.strerror})") from None
    try:
        rec = unseal_json(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFile(f"{path}: {e}; the device's family record was damaged or edited (restore it from a "
                          "backup; nothing was changed)") from None
    name, settings = rec.get("family"), rec.get("settings")
    if rec.get("format") != RECORD_FORMAT or not isinstance(name, str) or not isinstance(settings, dict):
        raise CorruptFile(f"{path}: not a family record of format {RECORD_FORMAT} (family name and settings)")
    return name, settings
