"""What the launcher told this process (its rank, the job's size), and the first start-up line.

Only the standard library: relief_mpi.program prints the line from here before the command line's
own imports (issue 22, case 18).
"""

from __future__ import annotations

import os

__all__ = ["early_line", "launcher_rank", "launcher_size", "loading_line", "mark_said", "said_start"]

_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_NTASKS")
_said = False


def _env_int(names: tuple[str, ...]) -> int | None:
    for var in names:
        try:
            return int(os.environ[var])
        except (KeyError, ValueError):
            continue
    return None


def launcher_rank() -> int:
    """This process's MPI rank as the launcher announced it (0 when not under a launcher)."""
    return _env_int(_RANK_VARS) or 0


def launcher_size() -> int | None:
    """The job's number of ranks as the launcher announced it (None when not under a launcher)."""
    return _env_int(_SIZE_VARS)


def loading_line(transport: str) -> str | None:
    """The first start-up line of `train` (None on every rank but 0)."""
    if launcher_rank() != 0:
        return None
    if transport == "inprocess":
        return "start: loading torch and the run's code (one process)"
    n = launcher_size()
    ranks = f"{n} ranks" if n is not None else "every rank"
    return f"start: loading torch, MPI and the run's code on {ranks} (then the data and model)"


def early_line(argv: list[str]) -> str | None:
    """The line for `argv` when it is sure to be wanted: `train` without --quiet, --help or a
    --config file (which may set quiet or the transport; cli.train then prints it)."""
    if not argv or argv[0] != "train":
        return None
    args = argv[1:]
    if any(a in ("--quiet", "-h", "--help") or a.startswith("--config") for a in args):
        return None
    transport = "mpi"
    for i, a in enumerate(args):
        if a == "--transport" and i + 1 < len(args):
            transport = args[i + 1]
        elif a.startswith("--transport="):
            transport = a.split("=", 1)[1]
    return loading_line(transport)


def said_start() -> bool:
    """Whether this process printed the first start-up line already."""
    return _said


def mark_said() -> None:
    global _said
    _said = True
