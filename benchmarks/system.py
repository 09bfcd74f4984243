#!/usr/bin/env python
"""Emulator performance on one host: framework overhead per round at 5, 9 and 17 ranks, clients
per rank, peak memory per rank, and the block exchange and whole round (1 KB up) against raw mpi4py side by side.

Each figure comes from one MPI job of `relief-mpi bench --system` (relief_mpi/bench/system.py
has the definitions); this script launches those jobs, each with a timeout, and prints a table.
--clients puts several clients on each rank.

    python benchmarks/system.py                                  # 5, 9, 17 ranks, 10 local steps
    python benchmarks/system.py --ranks 17 --local-steps 10 --max-mb 0
    python benchmarks/system.py --ranks 5 --clients 64 --max-mb 0  # 16 clients per rank

Nothing here asserts a speed; the numbers are printed (and saved as JSON with --json-dir). The
load average of the host is printed next to each job: on a shared host the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def mpiexec() -> str:
    here = Path(sys.executable).parent / "mpiexec"
    exe = str(here) if here.exists() else shutil.which("mpiexec")
    if exe is None:
        sys.exit("no mpiexec on PATH (pip install mpich, or a system MPI)")
    return exe


def launch_cmd(n: int, relief_args: list[str]) -> list[str]:
    """mpiexec -n N python -m relief_mpi ARGS, with Open MPI's oversubscription flags."""
    exe = mpiexec()
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    extra = ["--oversubscribe", "--bind-to", "none"] if ("Open MPI" in out or "OpenRTE" in out) else []
    return [exe, *extra, "-n", str(n), sys.executable, "-m", "relief_mpi", *relief_args]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", default="5,9,17", help="world sizes for the overhead figure")
    ap.add_argument("--clients", type=int, default=None, help="clients per job (default: one per client rank)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--strategy", default="fedavg-sgd", help="fedavg-sgd: our SGD FedAvg, runs --local-steps")
    ap.add_argument("--max-mb", type=int, default=1, help="exchange sweep from 1 KB up to this size (MB); 0 = none")
    ap.add_argument("--sweep-ranks", type=int, default=5, help="world size of the exchange sweep")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per mpiexec")
    ap.add_argument("--json-dir", default=None, help="keep the per-job JSON here")
    ap.add_argument("bench_args", nargs="*", help="more `relief-mpi bench` options, after --")
    a = ap.parse_args()
    jdir = Path(a.json_dir) if a.json_dir else Path(tempfile.mkdtemp(prefix="relief-system-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    results = {}
    for n in [int(x) for x in a.ranks.split(",")]:
        path = jdir / f"system-{n}.json"
        args = ["bench", "--system", "--rounds", str(a.rounds), "--local-steps", str(a.local_steps),
                "--strategies", a.strategy, "--max-mb", str(a.max_mb if n == a.sweep_ranks else 0),
                "--json-out", str(path), *a.bench_args]
        if a.clients:
            args += ["--clients", str(a.clients)]
        cmd = launch_cmd(n, args)
        print(f"$ {' '.join(cmd)}   (load average {os.getloadavg()[0]:.1f})", flush=True)
        try:
            if subprocess.run(cmd, timeout=a.timeout, env=env).returncode == 0 and path.exists():
                results[n] = json.loads(path.read_text())
        except subprocess.TimeoutExpired:
            print(f"!! {n} ranks: no result within {a.timeout:.0f} s (killed)", flush=True)
    print()
    print(f"framework overhead per round ({a.strategy}, {a.rounds} rounds x {a.local_steps} local steps, clock "
          "virtual; median of rounds 2..R); busiest = the client rank whose clients' compute adds up to most")
    print(f"{'ranks':>5} {'clients':>7} {'per rank':>8} {'round wall s':>12} {'busiest s':>9} {'overhead s':>10} "
          f"{'fraction':>8} {'peak RSS/rank MB':>16} {'load':>9}")
    for n, r in results.items():
        ov, rss = r["overhead"], r["peak_rss_train_mb"]
        cpr = ov["clients_per_rank"]
        print(f"{n:>5} {ov['clients']:>7} {min(cpr):>3}..{max(cpr):<4} {ov['round_wall_s']:>12.3f} "
              f"{ov['busiest_rank_compute_s']:>9.3f} {ov['overhead_s']:>10.3f} {ov['overhead_frac']:>8.1%} "
              f"{min(rss):>8.0f}..{max(rss):<6.0f} {r['load_avg_start'][0]:>4.1f}-{r['load_avg_end'][0]:<4.1f}")
    sweep = results.get(a.sweep_ranks, {}).get("throughput")
    if sweep:
        print()
        print(f"block exchange (Bcast + Reduce) and whole round at {a.sweep_ranks} ranks, ours vs raw blocking "
              "mpi4py, interleaved: median ms; ratio = raw / ours (1 = as fast as raw)")
        print(f"{'size':>8} {'raw Bc+Red':>10} {'ours':>11} {'ratio':>6} {'raw round':>10} {'our round':>10} "
              f"{'ratio':>6}")
        for row in sweep:
            b = row["bytes"]
            size = f"{b >> 20} MB" if b >= 1 << 20 else f"{b >> 10} KB"
            print(f"{size:>8} {row['raw_exchange_s'] * 1e3:>10.3f} {row['ours_exchange_s'] * 1e3:>11.3f} "
                  f"{row['exchange_ratio']:>6.2f} {row['raw_round_s'] * 1e3:>10.3f} {row['ours_round_s'] * 1e3:>10.3f} "
                  f"{row['round_ratio']:>6.2f}")
        res = results[a.sweep_ranks]
        print(f"1-4 KB block exchange: {res['small_block_ratio']:.2f} of raw mpi4py's speed (goal >= 0.8); "
              f"whole round {res['small_block_round_ratio']:.2f}")
    print(f"\nJSON: {jdir}")


if __name__ == "__main__":
    main()
