#!/usr/bin/env python
"""The verdicts of benchmarks/gpu_check.sh, one PASS/FAIL line each with its figures, from the
logs its jobs wrote (relief_mpi.log.hdf5.read_log). Also runs on CPU logs (its --cpu-dry-run).

    gpu_check_eval.py hosts OUT.txt DEVICE          every rank line of `hosts check` on DEVICE
    gpu_check_eval.py tiers LOG [mps]               per tier: measured and charged ms per step vs the share
    gpu_check_eval.py cpu-vs-cuda CPU.h5 CUDA.h5    same S_n (alloc) and k_n every round, final macro-F1 within 0.01
    gpu_check_eval.py same A.h5 B.h5 WHAT           every logged number equal but measured wall-clock figures
    gpu_check_eval.py memory SAMPLES.csv            peak GPU memory per process (nvidia-smi samples)

Exit 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relief_mpi.log.hdf5 import read_log  # noqa: E402

TOLERANCE_F1 = 0.01  # CPU vs CUDA, final macro-F1 (docs/devices.md#same-numbers)
WALL = {"wall_time_s", "wall_elapsed_s", "compute_wall_s", "energy_measured_j", "lag_s", "busy_s", "idle_s",
        "wait_s", "virtual_time_s", "virtual_elapsed_s", "energy_j", "tier_time_s"}


def verdict(ok: bool, name: str, figures: str) -> int:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {figures}", flush=True)
    return 0 if ok else 1


def hosts(out: str, device: str) -> int:
    lines = [ln for ln in Path(out).read_text().splitlines() if re.match(r"rank \d+ ", ln)]
    on = [ln for ln in lines if f"-> {device}" in ln]
    agreed = any(ln.startswith("ok:") for ln in Path(out).read_text().splitlines())
    ok = bool(lines) and len(on) == len(lines) and agreed
    shares = sorted({ln.split("; share ")[1].split(" ")[0] for ln in lines if "; share " in ln})
    return verdict(ok, f"hosts check --device {device}", f"{len(on)}/{len(lines)} ranks on {device}, share {shares}")


def tiers(path: str, mps: bool = False) -> int:
    log = read_log(path)
    prof = log.profiles
    steps = log.clients["steps"].sum(axis=0)
    wall = log.clients["compute_wall_s"].sum(axis=0)
    busy = log.clients["busy_s"].sum(axis=0)
    rows, ok = [], True
    by_tier: dict[str, list[int]] = defaultdict(list)
    for k, p in enumerate(prof):
        by_tier[p["tier"]].append(k)
    for tier, ks in by_tier.items():
        t = prof[ks[0]]["throttle"]
        share, method = float(t.get("gpu_share", 1.0)), t.get("share_method", "?")
        n = steps[ks].sum()
        measured, charged = 1e3 * wall[ks].sum() / n, 1e3 * busy[ks].sum() / n
        want = 1.0 / share if method == "clock" else 1.0
        ratio = charged / measured
        ok &= abs(ratio / want - 1) < 0.05 and (method == "mps") == (mps and share < 1 and t["device"] != "cpu")
        rows.append(f"{tier} (share {share:g}, {method}): {measured:.2f} ms measured, {charged:.2f} ms charged "
                    f"(x{ratio:.2f}, want x{want:.2f})")
    return verdict(ok, f"per-tier step times {'with' if mps else 'without'} MPS", "; ".join(rows))


def cpu_vs_cuda(a: str, b: str) -> int:
    la, lb = read_log(a), read_log(b)
    same_s = np.array_equal(la.alloc, lb.alloc)
    same_k = np.array_equal(la.alloc.sum(axis=2), lb.alloc.sum(axis=2))
    fa, fb = float(la.rounds["macro_f1"][-1]), float(lb.rounds["macro_f1"][-1])
    dev = json.loads(lb.attrs.get("server_device", "{}")).get("device", "?")
    ok = same_s and same_k and abs(fa - fb) <= TOLERANCE_F1
    return verdict(ok, "CPU vs CUDA numbers", f"S_n equal {same_s}, k_n equal {same_k}, final macro-F1 {fa:.4f} "
                   f"(cpu) vs {fb:.4f} ({dev}), |diff| {abs(fa - fb):.4f} <= {TOLERANCE_F1}; {len(la.rounds)} rounds")


def same(a: str, b: str, what: str) -> int:
    la, lb = read_log(a), read_log(b)
    diffs = [n for n in la.rounds.dtype.names or () if n not in WALL
             and not np.array_equal(la.rounds[n], lb.rounds[n], equal_nan=True)]
    diffs += [f"clients/{n}" for n in la.clients if n not in WALL
              and not np.array_equal(la.clients[n], lb.clients[n], equal_nan=True)]
    if not np.array_equal(la.alloc, lb.alloc):
        diffs.append("alloc")
    if not np.array_equal(la.divergence, lb.divergence, equal_nan=True):
        diffs.append("divergence")
    return verdict(not diffs, what, "identical" if not diffs else f"differ in {', '.join(diffs[:8])}")


def memory(path: str) -> int:
    peak: dict[str, float] = {}
    for ln in Path(path).read_text().splitlines():
        parts = [p.strip() for p in ln.split(",")]
        if len(parts) == 2 and parts[1].split()[0].isdigit():
            peak[parts[0]] = max(peak.get(parts[0], 0.0), float(parts[1].split()[0]))
    figures = ", ".join(f"pid {p}: {m:.0f} MiB" for p, m in sorted(peak.items())) or "no samples"
    return verdict(bool(peak), "peak GPU memory per rank (nvidia-smi, with the CUDA context)", figures)


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "hosts":
        return hosts(*args)
    if cmd == "tiers":
        return tiers(args[0], len(args) > 1 and args[1] == "mps")
    if cmd == "cpu-vs-cuda":
        return cpu_vs_cuda(*args)
    if cmd == "same":
        return same(*args)
    if cmd == "memory":
        return memory(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
