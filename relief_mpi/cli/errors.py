"""How a command ends a job from an error: the one line of a stopped run, and the whole job's end.

Neutral on purpose (train and bench both end jobs this way, and no command imports another for it).
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import click

from relief_mpi import signals
from relief_mpi.cli.output import exit_process
from relief_mpi.log.lock import release_all
from relief_mpi.stops import Interrupted, RunStopped, describe

__all__ = ["abort_job", "stop_here", "stop_line"]


def stop_line(e: RunStopped | Interrupted) -> str:
    """The one line of a run that stopped early."""
    return describe(e) if isinstance(e, Interrupted) else f"error: {describe(e)}"


def stop_here(e: RunStopped | Interrupted) -> None:
    """Print the stop's line and leave with its exit code. Under MPI, a stop that could not release
    the clients (a round was in flight, or a client stopped answering) ends the job with MPI_Abort,
    so that the launcher exits with this code (not with the signal it then kills a stopped rank
    with); the library's own abort line is kept off stderr, the user has ours."""
    from relief_mpi.comm import mpi_loaded

    signals.ignore()  # the line says it all: a second Ctrl-C while leaving changes nothing
    click.echo(stop_line(e), err=True)
    if mpi_loaded() and not e.clean:
        from relief_mpi.comm.world import abort, world_size

        if world_size() > 1:
            abort(e.exit_code, quiet=True)
    release_all()  # the log's writer lock; exit_process may leave by os._exit, past atexit
    exit_process(e.exit_code)


def abort_job(released_ok: bool = False) -> None:
    """End the whole job from the exception being handled: a stop of the run (stops) is its one
    line and exit code; anything else is a traceback and MPI_Abort. released_ok: the clients of a
    cleanly stopped run leave by themselves (train); a caller whose clients would go on to another
    run (bench) leaves it False, and the job is aborted with the stop's code."""
    from relief_mpi.comm.world import abort, world_rank

    e = sys.exc_info()[1]
    if isinstance(e, (RunStopped, Interrupted)):
        e.clean = e.clean and released_ok
        stop_here(e)
    if isinstance(e, KeyboardInterrupt):  # a signal before the handlers were installed: no traceback
        sys.stderr.flush()
        os._exit(130)
    rank = world_rank()
    sys.stderr.write(f"relief-mpi: rank {rank} failed, aborting the job:\n{traceback.format_exc()}")
    sys.stderr.flush()
    # Give the launcher a moment to forward the traceback: Abort tears every process down at once,
    # and output still in a pipe can be lost with it.
    time.sleep(0.5)
    abort(1)
