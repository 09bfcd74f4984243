"""Why a started run stopped early: one exception type per cause, each with its exit code.

Start-up problems are plain ReliefError or StartupRefused (exit 2). Once rounds run, a stop has to say what the
log keeps and how to continue, and under MPI it decides whether the clients could be released
cleanly (between rounds) or the job must be aborted (a round in flight). Server.run fills in the
log facts; the CLI prints `describe(e)` as the one line and exits with `e.exit_code`.
RunStopped, RoundTimeout and StartupRefused live in relief_mpi.errors (comm/ raises them) and
are re-exported here.
"""

from __future__ import annotations

import signal
from pathlib import Path

from relief_mpi.errors import EXIT_FAILED, EXIT_TIMEOUT, RoundTimeout, RunStopped, StartupRefused

__all__ = ["DIVERGED_ROUNDS", "EXIT_DIVERGED", "EXIT_FAILED", "EXIT_TIMEOUT", "CheckpointWriteError", "Diverged",
           "Interrupted", "LogWriteError", "RoundTimeout", "RunStopped", "StartupRefused", "Stop", "describe",
           "log_facts"]

EXIT_DIVERGED = 3  # every client's update was rejected for DIVERGED_ROUNDS rounds in a row
DIVERGED_ROUNDS = 3


class LogWriteError(RunStopped):
    """Writing the HDF5 round log failed (disk full, quota, I/O error)."""


class CheckpointWriteError(RunStopped):
    """Writing a checkpoint failed; the previous checkpoint, if any, is untouched."""


class Diverged(RunStopped):
    """Every client's update was non-finite for several rounds in a row: the model is frozen."""

    exit_code = EXIT_DIVERGED
    status = "diverged"


class Interrupted(BaseException):
    """SIGINT/SIGTERM on the server rank. A BaseException like KeyboardInterrupt, so that no
    `except Exception` on the way up turns it into something else."""

    status = "interrupted"

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum
        self.clean = False
        self.log: Path | None = None
        self.log_rounds: int | None = None
        self.checkpoint_round: int | None = None


Stop = RunStopped | Interrupted


def log_facts(e: Stop) -> str:
    """What the log (and checkpoint) keep, and how to continue."""
    if e.log is None:
        return "no log was kept (no complete round)"
    k = e.log_rounds or 0
    keeps = f"the log {e.log} keeps rounds 1..{k}" if k else f"the log {e.log} keeps no complete round"
    if e.checkpoint_round is not None:
        return f"{keeps}; resume with: relief-mpi train --resume {e.log} (checkpoint at round {e.checkpoint_round})"
    return keeps


def describe(e: Stop) -> str:
    """The one line the user sees (without the `error: ` prefix)."""
    if isinstance(e, Interrupted):
        k = e.log_rounds or 0
        when = f"after round {k}" if k else "before the first complete round"
        if e.log is not None and e.checkpoint_round is not None:
            return (f"interrupted by {e} {when}; resume with: relief-mpi train --resume {e.log} "
                    f"(checkpoint at round {e.checkpoint_round})")
        return f"interrupted by {e} {when}; {log_facts(e)}"
    return f"{e}; {log_facts(e)}"
