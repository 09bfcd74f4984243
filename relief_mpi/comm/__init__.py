"""Transports: how plans, blocks and updates move. An MPI one and an in-process one.

MPI (mpi4py) is imported only here in comm/ (and by the entry point): comm.world holds the job's
start-up and end, comm.mpi a round's exchange, comm.wait the sleeping wait.

Importing this package, before any mpi4py.MPI import, sets one default for the pip MPICH wheel
(MPICH 4 or newer; a user's own setting wins): the cohort reduce, a persistent or nonblocking
Reduce, takes the binomial tree. The cohort's persistent Bcast + Reduce of 1 KB on 5 ranks of 2
cores took 173-224 us with MPICH's automatic choice and 138-147 us with it (docs/bench.md,
section 5). Only there: MPICH rejects a value it does not know at MPI_Init, and older MPICH
releases (a Jetson's system MPICH 3.3, say) name their algorithms differently.
"""

import os
import sys

__all__ = ["REDUCE_ALGORITHM_VAR", "mpi_loaded", "pip_mpich_major"]

REDUCE_ALGORITHM_VAR = "MPIR_CVAR_IREDUCE_INTRA_ALGORITHM"


def pip_mpich_major() -> int | None:
    """The major version of the pip `mpich` wheel in this environment, None without one."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("mpich").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return None


if "mpi4py.MPI" not in sys.modules and (pip_mpich_major() or 0) >= 4:
    os.environ.setdefault(REDUCE_ALGORITHM_VAR, "sched_binomial")


def mpi_loaded() -> bool:
    """mpi4py.MPI was imported in this process (importing comm.world would initialise MPI)."""
    return "mpi4py.MPI" in sys.modules
