"""User-facing errors: one clear line, non-zero exit, no traceback.

Also the errors that comm/ raises (StartupRefused, RoundTimeout) and the stop they belong to
(RunStopped): they sit here, below every package, so that the transports raise them without
importing the application above them. stops.py re-exports them with the other stops.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EXIT_FAILED", "EXIT_TIMEOUT", "ReliefError", "RoundTimeout", "RunStopped", "StartupRefused",
           "WriteFailed"]

EXIT_FAILED = 1  # the log or a checkpoint could not be written
EXIT_TIMEOUT = 4  # a round did not finish within --round-timeout


class ReliefError(Exception):
    """A problem with the user's input (options, files, fleet) that the user can fix."""


class StartupRefused(ReliefError):
    """Raised on every rank when a rank refused to start; `printable` only where it should print."""

    def __init__(self, message: str, printable: bool) -> None:
        super().__init__(message)
        self.printable = printable


class RunStopped(ReliefError):
    """A run that started and had to stop; `status` is written as the log's end marker."""

    exit_code = EXIT_FAILED
    status = "failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.clean = False  # True once the clients were told the run is over (no abort needed)
        self.log: Path | None = None  # the log it wrote (None: removed, or never created)
        self.log_rounds: int | None = None  # complete rounds the log keeps
        self.checkpoint_round: int | None = None


class RoundTimeout(RunStopped):
    """A round did not finish in time: a client is stopped, hung, or far slower than allowed."""

    exit_code = EXIT_TIMEOUT
    status = "timeout"
    ranks: list[int] = []  # the ranks named as not answering


class WriteFailed(ReliefError):
    """An output file could not be written (read-only folder, disk full): one line and exit 1, as
    for a run's log (EXIT_FAILED), and no partial file left behind."""

    exit_code = EXIT_FAILED
