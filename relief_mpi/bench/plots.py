"""Bench figures (PNG): macro-F1 vs time, energy per tier, bytes per round, one colour per strategy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from relief_mpi.bench.summary import Summary
from relief_mpi.log.hdf5 import RunLog


def _by_strategy(logs: Sequence[tuple[RunLog, str]]) -> dict[str, list[RunLog]]:
    out: dict[str, list[RunLog]] = {}
    for log, _ in logs:
        out.setdefault(str(log.attrs.get("strategy")), []).append(log)
    return out


def write_figures(logs: Sequence[tuple[RunLog, str]], summary: Summary, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    groups = _by_strategy(logs)
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(groups)}
    paths = []

    # 1. macro-F1 vs emulated and wall time: per strategy the mean over seeds (round by round, at the
    #    seeds' mean elapsed time) with a min..max band; line styles differ so equal curves stay visible.
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "v", "D", "x", "+", "*"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (s, runs) in enumerate(groups.items()):
        n = min(len(log.rounds) for log in runs)
        if n == 0:
            continue
        f1 = np.array([log.rounds["macro_f1"][:n] for log in runs])
        ok = np.isfinite(f1).all(axis=0)
        for ax, key in zip(axes, ("virtual_elapsed_s", "wall_elapsed_s"), strict=True):
            t = np.mean([log.rounds[key][:n] for log in runs], axis=0)[ok]
            ax.plot(t, f1.mean(axis=0)[ok], color=colors[s], ls=styles[i % len(styles)],
                    marker=markers[i % len(markers)], ms=3, lw=1.4, label=f"{s} ({len(runs)} seeds)")
            if len(runs) > 1:
                ax.fill_between(t, f1.min(axis=0)[ok], f1.max(axis=0)[ok], color=colors[s], alpha=0.12)
    targets = [t for t in summary.targets.values() if math.isfinite(t)]
    for ax, xl in zip(axes, ("emulated time (s)", "wall time on this host (s)"), strict=True):
        if targets:
            ax.axhline(float(np.mean(targets)), color="grey", ls="--", lw=1, label="target (mean over seeds)")
        ax.set_xlabel(xl)
        ax.set_ylabel("macro-F1 (global model)")
        ax.grid(alpha=0.3)
    axes[0].set_title("macro-F1 vs emulated device time (mean, min..max over seeds)")
    axes[1].set_title("macro-F1 vs wall time on this host")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "f1_vs_time.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    # 2. energy per tier per strategy (total over the run, mean over seeds).
    tiers: list[str] = []
    for runs in groups.values():
        for log in runs:
            for prof in log.profiles:
                if prof["tier"] not in tiers:
                    tiers.append(prof["tier"])
    energy = np.zeros((len(groups), len(tiers)))
    for i, runs in enumerate(groups.values()):
        per_run = []
        for log in runs:
            e = np.nansum(log.clients["energy_j"], axis=0)
            per_run.append([sum(e[p["client"]] for p in log.profiles if p["tier"] == t) for t in tiers])
        energy[i] = np.mean(per_run, axis=0)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups) + 2), 4.5))
    x = np.arange(len(groups))
    w = 0.8 / max(1, len(tiers))
    for j, t in enumerate(tiers):
        ax.bar(x + (j - (len(tiers) - 1) / 2) * w, energy[:, j], w, label=f"tier {t}")
    ax.set_xticks(x, list(groups), rotation=20)
    ax.set_ylabel("energy, J (modeled, sum over the tier's clients)")
    ax.set_title("energy per tier per strategy (whole run, mean over seeds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    p = out_dir / "energy_per_tier.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    # 3. bytes per round (up solid, down dashed), mean over seeds.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for s, runs in groups.items():
        n = min(len(log.rounds) for log in runs)
        if n == 0:
            continue
        up = np.mean([log.rounds["bytes_up"][:n] for log in runs], axis=0) / 1e6
        down = np.mean([log.rounds["bytes_down"][:n] for log in runs], axis=0) / 1e6
        rnd = runs[0].rounds["round"][:n]
        ax.plot(rnd, up, color=colors[s], marker="o", ms=3, label=f"{s} up")
        ax.plot(rnd, down, color=colors[s], ls="--", marker="x", ms=3, label=f"{s} down")
    ax.set_xlabel("round")
    ax.set_ylabel("MB per round (all clients)")
    ax.set_title("bytes per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    p = out_dir / "bytes_per_round.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths
