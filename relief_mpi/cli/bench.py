"""`relief-mpi bench`: every strategy x seed on the same data and fleet, one table, three figures.

Also `relief-mpi bench --system`: the emulator's own performance figures (framework overhead per
round, block-exchange throughput against raw mpi4py, peak memory per rank).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from relief_mpi.cli.options import build_config, common_options
from relief_mpi.errors import ReliefError


def _explicit(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


@click.command("bench")
@common_options
@click.option("--strategies", default="relief,fedavg", show_default=True,
              help="Comma-separated strategies to compare (any of the registered ones; fedavg is the "
                   "baseline of every comparison).")
@click.option("--seeds", default="0,1,2", show_default=True,
              help="Comma-separated seeds; each strategy runs every seed (same data, partition and fleet per seed).")
@click.option("--lr-grid", default=None,
              help="Comma-separated learning rates: every strategy (FedAvg included) tries each on the first "
                   "seed and keeps the best by final macro-F1 (the same search for everyone). Default: --lr for all.")
@click.option("--target-f1", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Target macro-F1 for time to target; default 95% of FedAvg's final macro-F1 on the same seed.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the logs (<strategy>-seed<k>.h5), summary.md, summary.csv and figures "
                   "[default: bench/<dataset>].")
@click.option("--overwrite", is_flag=True, help="Replace earlier bench outputs in --out-dir.")
@click.option("--resume", is_flag=True,
              help="Keep every log in --out-dir that is complete and has exactly this run's configuration; run "
                   "only the missing ones (after a crash or a timeout).")
@click.option("--summary-only", is_flag=True, help="Run nothing: recompute the summary and figures from the logs "
                                                    "already in --out-dir.")
@click.option("--no-plots", is_flag=True, help="Write the tables only.")
@click.option("--transport", type=click.Choice(["mpi", "inprocess"]), default="mpi", show_default=True,
              help="mpi: under mpirun (rank 0 server, ranks 1..N-1 clients); inprocess: every client in this process.")
@click.option("--clients", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of clients with --transport inprocess (under MPI it is N-1).")
@click.option("--quiet", is_flag=True, help="No per-round lines (one line per run only).")
@click.option("--system", is_flag=True,
              help="Instead of the strategy comparison: the emulator's performance on this MPI job (overhead "
                   "per round for this world size, Bcast/Reduce throughput vs raw mpi4py, peak memory per rank).")
@click.option("--max-mb", type=click.IntRange(min=0), default=64, show_default=True,
              help="--system: largest block size of the throughput sweep (from 1 KB, x4 per step); 0 = no sweep.")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None,
              help="--system: also write the figures as JSON to this file.")
@click.pass_context
def command(ctx: click.Context, **kw: Any) -> None:
    """Compare strategies on one scenario: every strategy x seed in this one job, sequentially.

    \b
    Under MPI:   mpirun -n 9 relief-mpi bench --strategies relief,fedavg,fedprox --seeds 0,1,2 --out-dir D
    One process: relief-mpi bench --transport inprocess --clients 8 ...
    Emulator:    mpirun -n 5 relief-mpi bench --system --rounds 3 --local-steps 2

    Writes D/<strategy>-seed<k>.h5 (one HDF5 round log per run), D/summary.md, D/summary.csv,
    D/runs.csv and D/f1_vs_time.png, D/energy_per_tier.png, D/bytes_per_round.png. Per strategy:
    final accuracy, macro-F1 and rare-modality F1 (gain over FedAvg in pp), time to the target
    macro-F1 (emulated and wall) and speedup over FedAvg, energy and its reduction, bytes up/down;
    mean ± std over seeds. A run that never reaches the target is reported as not reached.
    """
    from relief_mpi.bench.runner import BenchPlan, parse_list, run_bench, write_outputs
    from relief_mpi.strategy.registry import strategy_classes

    for name, alt in (("strategy", "--strategies"), ("seed", "--seeds")):
        if _explicit(ctx, name):
            raise ReliefError(f"bench takes {alt}, not --{name}")
    if kw["system"]:
        return _system(kw, _explicit(ctx, "strategies"))
    out_dir = Path(kw["out_dir"]) if kw["out_dir"] else Path("bench") / kw["dataset"]
    strategies = parse_list(kw["strategies"], str, "--strategies")
    known = strategy_classes()
    bad = [s for s in strategies if s not in known]
    if bad:
        raise ReliefError(f"--strategies: {bad[0]!r} is not available; available: {', '.join(sorted(known))}")
    if kw["summary_only"]:
        for p in write_outputs(out_dir, kw["target_f1"], strategies, _saved_meta(out_dir), not kw["no_plots"]):
            click.echo(f"wrote {p}")
        return
    seeds = parse_list(kw["seeds"], int, "--seeds")
    grid = parse_list(kw["lr_grid"], float, "--lr-grid") if kw["lr_grid"] else ()
    if any(x <= 0 for x in grid):
        raise ReliefError("--lr-grid: learning rates must be > 0")
    if _explicit(ctx, "lr") and grid:
        raise ReliefError("give --lr or --lr-grid, not both")
    cfg = build_config({**kw, "strategy": strategies[0], "seed": seeds[0]})
    if kw["resume"] and kw["overwrite"]:
        raise ReliefError("give --resume or --overwrite, not both")
    plan = BenchPlan(cfg, strategies, seeds, out_dir, grid, kw["target_f1"], kw["overwrite"], not kw["no_plots"],
                     kw["resume"])
    progress = None if kw["quiet"] else (lambda line: click.echo(line))

    def say(line: str) -> None:
        click.echo(line)

    if kw["transport"] == "inprocess":
        files = run_bench(plan, "inprocess", kw["clients"], progress, say)
    else:
        files = _guarded(lambda: run_bench(plan, "mpi", 0, progress, say))
    for p in files or []:
        click.echo(f"wrote {p}")
    if files:
        click.echo((out_dir / "summary.md").read_text())


def _saved_meta(out_dir: Path) -> dict[str, object] | None:
    import json

    p = out_dir / "bench.json"
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text())
    except ValueError:
        return None
    return {"bench wall time (s)": f"{d.get('wall_s', float('nan')):.1f}", "transport": d.get("transport"),
            "peak RSS per rank (MB)": ", ".join(f"r{i} {v:.0f}" for i, v in enumerate(d.get("peak_rss_mb", [])))}


def _guarded(fn):  # noqa: ANN001, ANN202 - run under MPI; any failure on any rank ends the whole job
    from mpi4py import MPI

    from relief_mpi.cli.train import _abort
    from relief_mpi.mpirun import StartupRefused

    try:
        return fn()
    except StartupRefused as e:
        if e.printable:
            click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except ReliefError:
        if MPI.COMM_WORLD.Get_size() > 1 and MPI.COMM_WORLD.Get_rank() != 0:
            _abort()
        raise
    except BaseException:  # noqa: BLE001
        _abort()


def _system(kw: dict[str, Any], explicit_strategies: bool) -> None:
    from relief_mpi.bench.system import run_system

    strategy = kw["strategies"].split(",")[0].strip() if explicit_strategies else "fedavg"
    cfg = build_config({**kw, "strategy": strategy})
    _guarded(lambda: run_system(cfg, kw["max_mb"], Path(kw["json_out"]) if kw["json_out"] else None,
                                lambda line: click.echo(line)))
