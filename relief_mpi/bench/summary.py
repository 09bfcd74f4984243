"""The bench table, computed from the HDF5 round logs alone.

Per run: final accuracy / macro-F1 / rare-modality F1 (last evaluated round), time to the target
macro-F1 (virtual and wall elapsed time of the first evaluated round whose macro-F1 reaches it),
total energy, energy spent up to the target, bytes up and down.

Per strategy, over seeds: mean and spread (sample standard deviation) of each, and the paired
comparisons with the baseline (FedAvg) on the same seed: rare-F1 gain in percentage points,
speedup = baseline time to target / strategy time to target, energy reduction = 1 - E / E_base.
The target of a seed is --target-f1 if given, else 95% of the baseline's final macro-F1 on that
seed. A run that never reaches its target has no time (NaN), is counted as not reached, and
takes no part in a speedup: nothing is extrapolated.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from relief_mpi.atomic import write_atomic
from relief_mpi.bench.results import (
    NAN,
    RUN_NAME,
    Stat,
    fmt,
    label_of,
    last_finite,
    ratio,
    reach,
)
from relief_mpi.log.hdf5 import RunLog, read_log

__all__ = [
    "BASELINE", "METRICS", "PAIRED_METRICS", "RATIO_LIKE", "RunResult", "StrategySummary", "Summary",
    "TARGET_FRACTION", "TIME_LIKE", "apply_target", "best_lr", "cell", "load_logs", "lr_search_table", "markdown",
    "meta_from_logs", "run_logs", "run_result", "summarize", "write_csv", "write_runs_csv", "write_summary"
]


BASELINE = "fedavg"
TARGET_FRACTION = 0.95


@dataclass
class RunResult:
    """One log's numbers (NaN where undefined)."""

    strategy: str
    seed: int
    lr: float
    path: str
    rounds: int
    final_accuracy: float
    final_macro_f1: float
    final_rare_f1: float
    energy_j: float
    bytes_up: float
    bytes_down: float
    wall_s: float
    virtual_s: float
    target: float = NAN
    round_reached: int = 0  # 0 = not reached
    time_virtual_s: float = NAN
    time_wall_s: float = NAN
    energy_to_target_j: float = NAN

    @property
    def reached(self) -> bool:
        return self.round_reached > 0


def run_result(log: RunLog, path: str | Path = "", label: str | None = None) -> RunResult:
    r = log.rounds
    cfg = log.config
    return RunResult(
        strategy=label or str(log.attrs.get("strategy") or cfg["strategy"]["name"]), seed=int(cfg["seed"]),
        lr=float(cfg["strategy"]["lr"]), path=str(path), rounds=len(r),
        final_accuracy=last_finite(r["accuracy"]), final_macro_f1=last_finite(r["macro_f1"]),
        final_rare_f1=last_finite(r["rare_f1"]),
        energy_j=float(np.nansum(r["energy_j"])), bytes_up=float(np.nansum(r["bytes_up"])),
        bytes_down=float(np.nansum(r["bytes_down"])),
        wall_s=float(r["wall_elapsed_s"][-1]) if len(r) else NAN,
        virtual_s=float(r["virtual_elapsed_s"][-1]) if len(r) else NAN,
    )


def apply_target(res: RunResult, log: RunLog, target: float) -> None:
    """Time (and energy) to the first evaluated round with macro-F1 >= target; NaN if never."""
    res.target = target
    res.round_reached, res.time_virtual_s, res.time_wall_s, res.energy_to_target_j = 0, NAN, NAN, NAN
    hit = reach(log, target)
    if hit.reached:
        res.round_reached, res.time_virtual_s, res.time_wall_s = hit.round, hit.virtual_s, hit.wall_s
        res.energy_to_target_j = hit.energy_j


@dataclass
class StrategySummary:
    strategy: str
    runs: list[RunResult]
    stats: dict[str, Stat] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def lrs(self) -> list[float]:
        return sorted({r.lr for r in self.runs})


# name -> (column title, format, unit note)
METRICS: dict[str, tuple[str, str]] = {
    "final_accuracy": ("accuracy", ".3f"),
    "final_macro_f1": ("macro-F1", ".3f"),
    "final_rare_f1": ("rare-F1", ".3f"),
    "rare_gain_pp": ("rare-F1 gain (pp)", "+.1f"),
    "time_virtual_s": ("time to target, emulated (s)", ".1f"),
    "time_wall_s": ("time to target, wall (s)", ".1f"),
    "speedup_virtual": ("speedup (emulated)", ".2f"),
    "speedup_wall": ("speedup (wall)", ".2f"),
    "energy_j": ("energy (J)", ".0f"),
    "energy_reduction_pct": ("energy reduction (%)", "+.1f"),
    "energy_to_target_j": ("energy to target (J)", ".0f"),
    "energy_to_target_reduction_pct": ("energy-to-target reduction (%)", "+.1f"),
    "mb_up": ("MB up", ".2f"),
    "mb_down": ("MB down", ".2f"),
}


@dataclass
class Summary:
    strategies: list[StrategySummary]
    targets: dict[int, float]  # seed -> target macro-F1
    target_source: str
    baseline: str
    meta: dict[str, object] = field(default_factory=dict)

    def get(self, strategy: str) -> StrategySummary | None:
        return next((s for s in self.strategies if s.strategy == strategy), None)


# The METRICS measured against the baseline's run on the same seed.
PAIRED_METRICS = ("rare_gain_pp", "speedup_virtual", "speedup_wall", "energy_reduction_pct",
                  "energy_to_target_reduction_pct")


def summarize(logs: Sequence[tuple[RunLog, str]], target_f1: float | None = None,
              baseline: str = BASELINE) -> Summary:
    """The per-strategy summary of (log, path) pairs; strategies keep their first-seen order."""
    pairs = [(log, run_result(log, path, label_of(path, log))) for log, path in logs]
    base = {res.seed: res for _, res in pairs if res.strategy == baseline}
    seeds = sorted({res.seed for _, res in pairs})
    targets, source = _targets(seeds, base, target_f1, baseline)
    for log, res in pairs:
        apply_target(res, log, targets[res.seed])
    by: dict[str, list[RunResult]] = {}
    for _, res in pairs:  # dicts keep insertion order: the strategies' first-seen order
        by.setdefault(res.strategy, []).append(res)
    out = []
    for name, results in by.items():
        runs = sorted(results, key=lambda r: r.seed)
        out.append(StrategySummary(name, runs, {k: Stat(v) for k, v in _metric_values(runs, base).items()}))
    return Summary(out, targets, source, baseline)


def _targets(seeds: list[int], base: dict[int, RunResult], target_f1: float | None,
             baseline: str) -> tuple[dict[int, float], str]:
    """Each seed's target macro-F1 and the sentence saying where it comes from: --target-f1, else a
    fraction of the baseline's final macro-F1 on that seed (NaN for a seed the baseline did not run)."""
    if target_f1 is not None:
        return {s: float(target_f1) for s in seeds}, f"macro-F1 {target_f1:g} (--target-f1)"
    targets = {s: TARGET_FRACTION * base[s].final_macro_f1 if s in base else NAN for s in seeds}
    source = (f"{TARGET_FRACTION:.0%} of {baseline}'s final macro-F1 on the same seed" if base else
              f"none ({baseline} not in the bench and no --target-f1: times to target are not defined)")
    return targets, source


def _metric_values(runs: list[RunResult], base: dict[int, RunResult]) -> dict[str, list[float]]:
    """Every METRICS value of each run, in run order; the paired ones against the baseline run of the
    same seed (NaN when the baseline did not run that seed)."""
    st: dict[str, list[float]] = {k: [] for k in METRICS}
    for r in runs:
        for k, v in _run_metrics(r, base.get(r.seed)).items():
            st[k].append(v)
    return st


def _run_metrics(r: RunResult, b: RunResult | None) -> dict[str, float]:
    """One run's METRICS; `b` is the baseline's run on the same seed, if any."""
    own = {
        "final_accuracy": r.final_accuracy, "final_macro_f1": r.final_macro_f1, "final_rare_f1": r.final_rare_f1,
        "time_virtual_s": r.time_virtual_s, "time_wall_s": r.time_wall_s, "energy_j": r.energy_j,
        "energy_to_target_j": r.energy_to_target_j, "mb_up": r.bytes_up / 1e6, "mb_down": r.bytes_down / 1e6,
    }
    paired = {
        "rare_gain_pp": 100 * (r.final_rare_f1 - b.final_rare_f1),
        "speedup_virtual": ratio(b.time_virtual_s, r.time_virtual_s),
        "speedup_wall": ratio(b.time_wall_s, r.time_wall_s),
        "energy_reduction_pct": 100 * (1 - ratio(r.energy_j, b.energy_j)),
        "energy_to_target_reduction_pct": 100 * (1 - ratio(r.energy_to_target_j, b.energy_to_target_j)),
    } if b else dict.fromkeys(PAIRED_METRICS, NAN)
    return {**own, **paired}


# -- files ---------------------------------------------------------------------------------------

def run_logs(out_dir: Path) -> list[Path]:
    """The bench's run logs in out_dir (<strategy>-seed<k>.h5), not the learning-rate search."""
    return sorted(p for p in Path(out_dir).glob("*-seed*.h5") if RUN_NAME.match(p.name))


def load_logs(paths: Iterable[Path], order: Sequence[str] | None = None) -> list[tuple[RunLog, str]]:
    logs = [(read_log(p), str(p)) for p in paths]
    if order:
        rank = {name: i for i, name in enumerate(order)}
        logs.sort(key=lambda lp: (rank.get(label_of(lp[1], lp[0]), len(rank)), int(lp[0].config["seed"])))
    return logs


def cell(stat: Stat, spec: str, time_like: bool = False) -> str:
    """'mean ± std', with '(k/n reached)' for partially reached times; 'not reached' for none."""
    if stat.count == 0:
        return "not reached" if time_like else "n/a"
    s = fmt(stat.mean, spec)
    if stat.count > 1:
        s += f" ± {fmt(stat.std, spec.lstrip('+'))}"
    if time_like and stat.count < stat.n:
        s += f" ({stat.count}/{stat.n} reached)"
    return s


TIME_LIKE = {"time_virtual_s", "time_wall_s", "energy_to_target_j"}
RATIO_LIKE = {"speedup_virtual", "speedup_wall", "energy_to_target_reduction_pct"}


def _cell(s: StrategySummary, key: str, summary: Summary) -> str:
    stat = s.stats[key]
    spec = METRICS[key][1]
    if key in TIME_LIKE:
        if not any(math.isfinite(t) for t in summary.targets.values()):
            return "n/a (no target)"
        return cell(stat, spec, time_like=True)
    if key in RATIO_LIKE or key in ("rare_gain_pp", "energy_reduction_pct"):
        if summary.get(summary.baseline) is None:
            return f"n/a (no {summary.baseline})"
        if key in RATIO_LIKE and stat.count == 0:
            return "n/a (target not reached)"
        c = cell(stat, spec)
        if key in RATIO_LIKE and stat.count < stat.n:
            c += f" ({stat.count}/{stat.n} seeds)"
        if key in ("speedup_virtual", "speedup_wall", "rare_gain_pp") and stat.count > 1:
            c += f", max {fmt(stat.max, spec)}"
        return c
    return cell(stat, spec)


def markdown(summary: Summary, title: str = "relief-mpi bench summary", with_meta: bool = True) -> str:
    meta = summary.meta if with_meta else {}
    lines = [f"# {title}", ""]
    if meta:
        for k, v in meta.items():
            lines.append(f"- {k}: {v}")
        lines.append("")
    seeds = sorted(summary.targets)
    tgt = ", ".join(f"seed {s}: {fmt(t, '.3f')}" for s, t in summary.targets.items())
    lines += [f"Seeds: {', '.join(map(str, seeds))}. Target macro-F1: {summary.target_source} ({tgt}).",
              "Values are mean ± sample std over seeds. Comparisons with "
              f"{summary.baseline} are paired by seed: speedup = {summary.baseline}'s time to target / the "
              "strategy's; energy reduction = 1 - E / E_" + summary.baseline + "; 'not reached' means the "
              "run never reached the target (no time is extrapolated).", ""]
    groups = [
        ("Quality", ["final_accuracy", "final_macro_f1", "final_rare_f1", "rare_gain_pp"]),
        ("Time to target", ["time_virtual_s", "speedup_virtual", "time_wall_s", "speedup_wall"]),
        ("Energy and bytes", ["energy_j", "energy_reduction_pct", "energy_to_target_j",
                              "energy_to_target_reduction_pct", "mb_up", "mb_down"]),
    ]
    for title, keys in groups:
        head = ["strategy", "lr", "seeds"] + [METRICS[k][0] for k in keys]
        lines += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in summary.strategies:
            row = [s.strategy, ", ".join(f"{x:g}" for x in s.lrs), str(len(s.runs))]
            row += [_cell(s, k, summary) for k in keys]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Per run", "", "| strategy | seed | lr | rounds | macro-F1 | rare-F1 | target | reached at round | "
              "time to target, emulated (s) | wall (s) | energy (J) | MB up | MB down |", "|" + "---|" * 13]
    for s in summary.strategies:
        for r in s.runs:
            lines.append(
                f"| {r.strategy} | {r.seed} | {r.lr:g} | {r.rounds} | {fmt(r.final_macro_f1, '.3f')} | "
                f"{fmt(r.final_rare_f1, '.3f')} | {fmt(r.target, '.3f')} | "
                f"{r.round_reached if r.reached else 'not reached'} | {fmt(r.time_virtual_s, '.1f')} | "
                f"{fmt(r.time_wall_s, '.1f')} | {r.energy_j:.0f} | {r.bytes_up / 1e6:.2f} | "
                f"{r.bytes_down / 1e6:.2f} |")
    lines.append("")
    return "\n".join(lines)


def write_csv(summary: Summary, path: Path) -> None:
    head = ["strategy", "lr", "seeds"]
    for k in METRICS:
        head += [f"{k}_mean", f"{k}_std", f"{k}_n"]
    head += ["speedup_virtual_max", "rare_gain_pp_max", "target_f1"]
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(head)
    for s in summary.strategies:
        row: list[object] = [s.strategy, ";".join(f"{x:g}" for x in s.lrs), len(s.runs)]
        for k in METRICS:
            st = s.stats[k]
            row += [st.mean, st.std, st.count]
        row += [s.stats["speedup_virtual"].max, s.stats["rare_gain_pp"].max,
                ";".join(f"{summary.targets[r.seed]:.6g}" for r in s.runs)]
        w.writerow(row)
    write_atomic(path, fh.getvalue().encode())


def write_runs_csv(summary: Summary, path: Path) -> None:
    fields = ["strategy", "seed", "lr", "rounds", "final_accuracy", "final_macro_f1", "final_rare_f1", "target",
              "round_reached", "time_virtual_s", "time_wall_s", "energy_j", "energy_to_target_j", "bytes_up",
              "bytes_down", "wall_s", "virtual_s", "path"]
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(fields)
    for s in summary.strategies:
        for r in s.runs:
            w.writerow([getattr(r, f) for f in fields])
    write_atomic(path, fh.getvalue().encode())


def write_summary(summary: Summary, out_dir: Path, extra_md: str = "", prefix: str = "") -> list[Path]:
    """summary.md (after `prefix`, the paper's table, if any: ours then follows under its own title),
    summary.csv and runs.csv."""
    out_dir = Path(out_dir)
    md = out_dir / "summary.md"
    ours = markdown(summary) if not prefix else markdown(
        summary, "Ours on the same runs (our earlier protocol's metrics; target 95% of FedAvg's final macro-F1)",
        with_meta=False)
    write_atomic(md, (prefix + ours + (("\n" + extra_md) if extra_md else "")).encode())
    csv_path = out_dir / "summary.csv"
    write_csv(summary, csv_path)
    runs_path = out_dir / "runs.csv"
    write_runs_csv(summary, runs_path)
    return [md, csv_path, runs_path]


def meta_from_logs(logs: Sequence[tuple[RunLog, str]]) -> dict[str, object]:
    """The scenario shared by the runs (from the first log), for the top of summary.md."""
    if not logs:
        return {}
    log = logs[0][0]
    cfg = log.config
    prof = log.profiles
    tiers: dict[str, int] = {}
    for p in prof:
        key = f"{p['tier']} ({p['profile']}, {'+'.join(p['modalities'])})"
        tiers[key] = tiers.get(key, 0) + 1
    data = cfg["data"]
    if data.get("protocol", "ours") == "paper":
        shape = (f"protocol paper: one client per subject, windows {data.get('window')} / stride "
                 f"{data.get('stride')}, split {data.get('split')}")
    else:
        shape = f"protocol ours: alpha {data['alpha']}, modalities by {data['modality_by']}"
    return {
        "dataset": f"{log.attrs.get('dataset')} ({shape}; rare modality {log.attrs.get('rare_modality') or '-'})",
        "clients": f"{len(prof)}: " + ", ".join(f"{n} x {k}" for k, n in tiers.items()),
        "model": f"{cfg['model']['mode']}",
        "rounds / local steps (ours) / local epochs (published presets) / batch":
            f"{cfg['rounds']} / {cfg['strategy']['local_steps']} / {cfg['strategy'].get('local_epochs', '-')} / "
            f"{cfg['strategy']['batch_size']}",
        "deadline": cfg["strategy"]["deadline"],
        "clock": log.attrs.get("clock"),
        "MPI": f"{log.attrs.get('mpi_library')}, world size {log.attrs.get('world_size')}",
    }


def lr_search_table(search_dir: Path, paths: Sequence[Path] | None = None) -> str:
    """Markdown table of the learning-rate search logs (final macro-F1 on seed 0), if any."""
    paths = sorted(Path(search_dir).glob("*.h5")) if paths is None else [p for p in paths if Path(p).exists()]
    if not paths:
        return ""
    logs = [(read_log(p), p) for p in paths]
    res = [run_result(log, p, label_of(p, log)) for log, p in logs]
    on = ("the validation split" if any(log.config["data"].get("validation", 0) > 0 for log, _ in logs)
          else "the test set")
    strategies = list(dict.fromkeys(r.strategy for r in res))
    lrs = sorted({r.lr for r in res})
    lines = [f"## Learning-rate search (first seed, final macro-F1 on {on}; * = chosen)", "",
             "| strategy | " + " | ".join(f"lr {x:g}" for x in lrs) + " |", "|" + "---|" * (len(lrs) + 1)]
    for s in strategies:
        mine = {r.lr: r.final_macro_f1 for r in res if r.strategy == s}
        best = best_lr(mine)
        cells = [(fmt(mine[x], ".3f") + ("*" if x == best else "")) if x in mine else "-" for x in lrs]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_lr(scores: dict[float, float]) -> float:
    """The lr with the highest final macro-F1 (NaN counts as worst; ties: the smaller lr)."""
    if not scores:
        raise ValueError("no learning rates")
    return max(sorted(scores), key=lambda lr: (scores[lr] if math.isfinite(scores[lr]) else -math.inf, -lr))
