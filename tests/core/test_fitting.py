"""core/fitting.py: the hand-written AdamW is torch's update bit for bit, and fitting never imports dynamo."""

from __future__ import annotations

import subprocess
import sys

import torch

from assistant_forget.core.fitting import AdamW, fit, minibatches


def _pair(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    a = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    b = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    b.load_state_dict(a.state_dict())
    return a, b


def test_adamw_equals_torch_bit_for_bit() -> None:
    ours_model, torch_model = _pair(0)
    ours = AdamW(ours_model.parameters(), lr=3e-3)
    ref = torch.optim.AdamW(torch_model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    for step in range(40):
        x, y = torch.randn(8, 5, generator=g), torch.randn(8, 3, generator=g)
        for model, opt in ((ours_model, ours), (torch_model, ref)):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            if step % 7 == 3:  # the last layer's bias gets no gradient on some steps: skipped, step count kept
                loss = ((model[0](x).tanh() @ model[2].weight.t() - y) ** 2).mean()
            loss.backward()
            opt.step()
    for (name, p), q in zip(ours_model.named_parameters(), torch_model.parameters()):
        assert torch.equal(p, q), name  # equal bits, not close


def test_adamw_moves_parameters_downhill() -> None:
    model, _ = _pair(2)
    opt = AdamW(model.parameters(), lr=1e-2)
    x, y = torch.randn(32, 5), torch.zeros(32, 3)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = (model(x) ** 2).mean()
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first


def test_fit_stops_when_done_and_returns_steps() -> None:
    import random

    model, _ = _pair(3)
    batches = minibatches(random.Random(0), list(range(64)), 8, steps=12)
    calls = []
    taken = fit(model, batches, lambda b: (model(torch.ones(len(b), 5)) ** 2).mean(), 1e-2, 4,
                done=lambda: calls.append(1) or len(calls) == 2)
    assert taken == 8 and len(calls) == 2 and not model.training


def test_fitting_never_imports_dynamo() -> None:
    code = ("import sys, torch\n"
            "from assistant_forget.core.fitting import fit\n"
            "m = torch.nn.Linear(3, 2)\n"
            "fit(m, [[0], [1]], lambda b: m(torch.ones(len(b), 3)).sum(), 0.1, 1)\n"
            "print(sorted(n for n in sys.modules if n.startswith('torch._dynamo')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
