"""Any canary format (verify/canary.py and verification.exposure): slots read off the canary itself or given,
the space enumerated in index order against itertools.product, and the refusals a user gets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from assistant_forget.cli import main
from assistant_forget.core.errors import BadInput
from assistant_forget.verify import canary as C
from assistant_forget.verify import verification as V
from devkit import START, make_device, persona_log

LOCKER = "remind me my locker code is 3 7 1 9 5"


def ref_space(fmt_pieces: list[str]) -> list[str]:
    """Every secret of a format written as pieces ('d', 'l' or literal text), slots in order, last fastest."""
    choices = [C.ALPHABETS[p] if p in ("d", "l") else [p] for p in fmt_pieces]
    return ["".join(t) for t in itertools.product(*choices)]


def test_the_candidate_space_is_every_filling_of_the_slots_in_order() -> None:
    fmt, pieces = "code {l}-{d}{l}!", ["code ", "l", "-", "d", "l", "!"]
    want = ref_space(pieces)
    assert C.space_size(fmt) == len(want) == 26 * 10 * 26
    assert list(C.enumerate_candidates(fmt)) == want
    assert [C.secret_index(fmt, t) for t in want] == list(range(len(want)))
    assert C.secret_index(fmt, "code Q-7Z!") == want.index("code q-7z!")  # letters in either case
    assert list(C.enumerate_candidates("pin {d}{d}")) == ref_space(["pin ", "d", "d"])  # digits: decimal order
    sample = C.sample_candidates(fmt, 500, seed=2, exclude=["code a-0a!"])
    assert len(set(sample)) == 500 and set(sample) <= set(want) and "code a-0a!" not in sample


@pytest.mark.parametrize("canary, fmt, size", [
    (LOCKER, "remind me my locker code is {d} {d} {d} {d} {d}", 10**5),
    ("my bank pin is 4 8 1 9 3", C.DEFAULT_CANARY_FORMAT, 10**5),
    ("wifi password is k9x2m.", "wifi password is {l}{d}{l}{d}{l}.", 26**3 * 100),
    ("a code: 12 {34}", "a code: {d}{d} {{{d}{d}}}", 10**4),  # 'a' alone is a word; braces stay literal
    ("I said 7 7 7 7 at 9pm", "I said {d} {d} {d} {d} at {d}{l}{l}", 10**5 * 26**2),
])
def test_the_format_is_read_off_the_canary(canary: str, fmt: str, size: int) -> None:
    assert C.derive_format(canary) == fmt
    assert C.canary_format(canary) == fmt and C.space_size(fmt) == size
    assert C.candidate(fmt, C.secret_index(fmt, canary)) == canary


def test_a_canary_without_slots_or_with_too_few_secrets_is_refused_saying_why() -> None:
    with pytest.raises(BadInput, match="no digit"):
        C.canary_format("my pin")
    with pytest.raises(BadInput, match=r"only 100 secrets .*log2\(100\) = 6.6 bits"):
        C.canary_format("my door code is 4 2")
    with pytest.raises(BadInput, match="not a secret of the format"):
        C.canary_format(LOCKER, "my bank pin is {d} {d} {d} {d} {d}")
    with pytest.raises(BadInput, match="only 260 secrets"):
        C.canary_format("door x 3", "door {l} {d}")
    with pytest.raises(BadInput, match="only '\\{d\\}'"):
        C.canary_format("door x 3", "door {x} {d}")
    assert C.canary_format("my door code is x 4 2 1", "my door code is {l} {d} {d} {d}") == \
        "my door code is {l} {d} {d} {d}"  # an explicit format marks a lone letter


class Stub:
    """A scoring backend on characters (case folded, like the tokenizer): pseudo-random next-piece logits that
    depend on the whole prefix, and, when `memorised` is set, a strong preference for that text."""

    name, labels, oos_threshold, vocab = "stub", (), 0.5, 64

    def __init__(self, memorised: str | None = None) -> None:
        self.target = self.encode([memorised])[0] if memorised else None

    def encode(self, texts):
        return [[1] + [3 + ord(c) % 61 for c in t.lower()] + [2] for t in texts]

    def run(self, ids: np.ndarray, mask: np.ndarray):
        h = np.cumsum(ids * 7919, axis=1) % 1009  # (B, T) a hash of each prefix
        logits = np.sin(h[..., None] * 0.37 * (np.arange(self.vocab) + 1))  # (B, T, V)
        if self.target is not None:
            t = np.array(self.target)
            for b in range(ids.shape[0]):
                for p in range(min(ids.shape[1], len(t) - 1)):
                    if np.array_equal(ids[b, : p + 1], t[: p + 1]):
                        logits[b, p, t[p + 1]] += 20.0
        return np.zeros((ids.shape[0], 1)), logits


def test_exposure_ranks_a_user_canary_among_its_own_space() -> None:
    canary, cfg = "my door code is K9X", V.VerifyConfig()  # derived: {l}{d}{l}, 6,760 secrets
    e = V.exposure({"current": Stub(canary), "oracle": Stub()}, canary, [], cfg)
    assert e["space"] == 6760 and e["candidates"] == 6759  # 'my door code is k9x' is the canary, not a rival
    assert e["rank_bits"]["current"] == pytest.approx(math.log2(6760))  # memorised: rank 1
    assert e["rank_bits"]["oracle"] < 8
    explicit = V.VerifyConfig(canary_format="my door code is {l}9{l}")  # 676 secrets: too few
    with pytest.raises(BadInput, match="only 676 secrets"):
        V.exposure({"current": Stub()}, canary, [], explicit)


def test_a_large_space_is_ranked_on_a_seeded_sample(monkeypatch) -> None:
    monkeypatch.setattr(V, "MAX_RANKED", 3000)
    canary = "card 1 2 3 4 5 6"  # 10^6 secrets
    e = V.exposure({"current": Stub(canary)}, canary, [], V.VerifyConfig())
    assert e["space"] == 10**6 and e["candidates"] == 3000
    assert e["rank_bits"]["current"] == pytest.approx(math.log2(3001))
    assert V.exposure({"current": Stub()}, canary, [], V.VerifyConfig()) == \
        V.exposure({"current": Stub()}, canary, [], V.VerifyConfig())  # the sample is seeded


def test_cli_refuses_a_bad_canary_with_exit_code_2_before_any_work(tmp_path, capsys) -> None:
    dev = make_device(tmp_path / "dev", persona_log(days=2), train=False)  # refused before any training
    cases = [(["--canary", "my pin"], "no digit"), (["--canary", "my door code is 4 2"], "only 100 secrets"),
             (["--canary", LOCKER, "--canary-format", "my bank pin is {d} {d} {d} {d} {d}"], "not a secret"),
             (["--canary-format", "pin {d}{d}{d}{d}"], "needs --canary")]
    for extra, why in cases:
        assert main(["verify", "--device", str(dev), "--date", START.isoformat(), *extra]) == BadInput.exit_code
        assert why in capsys.readouterr().err
    assert not (tmp_path / "dev-verify").exists()
