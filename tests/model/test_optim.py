"""model/optim.py against torch.optim: the same parameters after every step, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from relief_mpi.model.optim import Adam, Sgd


def _net() -> torch.nn.Module:
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    net.register_parameter("unused", torch.nn.Parameter(torch.ones(4)))  # never gets a grad
    return net


def _train(net: torch.nn.Module, opt: object, steps: int) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    seen = []
    for s in range(steps):
        x = torch.randn(16, 6, generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()  # type: ignore[attr-defined]
        loss.backward()
        if s % 3 == 2:  # a masked gradient, as a client's partial block training leaves it
            net[0].weight.grad[:, :3] = 0
        opt.step()  # type: ignore[attr-defined]
        seen.append([p.detach().clone() for p in net.parameters()])
    return seen


@pytest.mark.parametrize("make", [
    (lambda ps: Sgd(ps, lr=0.05), lambda ps: torch.optim.SGD(ps, lr=0.05)),
    (lambda ps: Sgd(ps, lr=0.05, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
    (lambda ps: Adam(ps, lr=0.01), lambda ps: torch.optim.Adam(ps, lr=0.01)),
], ids=["sgd", "sgd-momentum", "adam"])
def test_same_parameters_as_torch_optim_every_step(make) -> None:
    ours_net, ref_net = _net(), _net()
    ours = _train(ours_net, make[0](list(ours_net.parameters())), 12)
    ref = _train(ref_net, make[1](list(ref_net.parameters())), 12)
    names = [n for n, _ in _net().named_parameters()]
    start = dict(zip(names, (p.detach() for p in _net().parameters()), strict=True))
    for step, (a, b) in enumerate(zip(ours, ref, strict=True)):
        for i, (pa, pb) in enumerate(zip(a, b, strict=True)):
            assert torch.equal(pa, pb), f"step {step + 1}, parameter {i}"
    last = dict(zip(names, ours[-1], strict=True))
    assert not torch.equal(last["0.weight"], start["0.weight"])  # it trained
    assert torch.equal(last["unused"], start["unused"])  # the parameter without a grad was left alone


def test_zero_grad_clears_to_none() -> None:
    net = _net()
    opt = Sgd(net.parameters(), lr=0.1)
    net(torch.ones(2, 6)).sum().backward()
    opt.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_a_training_process_never_imports_torch_dynamo(tmp_path) -> None:
    """The reason model/optim.py exists: a rank that trains and pre-trains stays clear of torch._dynamo."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from relief_mpi.model.optim import Adam, Sgd\n"
            "net = torch.nn.Linear(3, 2)\n"
            "for opt in (Sgd(net.parameters(), 0.1, 0.9), Adam(net.parameters(), 0.1)):\n"
            "    net(torch.ones(1, 3)).sum().backward(); opt.step(); opt.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
