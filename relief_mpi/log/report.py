"""Terminal summary and PNG plots of a round log."""

from __future__ import annotations

import io
import math
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np

from relief_mpi.atomic import write_atomic
from relief_mpi.bench.results import fmt
from relief_mpi.log.hdf5 import RunLog

__all__ = ["run_status", "summary_table", "tier_times", "write_plots", "writer_alive"]


def writer_alive(run: RunLog) -> bool | None:
    """Is the process that writes this log still running? None when it cannot be told from here
    (another host, or a log written before the writer was recorded)."""
    pid, host = run.attrs.get("writer_pid"), run.attrs.get("writer_host")
    if pid is None or host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_status(run: RunLog) -> str:
    """One line: is the run complete, still running, stopped early (and why), or dead?"""
    n, planned = len(run.rounds), run.config.get("rounds", "?")
    if run.status == "complete":
        return f"status: complete ({n} of {planned} rounds)"
    if run.status in ("interrupted", "diverged", "timeout", "failed"):
        return f"status: stopped early ({run.status}) after {n} of {planned} rounds"
    if run.status == "running":
        alive = writer_alive(run)
        if alive:
            return f"status: still running ({n} of {planned} rounds so far)"
        if alive is None:
            return (f"status: running or ended without closing the log ({n} of {planned} rounds; the writer is on "
                    f"{run.attrs.get('writer_host', 'another host')})")
        return (f"status: ended without closing the log (killed, crashed or a log write failed) after {n} of "
                f"{planned} rounds")
    return f"{n} of {planned} rounds (a log without an end marker)"


def summary_table(run: RunLog) -> str:
    r = run.rounds
    a = run.attrs
    lines = [f"strategy {a.get('strategy')}  dataset {a.get('dataset')}  clients {len(run.profiles)}  "
             f"rounds {len(r)}  clock {a.get('clock')}  rare modality {a.get('rare_modality') or '-'}",
             run_status(run)]
    if run.incomplete_rows:
        after = f"after round {int(r['round'][-1])}" if len(r) else "before the first complete round"
        lines.append(f"note: {run.incomplete_rows} row(s) {after} were not completely written (a failed write, or "
                     "a round being written) and are not shown")
    if len(r) == 0:
        return "\n".join(lines) + "\n(no complete round yet)"
    last = r[-1]
    lines.append(f"final: accuracy {fmt(last['accuracy'])}  macro-F1 {fmt(last['macro_f1'])}  "
                 f"rare-cohort-F1 {fmt(last['rare_f1'])} (ours)")
    if np.isfinite(last["pooled_macro_f1"]):
        lines.append(f"final, pooled full-modality test set (as published): accuracy {fmt(last['pooled_accuracy'])}  "
                     f"macro-F1 {fmt(last['pooled_macro_f1'])};  ours (own windows, own sensors): accuracy "
                     f"{fmt(last['own_accuracy'])}  macro-F1 {fmt(last['own_macro_f1'])}")
    if run.class_names and len(run.class_f1):
        lines.append("final F1 per class: " + ", ".join(
            f"{c} {fmt(v, '.2f')}" for c, v in zip(run.class_names, run.class_f1[-1], strict=True)))
    lines.append(f"time: {fmt(last['wall_elapsed_s'], '.1f')} s wall, {fmt(last['virtual_elapsed_s'], '.1f')} s "
                 f"emulated;  bytes up {r['bytes_up'].sum() / 1e6:.2f} MB, down {r['bytes_down'].sum() / 1e6:.2f} MB;"
                 f"  energy {r['energy_j'].sum():.1f} J (modeled)")
    rejected = r["rejected"]
    if rejected.sum():
        rounds = ", ".join(str(int(x)) for x in r["round"][rejected > 0][:10]) + (", ..." if (rejected > 0).sum() > 10
                                                                                  else "")
        lines.append(f"rejected updates (non-finite): {int(rejected.sum())} client update(s) in round(s) {rounds}")
    lines.append("")
    lines.append(f"{'client':>6} {'rank':>4} {'tier':<6} {'profile':<18} {'modalities':<22} {'busy s':>8} "
                 f"{'idle s':>8} {'MB up':>7} {'MB down':>8} {'energy J':>9} {'steps':>6} {'rejected':>8}")
    c = run.clients
    for p in run.profiles:
        k = p["client"]
        lines.append(f"{k:>6} {p['rank']:>4} {p['tier']:<6} {p['profile']:<18} {','.join(p['modalities']):<22} "
                     f"{np.nansum(c['busy_s'][:, k]):>8.2f} {np.nansum(c['idle_s'][:, k]):>8.2f} "
                     f"{np.nansum(c['bytes_up'][:, k]) / 1e6:>7.2f} {np.nansum(c['bytes_down'][:, k]) / 1e6:>8.2f} "
                     f"{np.nansum(c['energy_j'][:, k]):>9.1f} {int(np.nansum(c['steps'][:, k])):>6} "
                     f"{int(np.nansum(c['rejected'][:, k])):>8}")
    if len(run.tier_names):
        lines.append("")
        lines.append("final F1 per tier: " + ", ".join(
            f"{t} {fmt(v)}" for t, v in zip(run.tier_names, run.tier_f1[-1], strict=True)))
        pooled = run.tier_arrays.get("pooled_f1")
        if pooled is not None and len(pooled) and np.isfinite(pooled[-1]).any():
            lines.append("final F1 per tier on the pooled test set, each with its own sensors: " + ", ".join(
                f"{t} {fmt(v)}" for t, v in zip(run.tier_names, pooled[-1], strict=True)))
        lines += tier_times(run)
    return "\n".join(lines)


def tier_times(run: RunLog) -> list[str]:
    """Each tier's round time as the run measured it (--clock real; computed under virtual) next to
    the published analytic model's, and the analytic model's error as a number."""
    measured, analytic = run.tier_arrays.get("time_s"), run.tier_arrays.get("analytic_time_s")
    if measured is None or analytic is None or not len(measured):
        return []
    kind = "measured" if run.attrs.get("clock") == "real" else "emulated"
    with np.errstate(invalid="ignore", divide="ignore"):
        err = (analytic - measured) / measured
    lines = ["", f"round time per tier, mean over {len(measured)} rounds: {kind} (max over the tier's clients of "
             "download + compute + upload) vs the published analytic model",
             f"{'tier':<10} {kind + ' s':>11} {'analytic s':>11} {'error, mean':>12} {'error, max |.|':>15}"]
    for j, t in enumerate(run.tier_names):
        e = err[:, j][np.isfinite(err[:, j])]
        lines.append(f"{t:<10} {fmt(float(np.nanmean(measured[:, j])), '.4g'):>11} "
                     f"{fmt(float(np.nanmean(analytic[:, j])), '.4g'):>11} "
                     f"{fmt(100 * float(e.mean()) if e.size else np.nan, '+.1f') + '%':>12} "
                     f"{fmt(100 * float(np.abs(e).max()) if e.size else np.nan, '.1f') + '%':>15}")
    return lines


def write_plots(run: RunLog, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    r = run.rounds
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ok = np.isfinite(r["macro_f1"])
    axes[0].plot(r["round"][ok], r["macro_f1"][ok], marker="o", label="macro-F1")
    axes[0].plot(r["round"][ok], r["rare_f1"][ok], marker=".", label="rare-modality F1")
    axes[0].set_xlabel("round")
    # rounds are whole numbers; min_n_ticks=1 keeps that for one round (else the locator falls back
    # to fractional ticks when the view holds fewer than two integers)
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes[0].set_ylabel("F1")
    axes[0].legend()
    axes[1].plot(r["virtual_elapsed_s"][ok], r["macro_f1"][ok], marker="o", label="emulated time")
    axes[1].plot(r["wall_elapsed_s"][ok], r["macro_f1"][ok], marker=".", label="wall time")
    axes[1].set_xlabel("time (s)")
    axes[1].set_ylabel("macro-F1")
    axes[1].legend()
    fig.suptitle(f"{run.attrs.get('strategy')} on {run.attrs.get('dataset')}")
    fig.tight_layout()
    p = out_dir / f"{stem}-f1.png"
    _save(fig, p)
    paths.append(p)

    labels = [f"{p['client']} {p['tier']}" for p in run.profiles]
    many = len(labels) > 12  # e.g. 31 clients: a wider figure, upright small labels
    width = min(40.0, max(10.0, 0.5 * len(labels)))
    fig, axes = plt.subplots(1, 2, figsize=(width, 4.5 if many else 4))
    # upright 7-pt labels need about 11 pt each: past what half the widest figure holds (~100
    # clients), label every step-th client so that the labels never overlap
    step = max(1, math.ceil(len(labels) / (0.4 * width * 72 / 11)))
    x = np.arange(len(labels))
    c = run.clients
    axes[0].bar(x - 0.2, np.nansum(c["bytes_up"], 0) / 1e6, 0.4, label="up")
    axes[0].bar(x + 0.2, np.nansum(c["bytes_down"], 0) / 1e6, 0.4, label="down")
    axes[0].set_ylabel("MB")
    axes[0].set_title("bytes per client")
    axes[0].legend()
    axes[1].bar(x, np.nansum(c["energy_j"], 0))
    axes[1].set_ylabel("J (modeled)")
    axes[1].set_title("energy per client")
    for ax in axes:
        if many:
            ax.set_xticks(x[::step], labels[::step], rotation=90, fontsize=7)
        else:
            ax.set_xticks(x, labels, rotation=45, ha="right")
        ax.set_xlabel("client and tier")
    fig.tight_layout()
    p = out_dir / f"{stem}-clients.png"
    _save(fig, p)
    paths.append(p)
    return paths


def _save(fig: Any, path: Path) -> None:
    """A PNG written whole or not at all (read-only folder, full disk: one WriteFailed line)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=100, format="png")
    finally:
        plt.close(fig)
    write_atomic(path, buf.getbuffer(), "writing plot")
