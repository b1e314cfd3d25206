"""What an attacker with the device's files would see: a raw byte scan for texts, and directory snapshots.

Reusable by every forgetting test: after a forget, `find_texts(device_dir, forgotten)` must be empty.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable


def _files(root: Path) -> list[Path]:
    """Every regular file under `root`, recursively (hidden ones and SQLite side files included)."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink())


def find_texts(root: Path, texts: Iterable[str]) -> dict[str, list[Path]]:
    """The files under `root` whose raw bytes hold each text as UTF-8, or its lowercased/casefolded form.

    Texts found nowhere are left out, so "nothing remains" reads `find_texts(root, texts) == {}`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "f.bin").write_bytes("\\x00remind me about grüße\\x00".encode())
    ...     sorted(find_texts(d, ["Remind me ABOUT Grüße", "me about", "absent"]))
    ['Remind me ABOUT Grüße', 'me about']
    """
    forms = {t: {f.encode("utf-8") for f in (t, t.lower(), t.casefold())} for t in texts}
    hits: dict[str, list[Path]] = {}
    for path in _files(root):
        data = path.read_bytes()
        for text, needles in forms.items():
            if any(n in data for n in needles):
                hits.setdefault(text, []).append(path)
    return hits


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root` (a missing root gives {}): equal means unchanged."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(root)}
