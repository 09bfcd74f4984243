"""Run every row (strategy, or strategy + correction) x seed of a bench, one after another, in one
MPI job (or in one process).

Every rank walks the same list of runs in the same order and calls run_mpi for each; rank 0
writes one HDF5 log per run (<out-dir>/<label>-seed<k>.h5). With a learning-rate grid, every row
(the baseline included) first runs the first seed with every lr on a validation split of the
training windows (<out-dir>/lr-search/, data.validation; the test set is never read there), rank 0
picks the lr with the best final validation macro-F1 and broadcasts it, and every seed then runs
with it. In LoRA mode without --base, rank 0 pretrains one base per seed, shared by every row.
Progress lines say "run k of N", the elapsed time and an ETA. Afterwards rank 0 computes the
summary from the logs and draws the figures.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from relief_mpi.atomic import write_atomic
from relief_mpi.bench import summary as sm
from relief_mpi.config import RunConfig
from relief_mpi.errors import ReliefError

__all__ = [
    "BenchPlan", "Progress", "VALIDATION_FRACTION", "Variant", "complete", "parse_list", "peak_rss_mb",
    "planned_order", "pretrain_base", "read_bench_json", "run_bench", "with_changes", "write_outputs"
]


Progress = Callable[[str], None]


@dataclass(frozen=True)
class Variant:
    """One row of a bench: a strategy, and (under --compare) the corrections applied to its config.
    `label` names its logs (<label>-seed<k>.h5) and its row in the tables."""

    label: str
    strategy: str
    changes: tuple[tuple[str, object], ...] = ()  # dotted RunConfig keys ("data.split") -> values


def with_changes(cfg: RunConfig, changes: tuple[tuple[str, object], ...]) -> RunConfig:
    for key, value in changes:
        section, name = key.split(".", 1)
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{name: value})})
    return cfg


VALIDATION_FRACTION = 0.2  # the lr search's validation share of each client's training windows


@dataclass(frozen=True)
class BenchPlan:
    base: RunConfig
    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    out_dir: Path
    lr_grid: tuple[float, ...] = ()
    target_f1: float | None = None
    overwrite: bool = False
    plots: bool = True
    resume: bool = False
    variants: tuple[Variant, ...] = ()  # default: one per strategy, unchanged
    budget: str = ""  # what the table header says about rounds and epochs ("quick: ...")
    notes: tuple[str, ...] = ()  # what the bench left out and why (said in summary.md)
    default_lrs: tuple[tuple[str, float], ...] = ()  # strategy -> its default lr (no --lr, no grid)

    @property
    def rows(self) -> tuple[Variant, ...]:
        return self.variants or tuple(Variant(s, s) for s in self.strategies)

    def config(self, strategy: str | Variant, seed: int, lr: float | None = None, validation: bool = False,
               base: str | None = None) -> RunConfig:
        v = strategy if isinstance(strategy, Variant) else Variant(strategy, strategy)
        lr = dict(self.default_lrs).get(v.strategy, self.base.strategy.lr) if lr is None else lr
        st = dataclasses.replace(self.base.strategy, name=v.strategy, lr=lr)
        cfg = with_changes(dataclasses.replace(self.base, seed=seed, strategy=st), v.changes)
        if validation:
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, validation=VALIDATION_FRACTION))
        if base is not None:
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, base=base))
        return cfg

    def run_path(self, label: str, seed: int) -> Path:
        return self.out_dir / f"{label}-seed{seed}.h5"

    def search_path(self, label: str, lr: float) -> Path:
        return self.out_dir / "lr-search" / f"{label}-lr{lr:g}-seed{self.seeds[0]}.h5"

    @property
    def shared_base(self) -> bool:
        """LoRA without --base: one pretrained base per seed for every strategy (issue 17)."""
        return self.base.model.mode == "lora" and not self.base.model.base

    @property
    def searches(self) -> tuple[tuple[Variant, float], ...]:
        """The lr search's (row, lr) runs, every row with every lr of the grid, on the first seed."""
        return tuple((v, lr) for v in self.rows for lr in self.lr_grid)

    def all_paths(self) -> list[Path]:
        out = [self.run_path(v.label, k) for k in self.seeds for v in self.rows]
        out += [self.search_path(v.label, lr) for v, lr in self.searches]
        return out

    def check_outputs(self) -> None:
        """Refuse to start if any output exists (unless --overwrite): checked once, before any run."""
        if self.overwrite or self.resume:
            return
        taken = [p for p in self.all_paths() + [self.out_dir / "summary.md"] if p.exists()]
        if taken:
            raise ReliefError(f"{taken[0]} exists ({len(taken)} bench output(s) in {self.out_dir}); pass "
                              "--overwrite to replace them, or pick another --out-dir")


def parse_list(text: str, kind: type, what: str) -> tuple:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ReliefError(f"{what}: give a comma-separated list")
    try:
        vals = tuple(kind(t) for t in items)
    except ValueError:
        raise ReliefError(f"{what} {text!r}: not a list of {kind.__name__}s") from None
    if len(set(vals)) != len(vals):
        raise ReliefError(f"{what} {text!r}: repeated value")
    return vals


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e6 if sys.platform == "darwin" else rss * 1024 / 1e6


class _Exec:
    """How one run is executed and how rank 0's decisions reach every rank."""

    rank = 0
    size = 1

    def run(self, cfg: RunConfig, path: Path, progress: Progress | None) -> None:
        raise NotImplementedError

    def share(self, values: np.ndarray) -> np.ndarray:
        return values

    def gather_rss(self) -> list[float]:
        return [peak_rss_mb()]

    def hosts(self) -> list[str]:
        return [socket.gethostname()]


class _MpiExec(_Exec):
    def __init__(self) -> None:
        from relief_mpi.comm.world import World

        self.world = World()
        self.rank, self.size = self.world.rank, self.world.size

    def run(self, cfg: RunConfig, path: Path, progress: Progress | None) -> None:
        from relief_mpi.job import Resolved
        from relief_mpi.mpirun import run_mpi

        def out_path() -> Path:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.unlink()
            return path

        run_mpi(lambda: Resolved(cfg, out_path()), progress)

    def share(self, values: np.ndarray) -> np.ndarray:
        return self.world.bcast_f64(values)

    def gather_rss(self) -> list[float]:
        return self.world.allgather_f64(peak_rss_mb())

    def hosts(self) -> list[str]:
        return self.world.hosts()


class _InProcessExec(_Exec):
    def __init__(self, n_clients: int) -> None:
        self.n_clients = n_clients

    def run(self, cfg: RunConfig, path: Path, progress: Progress | None) -> None:
        from relief_mpi.run import run_inprocess

        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        run_inprocess(cfg, self.n_clients, path, progress)


def _clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _Tracker:
    """'run k of N, elapsed, ETA' lines; the ETA is the wall time per round of the runs done so far
    times the rounds still to run (runs kept by --resume cost nothing)."""

    def __init__(self, say: Progress | None, total_runs: int, total_rounds: int, t0: float) -> None:
        self.say = say
        self.total_runs, self.rounds_left = total_runs, total_rounds
        self.k = 0
        self.t0 = t0  # the bench's start: the elapsed time includes start-up and pretraining
        self.run_s = 0.0
        self.rounds_run = 0

    def line(self, text: str) -> None:
        if self.say:
            self.say(text)

    def eta(self) -> str:
        if not self.rounds_run:
            return "ETA n/a"
        return f"ETA {_clock(self.run_s / self.rounds_run * self.rounds_left)}"

    def start(self, label: str, path: Path) -> None:
        self.k += 1
        self.line(f"== run {self.k} of {self.total_runs}: {label} -> {path} "
                  f"(elapsed {_clock(time.perf_counter() - self.t0)}, {self.eta()})")

    def done(self, label: str, rounds: int, seconds: float | None) -> None:
        self.rounds_left -= rounds
        if seconds is None:
            self.k += 1
            self.line(f"== run {self.k} of {self.total_runs}: {label}: complete log kept (--resume)")
            return
        self.run_s += seconds
        self.rounds_run += rounds
        self.line(f"   run {self.k} of {self.total_runs} ({label}): {seconds:.1f} s wall; elapsed "
                  f"{_clock(time.perf_counter() - self.t0)}, {self.eta()}")


def pretrain_base(cfg: RunConfig, n_clients: int, path: Path) -> None:
    """The LoRA base a whole bench seed shares: pretrained once, as `relief-mpi train` would at start
    (run.server_model: the server split, the --pretrain-* settings), and saved for --base."""
    from relief_mpi.device.throttle import process_device
    from relief_mpi.model.pretrain import save_base
    from relief_mpi.run import server_model
    from relief_mpi.run_setup import build_setup

    setup = build_setup(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, base=None)), n_clients)
    setup.rank_device = process_device(cfg.device.device, None, [""], 0)  # pretrained where the runs' rank 0 trains
    model, _ = server_model(setup)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_base(model, setup.data.spec, path)


def _base_key(cfg: RunConfig) -> str:
    """What decides a pretrained base: seed, data and model settings (not the strategy or its lr)."""
    return json.dumps([cfg.seed, dataclasses.asdict(cfg.data), dataclasses.asdict(cfg.model)], sort_keys=True)


def _shared_bases(plan: BenchPlan, ex: _Exec, n_clients: int, configs: list[RunConfig],
                  say: Progress | None) -> dict[str, str]:
    """Pretrain (rank 0) one base per distinct (seed, data, model) among `configs`; the others wait,
    asleep, in the broadcast of the verdict. Returns base key -> checkpoint path."""
    if not plan.shared_base:
        return {}
    keys = list(dict.fromkeys(_base_key(c) for c in configs))
    out: dict[str, str] = {}
    for key in keys:
        cfg = next(c for c in configs if _base_key(c) == key)
        same_seed = [k for k in keys if json.loads(k)[0] == cfg.seed]
        suffix = f"-{same_seed.index(key)}" if len(same_seed) > 1 else ""
        path = plan.out_dir / f"base-seed{cfg.seed}{suffix}.pt"
        error = ""
        if ex.rank == 0 and not (plan.resume and path.exists()):
            if say:
                say(f"== pretraining the LoRA base of seed {cfg.seed}{suffix} (shared by every strategy) -> {path}")
            try:
                pretrain_base(cfg, n_clients, path)
            except ReliefError as e:
                error = str(e)
        _refuse_unless_agreed(ex, error, "pretraining the shared LoRA base failed on rank 0")
        out[key] = str(path)
    return out


def _refuse_unless_agreed(ex: _Exec, error: str, fallback: str) -> None:
    """Every rank learns whether rank 0 found an error (`error`, '' elsewhere) and all stop together,
    rank 0 alone printing why; `fallback` is what the other ranks' refusal says."""
    if ex.share(np.array([1.0 if error else 0.0]))[0]:
        from relief_mpi.mpirun import StartupRefused

        raise StartupRefused(error or fallback, printable=ex.rank == 0)


@dataclass
class _Runner:
    """Runs a list of (label, config, log path) jobs in the same order on every rank; with --resume,
    rank 0 decides which complete logs are kept and every rank skips those."""

    plan: BenchPlan
    ex: _Exec
    tracker: _Tracker
    progress: Progress | None
    bases: dict[str, str]  # base key -> the shared LoRA base's checkpoint ({} without one)

    def config(self, v: Variant, seed: int, lr: float | None = None, validation: bool = False) -> RunConfig:
        """The plan's config, with the shared LoRA base pretrained for it, if any."""
        cfg = self.plan.config(v, seed, lr, validation=validation)
        base = self.bases.get(_base_key(cfg))
        return cfg if base is None else dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, base=base))

    def run(self, jobs: list[tuple[str, RunConfig, Path]]) -> None:
        skip = np.zeros(len(jobs))
        if self.plan.resume and self.ex.rank == 0:
            skip[:] = [1.0 if complete(cfg, path) else 0.0 for _, cfg, path in jobs]
        skip = self.ex.share(skip)
        for (label, cfg, path), done in zip(jobs, skip, strict=True):
            name = f"{label} seed {cfg.seed} lr {cfg.strategy.lr:g}" + (" (validation)" if cfg.data.validation else "")
            if done:
                self.tracker.done(name, cfg.rounds, None)
                continue
            self.tracker.start(name, path)
            if self.ex.rank == 0:
                self.plan.out_dir.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            self.ex.run(cfg, path, self.progress)
            self.tracker.done(name, cfg.rounds, time.perf_counter() - t0)


def run_bench(plan: BenchPlan, transport: str = "mpi", n_clients: int = 4,
              progress: Progress | None = None, say: Progress | None = None) -> list[Path]:
    """Run the whole bench; returns the files written (on rank 0; [] elsewhere)."""
    ex: _Exec = _MpiExec() if transport == "mpi" else _InProcessExec(n_clients)
    if ex.rank != 0:
        progress = say = None
    t_start = time.perf_counter()
    hosts = ex.hosts()
    n = ex.size - 1 if transport == "mpi" else n_clients

    # Validate the outputs on rank 0 and let every rank agree through the first run's start-up
    # check; a refused bench never leaves half its logs behind.
    _refuse_unless_agreed(ex, _check(plan) if ex.rank == 0 else "", "bench refused to start")
    planned = [plan.config(v, plan.seeds[0], lr, validation=True) for v, lr in plan.searches]
    planned += [plan.config(v, seed) for seed in plan.seeds for v in plan.rows]
    _refuse_unless_agreed(ex, _preflight(planned, n) if ex.rank == 0 else "", "bench refused to start")
    bases = _shared_bases(plan, ex, n, planned, say)
    runner = _Runner(plan, ex, _Tracker(say, len(planned), sum(c.rounds for c in planned), t_start), progress, bases)
    chosen = _choose_lrs(runner, say) if plan.lr_grid else {}
    runner.run([(v.label, runner.config(v, seed, chosen.get(v.label)), plan.run_path(v.label, seed))
                for seed in plan.seeds for v in plan.rows])
    rss = ex.gather_rss()
    if ex.rank != 0:
        return []
    measured = _Measured(time.perf_counter() - t_start, rss, transport, hosts)
    _write_bench_json(plan, chosen, bases, measured)
    runs = [plan.run_path(v.label, k) for k in plan.seeds for v in plan.rows]
    search_paths = [plan.search_path(v.label, lr) for v, lr in plan.searches]
    return write_outputs(plan.out_dir, plan.target_f1, tuple(v.label for v in plan.rows),
                         _bench_meta(plan, measured), plots=plan.plots, paths=runs, search=search_paths)


def _choose_lrs(runner: _Runner, say: Progress | None) -> dict[str, float]:
    """Every row's lr: each lr of the grid runs on the first seed's validation split, rank 0 picks the
    best final macro-F1 per row (summary.best_lr) and broadcasts it. Returns row label -> lr."""
    plan, ex, seed0 = runner.plan, runner.ex, runner.plan.seeds[0]
    runner.run([(v.label, runner.config(v, seed0, lr, validation=True), plan.search_path(v.label, lr))
                for v, lr in plan.searches])
    scores = np.zeros(len(plan.rows), np.float64)
    if ex.rank == 0:
        for i, v in enumerate(plan.rows):
            f1 = {lr: sm.run_result(sm.read_log(plan.search_path(v.label, lr))).final_macro_f1
                  for lr in plan.lr_grid}
            scores[i] = sm.best_lr(f1)
    scores = ex.share(scores)
    chosen = {v.label: float(scores[i]) for i, v in enumerate(plan.rows)}
    if say:
        say("chosen lr (on the validation split, never the test set): " +
            ", ".join(f"{k} {lr:g}" for k, lr in chosen.items()))
    return chosen


@dataclass(frozen=True)
class _Measured:
    """What the bench measured about itself (rank 0), for summary.md and bench.json."""

    wall_s: float
    peak_rss_mb: list[float]  # per rank
    transport: str
    hosts: list[str]  # per rank


def _bench_meta(plan: BenchPlan, measured: _Measured) -> dict[str, object]:
    """What summary.md says about this bench beyond its logs: budget, wall time, transport, hosts,
    peak memory per rank, and the notes on what it left out."""
    extra: dict[str, object] = {"budget": plan.budget} if plan.budget else {}
    extra.update({"bench wall time (s)": f"{measured.wall_s:.1f}", "transport": measured.transport,
                  "hosts": ", ".join(sorted(set(measured.hosts))), "peak RSS per rank (MB)":
                  ", ".join(f"r{i} {v:.0f}" for i, v in enumerate(measured.peak_rss_mb))})
    for i, note in enumerate(plan.notes):
        extra[f"note {i + 1}"] = note
    return extra


def _write_bench_json(plan: BenchPlan, chosen: dict[str, float], bases: dict[str, str],
                      measured: _Measured) -> None:
    """bench.json: the plan, the lrs chosen, the shared bases, and what was measured on this host
    (wall time, peak RSS, transport, hosts); --summary-only reads it back."""
    write_atomic(plan.out_dir / "bench.json", json.dumps({
        "strategies": plan.strategies, "rows": [dataclasses.asdict(v) for v in plan.rows], "seeds": plan.seeds,
        "lr_grid": plan.lr_grid, "chosen_lr": chosen, "lr_chosen_on": "validation" if plan.lr_grid else None,
        "target_f1": plan.target_f1, "budget": plan.budget, "notes": plan.notes, "bases": sorted(set(bases.values())),
        "wall_s": measured.wall_s, "peak_rss_mb": measured.peak_rss_mb, "transport": measured.transport,
        "hosts": measured.hosts, "load_avg": list(_loadavg()),
    }, indent=1, default=str).encode())


def _preflight(configs: list[RunConfig], n_clients: int) -> str:
    """Build every distinct data set (seed, data settings, fleet) of the bench once, before any run,
    so a setting that cannot work (a split that leaves no test window, a fleet that does not fit)
    refuses the whole bench up front instead of stopping it halfway; '' when all build."""
    from relief_mpi.run_setup import build_setup

    seen: set[str] = set()
    for cfg in configs:
        key = json.dumps([cfg.seed, dataclasses.asdict(cfg.data), cfg.device.fleet], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            build_setup(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, base=None)), n_clients)
        except ReliefError as e:
            return f"{cfg.strategy.name} (data split {cfg.data.split}, seed {cfg.seed}): {e}"
    return ""


def complete(cfg: RunConfig, path: Path) -> bool:
    """A log of exactly this configuration with every round in it (--resume keeps it)."""
    if not path.exists():
        return False
    try:
        log = sm.read_log(path)
        return len(log.rounds) == cfg.rounds and RunConfig.from_json(log.attrs["config"]) == cfg
    except (OSError, KeyError, ValueError, TypeError):
        return False


def _check(plan: BenchPlan) -> str:
    try:
        plan.check_outputs()
    except ReliefError as e:
        return str(e)
    return ""


def read_bench_json(out_dir: Path) -> dict[str, Any] | None:
    """The bench.json an earlier bench wrote in out_dir (None: none, or not readable as one), read
    once for --summary-only's order and meta."""
    try:
        saved = json.loads((Path(out_dir) / "bench.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def planned_order(saved: dict[str, Any] | None) -> tuple[str, ...] | None:
    """The rows in the order the saved bench (read_bench_json) ran them; None if it does not say."""
    try:
        return tuple(str(r["label"]) for r in (saved or {}).get("rows") or []) or None
    except (KeyError, TypeError):
        return None


def _loadavg() -> tuple[float, ...]:
    try:
        import os

        return os.getloadavg()
    except OSError:
        return ()


def write_outputs(out_dir: Path, target_f1: float | None, order: tuple[str, ...] | None = None,
                  extra: dict[str, object] | None = None, plots: bool = True, paths: list[Path] | None = None,
                  search: list[Path] | None = None) -> list[Path]:
    """Summary (md, csv) and figures from the given logs, or from every bench log in out_dir
    (--summary-only); older logs in out_dir that this bench did not plan are left out. Logs of the
    paper's protocol get the paper's table first (bench/paper.py; --target-f1 is its target, 0.85
    by default) and ours after it (our earlier protocol's target: 95% of FedAvg's final F1)."""
    from relief_mpi.bench import paper as pp

    paths = sm.run_logs(out_dir) if paths is None else paths
    if not paths:
        raise ReliefError(f"{out_dir}: no bench logs (<strategy>-seed<k>.h5) to summarise")
    logs = sm.load_logs(paths, order)
    published = any(log.config["data"].get("protocol") == "paper" for log, _ in logs)
    summary = sm.summarize(logs, None if published else target_f1)
    summary.meta = {**sm.meta_from_logs(logs), **(extra or {})}
    lr_md = sm.lr_search_table(out_dir / "lr-search", search)
    files: list[Path] = []
    prefix = ""
    ps = None
    if published:
        ps = pp.summarize(logs, target_f1)
        ps.meta = dict(summary.meta)
        prefix = pp.markdown(ps) + "\n"
        pp.write_csv(ps, out_dir / "paper.csv")
        pp.write_json(ps, out_dir / "paper.json")
        files += [out_dir / "paper.csv", out_dir / "paper.json"]
    files = sm.write_summary(summary, out_dir, lr_md, prefix) + files
    if plots:
        from relief_mpi.bench.plots import write_figures, write_paper_figures

        files += write_figures(logs, summary, out_dir)
        if ps is not None:
            files += write_paper_figures(logs, ps, out_dir)
    return files
