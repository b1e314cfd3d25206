"""The same device, seed and log give the same bytes as before: a change that alters what a device computes
must say so here.

These are the model and export versions `python -m device_sim run --days 10 --seed 1` and `make demo` (30 days,
seed 7) give. On one machine they are a pure function of the code and the data (DESIGN invariant 2); across
machines they are not: torch and MKL pick kernels by the CPU (AVX2 or AVX-512, Intel or AMD), and these
round differently, so one thread gives one result per kind of CPU. The pins are therefore kept per machine
arithmetic: `arithmetic()` hashes the personal state after one training step of the assistant's model on
fixed utterances, a fingerprint of exactly the operations a day's training uses. On a machine whose
fingerprint is not in the table the test fails and says how to add it; its versions are recorded only after
checking, on a machine already in the table, that the code computes what it did.

The versions that `main` gave before this table (on the machine of the sessions that wrote them, whose
fingerprint was not recorded) were aa8330cf60122355 / 7a432a351b33c7fa and b20c382dca3b285e / 83fbb5b955bde3d4.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

RUNS = (("--days", "10", "--seed", "1"), ("--days", "30", "--seed", "7"))  # the second is `make demo`
PINS = {  # arithmetic() -> {run: (model version, export version)}
    "7b13106ed8d2": {  # AMD EPYC with AVX-512 (torch's cpu capability AVX512), 2026-12-02
        RUNS[0]: ("911764449ed29714", "fa2a0cf8c240fdbd"),
        RUNS[1]: ("c51495c04f81a5cd", "b5d70a96eee397de"),
    },
    "f97daae5c2e9": {  # AMD EPYC with AVX2 (torch's cpu capability AVX2), 2026-12-02; the code that gave the
        RUNS[0]: ("11abbd1a6a95a38e", "f695da79f551c89b"),  # versions above unchanged since (git diff cd43e7c)
        RUNS[1]: ("7c76e3880185542f", "6c0641a4f89e168a"),
    },
}


def arithmetic() -> str:
    """12 hex digits: a hash of the personal state after one AdamW step of joint loss on eight fixed CLINC150
    utterances, one torch thread (what a day's training computes, in miniature)."""
    from assistant_forget.core.fitting import AdamW
    from assistant_forget.device.clinc import load_clinc
    from assistant_forget.families.assistant.base import load_base
    from assistant_forget.families.assistant.family import build_personal_model
    from assistant_forget.families.assistant.personalize import (PersonalizationConfig, joint_loss,
                                                                 personal_parameters)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base, cfg = load_base(), PersonalizationConfig()
        model = build_personal_model(base, cfg)
        names = personal_parameters(model, cfg)
        params = dict(model.named_parameters())
        rows = load_clinc()["train"][:8]
        index = {n: i for i, n in enumerate(base.labels)}
        torch.manual_seed(0)
        opt = AdamW([params[n] for n in names], lr=cfg.lr)
        loss = joint_loss(model, base.tokenizer, [t for t, _ in rows], torch.tensor([index[i] for _, i in rows]),
                          cfg.lm_weight, base.config.max_len)
        loss.backward()
        opt.step()
        h = hashlib.sha256()
        for n in sorted(names):
            h.update(params[n].detach().numpy().tobytes())
        return h.hexdigest()[:12]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("args", RUNS, ids=lambda a: f"days{a[1]}-seed{a[3]}")
def test_a_simulated_device_gives_the_versions_it_gave_before(args, tmp_path):
    here = arithmetic()
    assert here in PINS, (f"this machine's arithmetic ({here}, torch cpu capability "
                          f"{torch.backends.cpu.get_cpu_capability()}) has no pinned versions: on a machine that is "
                          "in PINS, check the code still gives its versions; then add this machine's fingerprint "
                          "with the versions `python -m device_sim run ARGS` prints here")
    out = subprocess.run([sys.executable, "-m", "device_sim", "run", *args, "--device", str(tmp_path / "dev")],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict((line[:24].strip(), line[24:].strip())
                 for line in out.stdout.splitlines() if len(line) > 24)
    model, export = PINS[here][args]
    assert lines["model version"] == f"{model} (exact)"
    assert lines["export version"] == export


def test_the_fingerprint_is_the_same_in_another_process():
    code = "import sys; sys.path.insert(0, 'tests/sim'); from test_versions import arithmetic; print(arithmetic())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == arithmetic()
