"""The first start-up line, printed before the heavy imports.

Every rank of a job imports torch (and the data and model code) before rank 0 can say anything
through MPI: at -n 33 on a 2-core host that was 27 s of silence. So rank 0 (as the launcher
announced it, without MPI) says what the job is doing at once, before any of that is imported.
"""

from __future__ import annotations

import os

__all__ = ["launcher_rank", "launcher_size", "loading_line"]

_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_NTASKS")


def launcher_rank() -> int:
    """This process's MPI rank as the launcher announced it (0 when not under a launcher)."""
    for var in _RANK_VARS:
        if var in os.environ:
            try:
                return int(os.environ[var])
            except ValueError:
                continue
    return 0


def launcher_size() -> int | None:
    """The job's number of ranks as the launcher announced it (None when not under a launcher)."""
    for var in _SIZE_VARS:
        try:
            return int(os.environ[var])
        except (KeyError, ValueError):
            continue
    return None


def loading_line(transport: str) -> str | None:
    """The line rank 0 prints first (None on the other ranks)."""
    if launcher_rank() != 0:
        return None
    if transport == "inprocess":
        return "start: loading torch and the run's code (one process)"
    n = launcher_size()
    ranks = f"{n} ranks" if n is not None else "every rank"
    return f"start: loading torch, MPI and the run's code on {ranks} (then the data and model)"
