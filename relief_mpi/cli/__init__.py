"""Command line: click commands only; each parses, validates, builds a frozen config, hands on.

Errors a user can fix print one line (`error: ...`) and exit 2. Under mpirun every rank parses
the same argv and reaches the same verdict; only rank 0 prints it.
"""

from __future__ import annotations

import sys

import click

from relief_mpi import __version__, signals
from relief_mpi.cli.startup import launcher_rank
from relief_mpi.errors import ReliefError, WriteFailed

__all__ = ["cli", "entry", "fail", "launcher_rank", "main"]


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


def entry() -> None:
    """The program (`relief-mpi`, `python -m relief_mpi`): main(), then, once a run's log is complete,
    signals.end_process: a signal after the final write is one line and its exit code, and none can
    land in the interpreter's shutdown (which puts the default handlers back: a Ctrl-C there killed
    the process with no line). Tests call main() in their own process and keep it."""
    main()
    if signals.done():
        signals.end_process()
