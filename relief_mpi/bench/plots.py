"""Bench figures (PNG), one colour per bench row: macro-F1 vs time, energy per tier, bytes per round;
for the paper's protocol also macro-F1 vs analytic time / emulated time / round, cumulative energy,
and the groups each tier trained per round (the allocation, published and corrected budgets)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from relief_mpi.atomic import write_atomic
from relief_mpi.bench.paper import PaperSummary
from relief_mpi.bench.results import label_of
from relief_mpi.bench.summary import Summary
from relief_mpi.log.hdf5 import RunLog

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["ALLOCATION_ROWS", "BUDGET_NAMES", "Colors", "MARKERS", "STYLES", "write_figures", "write_paper_figures"]


Colors = dict[str, tuple[float, float, float, float]]  # bench row -> its colour in every figure
STYLES = ["-", "--", "-.", ":"]  # line styles and markers differ per row, so equal curves stay visible
MARKERS = ["o", "s", "^", "v", "D", "x", "+", "*"]


def _by_strategy(logs: Sequence[tuple[RunLog, str]]) -> dict[str, list[RunLog]]:
    """Logs by bench row (the file's label: a strategy, or strategy+correction)."""
    out: dict[str, list[RunLog]] = {}
    for log, path in logs:
        out.setdefault(label_of(path, log), []).append(log)
    return out


def _colors(groups: dict[str, list[RunLog]]) -> Colors:
    import matplotlib.pyplot as plt

    return {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(groups)}


def _save(fig: Figure, path: Path) -> Path:
    """Lay out, write (the same size and resolution for every figure) and free one figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=110, format="png")
    finally:
        plt.close(fig)
    write_atomic(path, buf.getbuffer())  # whole or not at all (errors.WriteFailed)
    return path


def write_figures(logs: Sequence[tuple[RunLog, str]], summary: Summary, out_dir: Path) -> list[Path]:
    """The bench's three figures: macro-F1 vs time, energy per tier, bytes per round."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    groups = _by_strategy(logs)
    colors = _colors(groups)
    return [_f1_vs_time(groups, colors, summary, out_dir / "f1_vs_time.png"),
            _energy_per_tier(groups, out_dir / "energy_per_tier.png"),
            _bytes_per_round(groups, colors, out_dir / "bytes_per_round.png")]


def _f1_vs_time(groups: dict[str, list[RunLog]], colors: Colors, summary: Summary, path: Path) -> Path:
    """macro-F1 vs emulated and wall time: per strategy the mean over seeds (round by round, at the
    seeds' mean elapsed time) with a min..max band."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (s, runs) in enumerate(groups.items()):
        n = min(len(log.rounds) for log in runs)
        if n == 0:
            continue
        f1 = np.array([log.rounds["macro_f1"][:n] for log in runs])
        ok = np.isfinite(f1).all(axis=0)
        for ax, key in zip(axes, ("virtual_elapsed_s", "wall_elapsed_s"), strict=True):
            t = np.mean([log.rounds[key][:n] for log in runs], axis=0)[ok]
            ax.plot(t, f1.mean(axis=0)[ok], color=colors[s], ls=STYLES[i % len(STYLES)],
                    marker=MARKERS[i % len(MARKERS)], ms=3, lw=1.4, label=f"{s} ({len(runs)} seeds)")
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
    return _save(fig, path)


def _tier_energy(groups: dict[str, list[RunLog]]) -> tuple[list[str], np.ndarray]:
    """The tiers in first-seen order, and each row's energy per tier (whole run, mean over seeds)."""
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
    return tiers, energy


def _energy_per_tier(groups: dict[str, list[RunLog]], path: Path) -> Path:
    """Energy per tier per strategy, one bar per tier (total over the run, mean over seeds)."""
    import matplotlib.pyplot as plt

    tiers, energy = _tier_energy(groups)
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
    return _save(fig, path)


def _round_axis(ax: Axes) -> None:
    """An x axis of rounds: whole-number ticks only, also for a run of 1 to 3 rounds."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _bytes_per_round(groups: dict[str, list[RunLog]], colors: Colors, path: Path) -> Path:
    """Bytes per round (up solid, down dashed), mean over seeds."""
    import matplotlib.pyplot as plt

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
    _round_axis(ax)
    ax.set_ylabel("MB per round (all clients)")
    ax.set_title("bytes per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


# Rows whose allocation varies (budgets), in the order the allocation figure shows them.
ALLOCATION_ROWS = ("relief", "relief+tstar", "relief+all", "relief+flops", "ablation-v2", "ablation-v3",
                   "fixed-order")
BUDGET_NAMES = {"relief": "published budget", "relief+tstar": "corrected budget: T* bracket contains T_o",
                "relief+all": "every correction", "relief+flops": "FLOP cost model"}


def _curve(runs: list[RunLog], x_key: str | None, y: str = "macro_f1") -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                               np.ndarray] | None:
    """Mean x, mean / min / max y over seeds, round by round, over the rounds every seed evaluated."""
    n = min(len(log.rounds) for log in runs)
    if n == 0:
        return None
    ys = np.array([log.rounds[y][:n] for log in runs])
    ok = np.isfinite(ys).all(axis=0)
    if x_key is None:
        x = runs[0].rounds["round"][:n].astype(float)
    else:
        x = np.mean([log.rounds[x_key][:n] for log in runs], axis=0)
    return x[ok], ys.mean(axis=0)[ok], ys.min(axis=0)[ok], ys.max(axis=0)[ok]


def write_paper_figures(logs: Sequence[tuple[RunLog, str]], summary: PaperSummary, out_dir: Path) -> list[Path]:
    """The paper protocol's figures: macro-F1 vs analytic / emulated time and round, cumulative
    energy, and (when a row has a budget) the allocation."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    groups = _by_strategy(logs)
    colors = _colors(groups)
    paths = [_paper_f1(logs, groups, colors, summary.target, out_dir / "paper_f1.png"),
             _energy_cumulative(groups, colors, out_dir / "energy_cumulative.png")]
    rows = [r for r in ALLOCATION_ROWS if r in groups][:6]
    if rows:
        paths.append(_allocation(groups, rows, out_dir / "allocation.png"))
    return paths


def _paper_f1(logs: Sequence[tuple[RunLog, str]], groups: dict[str, list[RunLog]], colors: Colors, target: float,
              path: Path) -> Path:
    """macro-F1 (pooled test set) vs the published analytic time, our emulated time, and the round."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    panels = (("analytic_elapsed_s", "analytic time, s (published system model)"),
              ("virtual_elapsed_s", "emulated time, s (ours, FLOP-measured)"), (None, "round"))
    for i, (s, runs) in enumerate(groups.items()):
        for ax, (key, _) in zip(axes, panels, strict=True):
            c = _curve(runs, key)
            if c is None:
                continue
            x, mean, lo, hi = c
            ax.plot(x, mean, color=colors[s], ls=STYLES[i % len(STYLES)], marker=MARKERS[i % len(MARKERS)], ms=3,
                    lw=1.3, label=f"{s} ({len(runs)} seeds)")
            if len(runs) > 1:
                ax.fill_between(x, lo, hi, color=colors[s], alpha=0.1)
    for ax, (key, xl) in zip(axes, panels, strict=True):
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:g}")
        ax.set_xlabel(xl)
        if key is None:
            _round_axis(ax)
        ax.set_ylabel("macro-F1 (pooled test set, every sensor)")
        ax.grid(alpha=0.3)
        if key is not None and all(len(log.rounds) and log.rounds[key][0] > 0 for log, _ in logs):
            ax.set_xscale("log")  # RELIEF's rounds can be 10x shorter than FedAvg's
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_title("as published: vs analytic time")
    axes[1].set_title("ours: vs emulated time")
    axes[2].set_title("vs round (mean, min..max over seeds)")
    axes[2].legend(fontsize=7)
    return _save(fig, path)


def _energy_cumulative(groups: dict[str, list[RunLog]], colors: Colors, path: Path) -> Path:
    """Cumulative energy per round: the published analytic model and our emulated one."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (s, runs) in enumerate(groups.items()):
        n = min(len(log.rounds) for log in runs)
        if n == 0:
            continue
        rnd = runs[0].rounds["round"][:n]
        ana = np.mean([log.rounds["analytic_energy_cum_j"][:n] for log in runs], axis=0)
        emu = np.mean([np.cumsum(np.nan_to_num(log.rounds["energy_j"][:n])) for log in runs], axis=0)
        for ax, v in zip(axes, (ana, emu), strict=True):
            ax.plot(rnd, v, color=colors[s], ls=STYLES[i % len(STYLES)], marker=MARKERS[i % len(MARKERS)], ms=3,
                    label=s)
    axes[0].set_title("cumulative energy, analytic (published: P compute + 0.5 P comm + 0.2 P idle)")
    axes[1].set_title("cumulative energy, emulated (ours: P_busy busy + P_idle idle + J/bit)")
    for ax in axes:
        _round_axis(ax)
        ax.set_ylabel("J (mean over seeds)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def _allocation(groups: dict[str, list[RunLog]], rows: list[str], path: Path) -> Path:
    """Groups each tier trained per round (first seed), one panel per row with a budget."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(4.6 * len(rows), 4), squeeze=False, sharey=True)
    for ax, s in zip(axes[0], rows, strict=True):
        log = groups[s][0]
        prof = log.profiles
        tiers = list(dict.fromkeys(p["tier"] for p in prof))
        n_groups = log.clients["n_groups"]
        for j, t in enumerate(tiers):
            ks = [p["client"] for p in prof if p["tier"] == t]
            if n_groups.size:
                ax.step(log.rounds["round"], n_groups[:, ks].mean(axis=1), where="mid", lw=1.5,
                        ls=STYLES[j % len(STYLES)], label=f"{t} ({len(ks)} clients)")
        ax.set_title(f"{s}: {BUDGET_NAMES.get(s, 'groups trained')}", fontsize=9)
        _round_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("parameter groups trained per client (tier mean)")
    fig.suptitle(f"allocation over rounds (seed {int(groups[rows[0]][0].config['seed'])})")
    return _save(fig, path)
