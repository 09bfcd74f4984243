"""`relief-mpi train`: one federated run, one HDF5 log."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from relief_mpi.cli.options import build_config, common_options
from relief_mpi.config import RunConfig
from relief_mpi.errors import ReliefError
from relief_mpi.run import DebugHooks, Progress


def default_out(strategy: str, dataset: str, seed: int) -> Path:
    return Path("runs") / f"{strategy}-{dataset}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}.h5"


def check_out(path: Path, overwrite: bool) -> Path:
    if path.suffix not in (".h5", ".hdf5"):
        raise ReliefError(f"--out {path}: the log is HDF5; give a path ending in .h5")
    if path.exists() and not overwrite:
        raise ReliefError(f"--out {path} exists; pass --overwrite to replace it (or pick another path)")
    if path.exists() and path.is_dir():
        raise ReliefError(f"--out {path} is a directory")
    return path


def parse_fault(value: str | None) -> tuple[str, int, int] | None:
    if not value:
        return None
    try:
        kind, rank, rnd = value.split(":")
        if kind not in ("nan", "raise", "kill"):
            raise ValueError
        return kind, int(rank), int(rnd)
    except ValueError:
        raise ReliefError(f"--fault {value!r}: use nan|raise|kill:RANK:ROUND") from None


@click.command()
@common_options
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="HDF5 log path; default runs/<strategy>-<dataset>-seed<seed>-<time>.h5.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--transport", type=click.Choice(["mpi", "inprocess"]), default="mpi", show_default=True,
              help="mpi: run under mpirun (rank 0 server, ranks 1..N-1 clients); inprocess: every client in "
                   "this one process (no MPI needed).")
@click.option("--clients", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of clients with --transport inprocess (under MPI it is N-1).")
@click.option("--quiet", is_flag=True, help="No per-round lines.")
@click.option("--fault", hidden=True, default=None,
              help="Test only: KIND:RANK:ROUND injects nan (client update), raise or kill (any rank).")
@click.option("--debug-dump", hidden=True, default=None, type=click.Path(file_okay=False),
              help="Test only: save every client's block deltas and the server's blocks per round here.")
def train(**kw: Any) -> None:
    """Run one federated training job and write its HDF5 round log.

    \b
    Under MPI:   mpirun -n 5 relief-mpi train [options]
    One process: relief-mpi train --transport inprocess --clients 4

    With no options it trains FedAvg for 20 rounds on the built-in synthetic dataset with the
    default three-tier fleet, prints one line per round, and ends with the log's path.
    """
    cfg = build_config(kw)
    progress = None if kw["quiet"] else (lambda line: click.echo(line))
    debug = DebugHooks(parse_fault(kw["fault"]), kw["debug_dump"])

    def out_path() -> Path:
        p = Path(kw["out"]) if kw["out"] else default_out(cfg.strategy.name, cfg.data.dataset, cfg.seed)
        return check_out(p, kw["overwrite"])

    if kw["transport"] == "inprocess":
        from relief_mpi.run import run_inprocess

        out = out_path()
        run_inprocess(cfg, kw["clients"], out, progress, debug)
        click.echo(f"log: {out}")
        return
    _train_mpi(cfg, out_path, progress, debug)


def _train_mpi(cfg: RunConfig, out_path: Callable[[], Path], progress: Progress | None, debug: DebugHooks) -> None:
    from mpi4py import MPI

    from relief_mpi.mpirun import StartupRefused, run_mpi

    try:
        out = run_mpi(cfg, out_path, progress, debug)
    except StartupRefused as e:
        if e.printable:
            click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except ReliefError:
        if MPI.COMM_WORLD.Get_size() > 1 and MPI.COMM_WORLD.Get_rank() != 0:
            _abort()
        raise
    except BaseException:  # noqa: BLE001 - any failure on any rank must end the whole job, never hang
        _abort()
    if out is not None:
        click.echo(f"log: {out}")


def _abort() -> None:
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    sys.stderr.write(f"relief-mpi: rank {rank} failed, aborting the job:\n{traceback.format_exc()}")
    sys.stderr.flush()
    MPI.COMM_WORLD.Abort(1)
