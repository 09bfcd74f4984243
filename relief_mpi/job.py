"""What rank 0 decides before a job starts (Resolved) and its check of the client count against
the job's ranks, importable without torch or MPI: the command line builds it before anything
heavy is loaded; mpirun.run_mpi and the bench run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from relief_mpi.config import RunConfig
from relief_mpi.device.fleet import PAPER_FLEET, load_fleet
from relief_mpi.errors import ReliefError

if TYPE_CHECKING:  # torch: the command line stays quick to start (--help, bad input)
    from relief_mpi.checkpoint import Checkpoint

__all__ = ["Resolved", "check_clients"]


@dataclass
class Resolved:
    """What rank 0 decides before anything starts: the config, the log path, a checkpoint."""

    config: RunConfig
    out: Path
    resume: Checkpoint | None = None
    world_size: int | None = None  # a resumed run must keep its rank count
    round_timeout: float | None = None  # the watchdog's limit per round in seconds; None = auto (server.round_timeout)
    n_clients: int | None = None  # --clients; None = one per client rank (MPI) or 4 (in-process)


def check_clients(res: Resolved, size: int) -> Resolved:
    """Rank 0's number of clients for a job of `size` ranks (ReliefError: one line, exit 2 when it
    does not fit). Default: one per client rank, or, when the fleet file names more clients than
    that (tier `ranks`), as many as it names; --clock real needs one client per rank."""
    ranks = size - 1
    fleet = res.config.device.fleet
    if res.n_clients is None and fleet != PAPER_FLEET:
        named = max((r for t in load_fleet(fleet) for r in t.ranks), default=0)
        res.n_clients = named if named > ranks else None
    k = res.n_clients or ranks
    if ranks >= 1 and k < ranks:
        raise ReliefError(f"--clients {k} is fewer than the job's {ranks} client ranks (every client rank hosts at "
                          f"least one client): launch with -n {k + 1}, or give --clients {ranks} or more")
    if k > ranks >= 1 and res.config.device.clock == "real":
        raise ReliefError(f"--clock real emulates concurrent devices in real time and needs one client per rank, "
                          f"got {k} clients on {ranks} client ranks: launch with -n {k + 1}, or use --clock virtual")
    return res
