"""Terminal summary and PNG plots of a round log."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relief_mpi.log.hdf5 import RunLog


def _fmt(x: float, spec: str = ".3f") -> str:
    return "n/a" if x is None or not np.isfinite(x) else format(x, spec)


def summary_table(run: RunLog) -> str:
    r = run.rounds
    a = run.attrs
    lines = [f"strategy {a.get('strategy')}  dataset {a.get('dataset')}  clients {len(run.profiles)}  "
             f"rounds {len(r)}  clock {a.get('clock')}  rare modality {a.get('rare_modality') or '-'}"]
    if len(r) == 0:
        return lines[0] + "\n(no complete round yet)"
    last = r[-1]
    lines.append(f"final: accuracy {_fmt(last['accuracy'])}  macro-F1 {_fmt(last['macro_f1'])}  "
                 f"rare-F1 {_fmt(last['rare_f1'])}")
    lines.append(f"time: {_fmt(last['wall_elapsed_s'], '.1f')} s wall, {_fmt(last['virtual_elapsed_s'], '.1f')} s "
                 f"emulated;  bytes up {r['bytes_up'].sum() / 1e6:.2f} MB, down {r['bytes_down'].sum() / 1e6:.2f} MB;"
                 f"  energy {r['energy_j'].sum():.1f} J (modeled)")
    lines.append("")
    lines.append(f"{'client':>6} {'rank':>4} {'tier':<6} {'profile':<18} {'modalities':<22} {'busy s':>8} "
                 f"{'idle s':>8} {'MB up':>7} {'MB down':>8} {'energy J':>9} {'steps':>6}")
    c = run.clients
    for p in run.profiles:
        k = p["client"]
        lines.append(f"{k:>6} {p['rank']:>4} {p['tier']:<6} {p['profile']:<18} {','.join(p['modalities']):<22} "
                     f"{np.nansum(c['busy_s'][:, k]):>8.2f} {np.nansum(c['idle_s'][:, k]):>8.2f} "
                     f"{np.nansum(c['bytes_up'][:, k]) / 1e6:>7.2f} {np.nansum(c['bytes_down'][:, k]) / 1e6:>8.2f} "
                     f"{np.nansum(c['energy_j'][:, k]):>9.1f} {int(np.nansum(c['steps'][:, k])):>6}")
    if len(run.tier_names):
        lines.append("")
        lines.append("final F1 per tier: " + ", ".join(
            f"{t} {_fmt(v)}" for t, v in zip(run.tier_names, run.tier_f1[-1], strict=True)))
    return "\n".join(lines)


def write_plots(run: RunLog, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    r = run.rounds
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ok = np.isfinite(r["macro_f1"])
    axes[0].plot(r["round"][ok], r["macro_f1"][ok], marker="o", label="macro-F1")
    axes[0].plot(r["round"][ok], r["rare_f1"][ok], marker=".", label="rare-modality F1")
    axes[0].set_xlabel("round")
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
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"{p['client']} {p['tier']}" for p in run.profiles]
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
        ax.set_xticks(x, labels, rotation=45, ha="right")
    fig.tight_layout()
    p = out_dir / f"{stem}-clients.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    return paths
