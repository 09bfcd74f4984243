"""Types of the MPI job's start-up, importable without initialising MPI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relief_mpi.checkpoint import Checkpoint
from relief_mpi.config import RunConfig
from relief_mpi.errors import ReliefError


@dataclass
class Resolved:
    """What rank 0 decides before anything starts: the config, the log path, a checkpoint."""

    config: RunConfig
    out: Path
    resume: Checkpoint | None = None
    world_size: int | None = None  # a resumed run must keep its rank count
    round_timeout: float | None = None  # the watchdog's limit per round in seconds; None = auto (run.round_timeout)
    n_clients: int | None = None  # --clients; None = one per client rank (MPI) or 4 (in-process)


class StartupRefused(ReliefError):
    """Raised on every rank when a rank refused to start; `printable` only where it should print."""

    def __init__(self, message: str, printable: bool) -> None:
        super().__init__(message)
        self.printable = printable
