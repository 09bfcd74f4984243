#!/usr/bin/env python
"""Emulator performance on one host: framework overhead per round at 5, 9 and 17 ranks, block
exchange throughput (ours vs raw mpi4py) and peak memory per rank.

Each figure comes from `mpiexec -n N relief-mpi bench --system` (see relief_mpi/bench/system.py
for the definitions); this script launches those jobs, each with a timeout, and prints a table.

    python benchmarks/system.py                       # 5, 9, 17 ranks; sweep 1 KB..64 MB at 5 ranks
    python benchmarks/system.py --ranks 5,9 --max-mb 16 --rounds 4 --local-steps 2

Keep rounds and steps small on a small host: 17 ranks on 2 cores are slow. Nothing here asserts a
speed; the numbers are printed (and saved as JSON with --json-dir) for the docs and the notes.
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


def launch(n: int, args: list[str], timeout: float) -> int:
    exe = mpiexec()
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    extra = ["--oversubscribe", "--bind-to", "none"] if ("Open MPI" in out or "OpenRTE" in out) else []
    cmd = [exe, *extra, "-n", str(n), sys.executable, "-m", "relief_mpi", "bench", "--system", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    print("$ " + " ".join(cmd[:1] + cmd[1 + len(extra):]), flush=True)
    try:
        return subprocess.run(cmd, timeout=timeout, env=env).returncode
    except subprocess.TimeoutExpired:
        print(f"!! {n} ranks: no result within {timeout:.0f} s (killed)", flush=True)
        return -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", default="5,9,17", help="world sizes for the overhead figure")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--local-steps", type=int, default=2)
    ap.add_argument("--strategy", default="fedavg")
    ap.add_argument("--max-mb", type=int, default=64, help="throughput sweep up to this size (MB)")
    ap.add_argument("--sweep-ranks", type=int, default=5, help="world size of the throughput sweep")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per mpiexec")
    ap.add_argument("--json-dir", default=None, help="keep the per-job JSON here")
    a = ap.parse_args()
    jdir = Path(a.json_dir) if a.json_dir else Path(tempfile.mkdtemp(prefix="relief-system-"))
    results = {}
    for n in [int(x) for x in a.ranks.split(",")]:
        path = jdir / f"system-{n}.json"
        args = ["--rounds", str(a.rounds), "--local-steps", str(a.local_steps), "--strategies", a.strategy,
                "--max-mb", str(a.max_mb if n == a.sweep_ranks else 0), "--json-out", str(path)]
        if launch(n, args, a.timeout) == 0 and path.exists():
            results[n] = json.loads(path.read_text())
    print()
    print(f"framework overhead per round ({a.strategy}, {a.rounds} rounds x {a.local_steps} local steps, "
          "clock virtual; median of rounds 2..R)")
    print(f"{'ranks':>5} {'cores':>5} {'round wall s':>12} {'slowest client s':>16} {'overhead s':>10} "
          f"{'fraction':>8} {'1st round s':>11} {'peak RSS/rank MB (min..max)':>28}")
    for n, r in results.items():
        ov, rss = r["overhead"], r["peak_rss_train_mb"]
        print(f"{n:>5} {ov['cores']:>5} {ov['round_wall_s']:>12.3f} {ov['slowest_compute_s']:>16.3f} "
              f"{ov['overhead_s']:>10.3f} {ov['overhead_frac']:>8.1%} {ov['first_round_wall_s']:>11.3f} "
              f"{min(rss):>13.0f}..{max(rss):.0f}")
    sweep = results.get(a.sweep_ranks, {}).get("throughput")
    if sweep:
        print()
        print(f"block exchange at {a.sweep_ranks} ranks: median ms per operation; ratio = raw time / our time "
              "(<1: ours slower)")
        print(f"{'size':>8} {'raw Reduce':>10} {'our Ireduce':>11} {'ratio':>6} {'raw Bcast+Reduce':>16} "
              f"{'our round':>9} {'ratio':>6} {'our MB/s':>9}")
        for row in sweep:
            b = row["bytes"]
            size = f"{b >> 20} MB" if b >= 1 << 20 else f"{b >> 10} KB"
            print(f"{size:>8} {row['raw_reduce_s'] * 1e3:>10.3f} {row['ours_reduce_s'] * 1e3:>11.3f} "
                  f"{row['reduce_ratio']:>6.2f} {row['raw_bcast_reduce_s'] * 1e3:>16.3f} "
                  f"{row['ours_round_s'] * 1e3:>9.3f} {row['round_ratio']:>6.2f} {row['ours_reduce_mbps']:>9.1f}")
        rss = results[a.sweep_ranks].get("peak_rss_after_sweep_mb", [])
        if rss:
            print("peak RSS per rank after the sweep (MB): " + ", ".join(f"r{i} {v:.0f}" for i, v in enumerate(rss)))
    print(f"\nJSON: {jdir}")


if __name__ == "__main__":
    main()
