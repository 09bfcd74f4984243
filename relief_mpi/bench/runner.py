"""Run every strategy x seed of a bench, one after another, in one MPI job (or in one process).

Every rank walks the same list of runs in the same order and calls run_mpi for each; rank 0
writes one HDF5 log per run (<out-dir>/<strategy>-seed<k>.h5). With a learning-rate grid, every
strategy (the baseline included) first runs seed 0 with every lr (<out-dir>/lr-search/), rank 0
picks the lr with the best final macro-F1 and broadcasts it; that seed-0 log is reused as the
strategy's seed-0 run. Afterwards rank 0 computes the summary from the logs and draws the figures.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relief_mpi.bench import summary as sm
from relief_mpi.config import RunConfig
from relief_mpi.errors import ReliefError

Progress = Callable[[str], None]


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

    def config(self, strategy: str, seed: int, lr: float | None = None) -> RunConfig:
        st = dataclasses.replace(self.base.strategy, name=strategy,
                                 lr=self.base.strategy.lr if lr is None else lr)
        return dataclasses.replace(self.base, seed=seed, strategy=st)

    def run_path(self, strategy: str, seed: int) -> Path:
        return self.out_dir / f"{strategy}-seed{seed}.h5"

    def search_path(self, strategy: str, lr: float) -> Path:
        return self.out_dir / "lr-search" / f"{strategy}-lr{lr:g}-seed{self.seeds[0]}.h5"

    def all_paths(self) -> list[Path]:
        out = [self.run_path(s, k) for k in self.seeds for s in self.strategies]
        out += [self.search_path(s, lr) for s in self.strategies for lr in self.lr_grid]
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
        from mpi4py import MPI

        self.world = MPI.COMM_WORLD
        self.rank, self.size = self.world.Get_rank(), self.world.Get_size()

    def run(self, cfg: RunConfig, path: Path, progress: Progress | None) -> None:
        from relief_mpi.mpirun import run_mpi
        from relief_mpi.mpirun_types import Resolved

        def out_path() -> Path:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.unlink()
            return path

        run_mpi(lambda: Resolved(cfg, out_path()), progress)

    def share(self, values: np.ndarray) -> np.ndarray:
        from relief_mpi.comm.wait import wait_all

        buf = np.ascontiguousarray(values, np.float64).copy()
        wait_all([self.world.Ibcast(buf, root=0)])
        return buf

    def gather_rss(self) -> list[float]:
        from relief_mpi.comm.wait import wait_all

        mine = np.array([peak_rss_mb()], np.float64)
        out = np.zeros(self.size, np.float64)
        wait_all([self.world.Iallgather(mine, out)])
        return out.tolist()

    def hosts(self) -> list[str]:
        from relief_mpi.mpirun import gather_hosts

        return gather_hosts(self.world)


class _InProcessExec(_Exec):
    def __init__(self, n_clients: int) -> None:
        self.n_clients = n_clients

    def run(self, cfg: RunConfig, path: Path, progress: Progress | None) -> None:
        from relief_mpi.run import run_inprocess

        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        run_inprocess(cfg, self.n_clients, path, progress)


def run_bench(plan: BenchPlan, transport: str = "mpi", n_clients: int = 4,
              progress: Progress | None = None, say: Progress | None = None) -> list[Path]:
    """Run the whole bench; returns the files written (on rank 0; [] elsewhere)."""
    ex: _Exec = _MpiExec() if transport == "mpi" else _InProcessExec(n_clients)
    if ex.rank != 0:
        progress = say = None
    t_start = time.perf_counter()
    hosts = ex.hosts()
    first = [True]

    def run_all(jobs: list[tuple[RunConfig, Path]]) -> None:
        skip = np.zeros(len(jobs))
        if plan.resume and ex.rank == 0:
            skip[:] = [1.0 if complete(cfg, path) else 0.0 for cfg, path in jobs]
        skip = ex.share(skip)
        for (cfg, path), done in zip(jobs, skip, strict=True):
            label = f"{cfg.strategy.name} seed {cfg.seed} lr {cfg.strategy.lr:g}"
            if done:
                if say:
                    say(f"== {label}: complete log {path} kept (--resume)")
                continue
            if say:
                say(f"== {label} -> {path}")
            if first[0] and ex.rank == 0:
                first[0] = False
                plan.out_dir.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            ex.run(cfg, path, progress)
            if say:
                say(f"   {label}: {time.perf_counter() - t0:.1f} s wall")

    # Validate the outputs on rank 0 and let every rank agree through the first run's start-up
    # check; a refused bench never leaves half its logs behind.
    error = _check(plan) if ex.rank == 0 else ""
    flag = ex.share(np.array([1.0 if error else 0.0]))
    if flag[0]:
        from relief_mpi.mpirun import StartupRefused

        raise StartupRefused(error or "bench refused to start", printable=ex.rank == 0)

    chosen: dict[str, float] = {}
    if plan.lr_grid:
        seed0 = plan.seeds[0]
        run_all([(plan.config(s, seed0, lr), plan.search_path(s, lr)) for s in plan.strategies for lr in plan.lr_grid])
        scores = np.zeros(len(plan.strategies), np.float64)
        if ex.rank == 0:
            for i, s in enumerate(plan.strategies):
                f1 = {lr: sm.run_result(sm.read_log(plan.search_path(s, lr))).final_macro_f1 for lr in plan.lr_grid}
                scores[i] = sm.best_lr(f1)
                shutil.copyfile(plan.search_path(s, scores[i]), plan.run_path(s, seed0))
        scores = ex.share(scores)
        chosen = {s: float(scores[i]) for i, s in enumerate(plan.strategies)}
        if say:
            say("chosen lr: " + ", ".join(f"{s} {lr:g}" for s, lr in chosen.items()))
    # With a grid, the search's seed-0 run at the chosen lr is the bench's seed-0 run.
    run_all([(plan.config(s, seed, chosen.get(s)), plan.run_path(s, seed)) for seed in plan.seeds
             for s in plan.strategies if not (plan.lr_grid and seed == plan.seeds[0])])
    rss = ex.gather_rss()
    if ex.rank != 0:
        return []
    total = time.perf_counter() - t_start
    extra = {"bench wall time (s)": f"{total:.1f}", "transport": transport,
             "hosts": ", ".join(sorted(set(hosts))), "peak RSS per rank (MB)":
             ", ".join(f"r{i} {v:.0f}" for i, v in enumerate(rss))}
    (plan.out_dir / "bench.json").write_text(json.dumps({
        "strategies": plan.strategies, "seeds": plan.seeds, "lr_grid": plan.lr_grid, "chosen_lr": chosen,
        "target_f1": plan.target_f1, "wall_s": total, "peak_rss_mb": rss, "transport": transport,
        "hosts": hosts, "load_avg": list(_loadavg()),
    }, indent=1))
    runs = [plan.run_path(s, k) for k in plan.seeds for s in plan.strategies]
    search = [plan.search_path(s, lr) for s in plan.strategies for lr in plan.lr_grid]
    return write_outputs(plan.out_dir, plan.target_f1, plan.strategies, extra, plots=plan.plots, paths=runs,
                         search=search)


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
    (--summary-only); older logs in out_dir that this bench did not plan are left out."""
    paths = sm.run_logs(out_dir) if paths is None else paths
    if not paths:
        raise ReliefError(f"{out_dir}: no bench logs (<strategy>-seed<k>.h5) to summarise")
    logs = sm.load_logs(paths, order)
    summary = sm.summarize(logs, target_f1)
    summary.meta = {**sm.meta_from_logs(logs), **(extra or {})}
    files = sm.write_summary(summary, out_dir, sm.lr_search_table(out_dir / "lr-search", search))
    if plots:
        from relief_mpi.bench.plots import write_figures

        files += write_figures(logs, summary, out_dir)
    return files
