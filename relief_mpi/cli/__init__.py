"""Command line: click commands only; each parses, validates, builds a frozen config, hands on.

Errors a user can fix print one line (`error: ...`) and exit 2. Under mpirun every rank parses
the same argv and reaches the same verdict; only rank 0 prints it.
"""

from __future__ import annotations

import os
import sys

import click

from relief_mpi import __version__
from relief_mpi.errors import ReliefError, WriteFailed

__all__ = ["cli", "fail", "launcher_rank", "main"]


_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")


def launcher_rank() -> int:
    """This process's MPI rank as the launcher announced it (0 when not under a launcher)."""
    for var in _RANK_VARS:
        if var in os.environ:
            try:
                return int(os.environ[var])
            except ValueError:
                continue
    return 0


def fail(message: str, code: int = 2, printable: bool = True) -> None:
    if printable and launcher_rank() == 0:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="relief-mpi")
def cli() -> None:
    """relief-mpi: RELIEF federated learning on an emulated heterogeneous IoT fleet, over MPI.

    Rank 0 is the server, ranks 1..N-1 are clients, each emulating a device (Jetson, Raspberry
    Pi, ...). Every run writes an HDF5 round log. Start with:

        mpirun -n 5 relief-mpi train

    then `relief-mpi report runs/<log>.h5`.
    """


def _register() -> None:
    from relief_mpi.cli import report, train

    cli.add_command(train.train)
    cli.add_command(report.report)
    for mod_name in ("data", "fleet", "bench", "pretrain", "hosts", "config"):
        try:
            mod = __import__(f"relief_mpi.cli.{mod_name}", fromlist=["command"])
        except ModuleNotFoundError as e:
            if e.name != f"relief_mpi.cli.{mod_name}":
                raise
            continue
        cli.add_command(mod.command)


_register()


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        fail("aborted", 130)
    except click.ClickException as e:
        if launcher_rank() == 0:
            e.show()
        sys.exit(e.exit_code)
    except ReliefError as e:
        fail(str(e), e.exit_code if isinstance(e, WriteFailed) else 2, printable=getattr(e, "printable", True))
