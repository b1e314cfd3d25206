"""Keys name files in the ledger: a key that could escape its folder is refused everywhere it enters."""

from __future__ import annotations

import pytest
import torch

from assistant_forget.core.errors import BadInput
from assistant_forget.core.keys import MAX_KEY, check_key
from assistant_forget.core.ledger import Ledger

BAD = ["a/b", "..", ".", "a\\b", "../x", "x..y", "", "-lead", "a b", "k" * (MAX_KEY + 1), "é", "a\x00b", 7, None]


@pytest.mark.parametrize("key", BAD, ids=repr)
def test_a_bad_key_is_refused_with_a_clear_message(key):
    with pytest.raises(BadInput, match="key"):
        check_key(key)


@pytest.mark.parametrize("key", ["2026-03-03", "user-17", "a.b", "x_y", "me@example.org", "k" * MAX_KEY])
def test_a_plain_key_passes_unchanged(key):
    assert check_key(key) == key


def test_the_ledger_never_makes_a_folder_of_a_key(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    with pytest.raises(BadInput):
        ledger.write("deltas", "a/b", {"w": torch.zeros(2)})
    assert not (tmp_path / "ledger" / "deltas" / "a").exists()
    ref = ledger.write("deltas", "2026-03-03", {"w": torch.zeros(2)})
    assert ref.file.startswith("deltas/2026-03-03-") and ref.file.count("/") == 1
