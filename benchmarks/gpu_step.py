#!/usr/bin/env python
"""One client's training step of the paper model (batch 32) against ten clients' steps stacked as
one grouped model, and a plain matmul on the same device: is a step bound by kernel launches,
and what would training a rank's clients together gain?

    python benchmarks/gpu_step.py --device cpu              # this host's cores
    python benchmarks/gpu_step.py --device cuda --json OUT   # what benchmarks/gpu_check.sh runs

- single:  one client, one model: forward, cross-entropy, backward, SGD (the optimizer the clients use).
- looped:  ten clients, ten models, one step each in turn (what a rank hosting ten clients does today).
- grouped: the ten models' parameters stacked and one step of all ten through torch.func (vmap of
  grad of functional_call, randomness "different" for dropout). BatchNorm runs on batch statistics
  only here (torch.func cannot update running statistics under vmap): the same FLOPs.
- matmul:  an n x n float32 matmul, 2 n^3 FLOPs, as the device's attainable rate.

Times are the median of --repeat timed runs of --steps steps each, after --warmup steps, with
the device synchronised around each run (torch.cuda.synchronize; nothing on the CPU). FLOPs per
step are relief-mpi's own count (model/flops.py) for every encoder and the top trained. Nothing
is asserted; the figures are printed (and written as JSON with --json).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relief_mpi.device.gpu import rank_device, synchronizer  # noqa: E402
from relief_mpi.model.flops import measure_costs  # noqa: E402
from relief_mpi.model.optim import Sgd  # noqa: E402
from relief_mpi.model.paper import PaperNet  # noqa: E402


def timed(fn: Callable[[], object], steps: int, warmup: int, repeat: int, sync: Callable[[], None]) -> float:
    """Median seconds per call of fn over `repeat` runs of `steps` calls (after `warmup` calls)."""
    for _ in range(warmup):
        fn()
    sync()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        runs.append((time.perf_counter() - t0) / steps)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--channels", default="3,3", help="channels per modality (SPAR watch: acc, gyro)")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--classes", type=int, default=9)
    ap.add_argument("--encoder-channels", default="64,128")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--matmul", type=int, default=0, help="matmul size n (default 4096 on CUDA, 1024 on the CPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (default: torch's)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rd = rank_device(a.device, "auto", 1.0, 0)
    dev = rd.torch_device
    sync = synchronizer(dev)
    chans = [int(c) for c in a.channels.split(",")]
    enc = tuple(int(c) for c in a.encoder_channels.split(","))
    torch.manual_seed(0)
    proto = PaperNet(chans, a.classes, encoder_channels=enc)
    every = range(len(chans))
    flops = measure_costs(copy.deepcopy(proto), chans, a.window, a.batch).step(every, every, a.batch)
    models = [copy.deepcopy(proto).to(dev) for _ in range(a.clients)]
    x = torch.randn(a.clients, a.batch, sum(chans), a.window, device=dev)
    y = torch.randint(0, a.classes, (a.clients, a.batch), device=dev)
    bounds = [sum(chans[:m]) for m in range(len(chans) + 1)]

    def split(xb: torch.Tensor) -> list[torch.Tensor]:
        return [xb[..., bounds[m]:bounds[m + 1], :] for m in range(len(chans))]

    opts = [Sgd(list(m.parameters()), lr=0.01) for m in models]

    def step(i: int) -> None:
        loss = F.cross_entropy(models[i](split(x[i])), y[i])
        opts[i].zero_grad()
        loss.backward()
        opts[i].step()

    for m in models:
        m.train()
    def all_clients() -> None:
        for i in range(a.clients):
            step(i)

    single = timed(lambda: step(0), a.steps, a.warmup, a.repeat, sync)
    looped = timed(all_clients, max(1, a.steps // a.clients), 1, a.repeat, sync)
    grouped = grouped_step_time(proto, a, dev, x, y, split, sync)
    n = a.matmul or (4096 if dev.type == "cuda" else 1024)
    ma, mb = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    mm = timed(lambda: torch.mm(ma, mb), max(3, a.steps // 2), 2, a.repeat, sync)
    res = {
        "device": rd.device, "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "batch": a.batch, "clients": a.clients, "flops_per_step": flops,
        "single_ms": 1e3 * single, "single_gflops": flops / single / 1e9,
        "looped_ms_per_client_step": 1e3 * looped / a.clients, "looped_gflops": flops * a.clients / looped / 1e9,
        "grouped_ms_per_client_step": 1e3 * grouped / a.clients, "grouped_gflops": flops * a.clients / grouped / 1e9,
        "matmul_n": n, "matmul_gflops": 2 * n**3 / mm / 1e9, "torch": torch.__version__,
    }
    print(f"device {res['device']} ({res['device_name']}, {res['threads']} threads): paper model, batch {a.batch}, "
          f"{flops / 1e9:.2f} GFLOP per step")
    print(f"single  {res['single_ms']:8.2f} ms per step          {res['single_gflops']:9.1f} GFLOP/s")
    print(f"looped  {res['looped_ms_per_client_step']:8.2f} ms per client-step   {res['looped_gflops']:9.1f} GFLOP/s "
          f"({a.clients} models in turn)")
    print(f"grouped {res['grouped_ms_per_client_step']:8.2f} ms per client-step   {res['grouped_gflops']:9.1f} GFLOP/s "
          f"({a.clients} models as one, torch.func.vmap)")
    print(f"matmul  {n}x{n}: {res['matmul_gflops']:.1f} GFLOP/s; single step at "
          f"{100 * res['single_gflops'] / res['matmul_gflops']:.0f}% of it, grouped at "
          f"{100 * res['grouped_gflops'] / res['matmul_gflops']:.0f}%")
    if a.json is not None:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


def grouped_step_time(proto: PaperNet, a: argparse.Namespace, dev: torch.device, x: torch.Tensor, y: torch.Tensor,
                      split: Callable[[torch.Tensor], list[torch.Tensor]], sync: Callable[[], None]) -> float:
    """Seconds per step of all clients at once: stacked parameters, vmap(grad(loss)), SGD on the stack."""
    from torch.func import functional_call, grad, replace_all_batch_norm_modules_, stack_module_state, vmap

    base = replace_all_batch_norm_modules_(copy.deepcopy(proto)).to(dev)
    base.train()
    clones = [copy.deepcopy(base) for _ in range(a.clients)]
    params, buffers = stack_module_state(clones)
    params = {k: v.detach() for k, v in params.items()}

    def loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor,
             yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (split(xb),)), yb)

    grads = vmap(grad(loss), in_dims=(0, 0, 0, 0), randomness="different")

    def step() -> None:
        g = grads(params, buffers, x, y)
        for k in params:
            params[k].sub_(g[k], alpha=0.01)

    return timed(step, max(1, a.steps // a.clients), 1, a.repeat, sync)


if __name__ == "__main__":
    sys.exit(main())
