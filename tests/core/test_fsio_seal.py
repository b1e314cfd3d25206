"""Sealed JSON (core/fsio.py): the fast check hashes the bytes with the seal's line cut out; it must accept
exactly what the re-encoding check accepts, and the single-encoding writer must give the same bytes."""

from __future__ import annotations

import json
import random

import pytest

from assistant_forget.core.fsio import SEAL, _canonical_json, sealed_json_bytes, sha256_bytes, unseal_json

OBJECTS = [{}, {"a": 1}, {"zz": [1, 2]}, {"a": {SEAL: "x"}, "b": [1, {"c": None}]}, {SEAL: "stale", "z": {"y": 1}},
           {"a": '\n  "sha256": "'}, {"zzz": {SEAL: "0" * 64}}, {"m": "é ☃"}]


def _reference(obj: dict) -> bytes:
    """The seal as defined: canonical JSON of the body plus the SHA-256 of the body's canonical JSON."""
    body = {k: v for k, v in obj.items() if k != SEAL}
    return _canonical_json({**body, SEAL: sha256_bytes(_canonical_json(body))})


@pytest.mark.parametrize("obj", OBJECTS)
def test_writer_gives_the_defined_bytes_and_reads_back(obj: dict) -> None:
    data = sealed_json_bytes(obj)
    assert data == _reference(obj)
    assert unseal_json(data) == {k: v for k, v in obj.items() if k != SEAL}


def test_every_changed_byte_is_refused() -> None:
    data = sealed_json_bytes({"days": {f"2025-01-{d:02d}": {"file": f"d{d}", SEAL: "ab" * 32} for d in range(1, 9)},
                              "model": "m", "version": 3})
    rng = random.Random(0)
    for pos in rng.sample(range(len(data)), 150) + [len(data) - 1]:
        for new in {(data[pos] + 1) % 256, ord(" "), ord("0")} - {data[pos]}:
            bad = data[:pos] + bytes([new]) + data[pos + 1:]
            try:
                obj = json.loads(bad)
            except ValueError:
                continue  # not JSON: refused anyway
            with pytest.raises(ValueError, match="checksum mismatch"):
                unseal_json(bad)
                raise AssertionError(f"byte {pos} changed to {new} was accepted: {obj}")
    with pytest.raises(ValueError):
        unseal_json(data[:-2])


def test_seal_with_other_layout_is_checked_the_slow_way() -> None:
    obj = {"a": 1, "b": 2}
    compact = json.dumps({**obj, SEAL: sha256_bytes(_canonical_json(obj))}).encode()
    with pytest.raises(ValueError):
        unseal_json(compact)  # not the canonical bytes: refused, as before
