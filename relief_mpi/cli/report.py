"""`relief-mpi report RUN.h5`: a summary table and plots from a round log."""

from __future__ import annotations

from pathlib import Path

import click

from relief_mpi.errors import ReliefError

__all__ = ["report"]


@click.command()
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the PNG plots; default: next to the log.")
@click.option("--no-plots", is_flag=True, help="Only print the table.")
def report(log: str, out_dir: str | None, no_plots: bool) -> None:
    """Print a summary of a run's HDF5 log and write plots (macro-F1 vs round and vs time, bytes and
    energy per client). Works on a log that is still being written or whose run crashed."""
    from relief_mpi.log.report import summary_table, write_plots

    path = Path(log)
    if not path.exists():
        raise ReliefError(f"{path}: no such file")
    from relief_mpi.log.hdf5 import read_log

    run = read_log(path)  # a damaged or foreign file is one line (log.check.LogReadError)
    click.echo(summary_table(run))
    if not no_plots:
        dest = Path(out_dir) if out_dir else path.parent
        for p in write_plots(run, dest, path.stem):
            click.echo(f"plot: {p}")
