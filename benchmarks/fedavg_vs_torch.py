#!/usr/bin/env python
"""FedAvg through relief-mpi vs the same training as a plain single-process PyTorch loop.

    python benchmarks/fedavg_vs_torch.py                  # SPAR from ../shared/data, 3 ranks
    python benchmarks/fedavg_vs_torch.py --ranks 3 --rounds 10 --steps 20

The job: SPAR, 10 native clients with every sensor (benchmarks/native-all.fleet.toml), 10 rounds
x 20 local SGD steps, batch 32, lr 0.05, `fedavg-sgd` (our SGD FedAvg), run by
`mpiexec -n 3 relief-mpi train` (the server and 2 client ranks hosting 5 clients each).

The plain loop builds the same model and the same client windows with relief-mpi's own builders
(not timed), then per round, for each client: load the global weights, 20 SGD steps on random
batches of its windows, add its weights x its samples; the new global model is the weighted
mean (FedAvg). Per-round time = that loop; relief-mpi's = the log's wall_time_s (the round
without evaluation). The ratio printed is relief-mpi / plain (goal <= 1.1). Nothing asserts a
speed; on a loaded host run it a few times and read the spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPAR = HERE.parent.parent / "shared" / "data" / "spar-watch-10subj"


def job_args(a: argparse.Namespace) -> list[str]:
    return ["--strategy", "fedavg-sgd", "--dataset", "spar", "--data-dir", a.data_dir, "--clients", str(a.clients),
            "--fleet", str(HERE / "native-all.fleet.toml"), "--rounds", str(a.rounds), "--local-steps", str(a.steps),
            "--batch-size", "32", "--lr", "0.05", "--seed", str(a.seed), "--eval-every", str(a.rounds)]


def run_relief(a: argparse.Namespace, out: Path) -> list[float]:
    sys.path.insert(0, str(HERE))
    from system import launch_cmd  # benchmarks/system.py: mpiexec with Open MPI's extra flags

    cmd = launch_cmd(a.ranks, ["train", *job_args(a), "--quiet", "--out", str(out)])
    print("$ " + " ".join(cmd), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, timeout=a.timeout, env=env)
    from relief_mpi.bench.system import host_cores, overhead_from_log
    from relief_mpi.log.hdf5 import read_log

    ov = overhead_from_log(out, host_cores(), a.ranks - 1)
    print(f"relief-mpi: {a.clients} clients on {a.ranks - 1} client ranks (trained in parallel there); its own "
          f"overhead (round wall - busiest rank's client compute), median: {ov['overhead_s']:.3f} s", flush=True)
    return [float(w) for w in read_log(out).rounds["wall_time_s"]]


def run_plain(a: argparse.Namespace) -> list[float]:
    import torch
    import torch.nn.functional as F

    from relief_mpi.cli.options import build_config
    from relief_mpi.cli.train import train
    from relief_mpi.client import split_modalities
    from relief_mpi.run_setup import build_setup

    torch.set_num_threads(1)
    ctx = train.make_context("train", [*job_args(a), "--transport", "inprocess"])
    cfg = build_config(ctx.params)
    setup = build_setup(cfg, a.clients)
    spec = setup.data.spec
    every = frozenset(range(len(spec.modalities)))
    data = [(torch.from_numpy(ws.x), torch.from_numpy(ws.y)) for ws in setup.data.clients_train]
    model = setup.make_model()
    global_state = {n: t.clone() for n, t in model.state_dict().items()}
    times = []
    for rnd in range(a.rounds):
        t0 = time.perf_counter()
        total = 0.0
        acc = {n: torch.zeros_like(t, dtype=torch.float64) for n, t in global_state.items() if t.is_floating_point()}
        for k, (x, y) in enumerate(data):
            model.load_state_dict(global_state)
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            gen = torch.Generator().manual_seed(a.seed * 1000 + rnd * 100 + k)
            samples = 0
            for _ in range(a.steps):
                idx = torch.randint(len(y), (min(32, len(y)),), generator=gen)
                loss = F.cross_entropy(model(split_modalities(x[idx], spec, every, True)), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                samples += int(idx.numel())
            for n, t in model.state_dict().items():
                if n in acc:
                    acc[n] += samples * t.double()
            total += samples
        global_state.update({n: (v / total).to(global_state[n].dtype) for n, v in acc.items()})
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=3)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=str(SPAR))
    ap.add_argument("--timeout", type=float, default=1800)
    a = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="relief-vs-torch-") as tmp:
        ours = run_relief(a, Path(tmp) / "fedavg.h5")
    plain = run_plain(a)
    load1 = os.getloadavg()
    # round 1 builds the communicators (relief-mpi) and warms up torch (both): medians of rounds 2..R
    m_ours, m_plain = statistics.median(ours[1:] or ours), statistics.median(plain[1:] or plain)
    print(f"per round, median of rounds 2..{a.rounds} (s): relief-mpi ({a.ranks} ranks) {m_ours:.3f}, "
          f"plain PyTorch loop (1 process) {m_plain:.3f}")
    print("relief-mpi rounds (s): " + " ".join(f"{t:.2f}" for t in ours))
    print("plain rounds (s):      " + " ".join(f"{t:.2f}" for t in plain))
    print(f"ratio relief-mpi / plain: {m_ours / m_plain:.2f} (goal <= 1.1); load average "
          f"{load0[0]:.1f} at start, {load1[0]:.1f} at end, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
