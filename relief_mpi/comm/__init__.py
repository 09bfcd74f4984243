"""Transports: how plans, blocks and updates move. An MPI one and an in-process one.

MPI (mpi4py) is imported only here in comm/ (and by the entry point): comm.world holds the job's
start-up and end, comm.mpi a round's exchange, comm.wait the sleeping wait.

Importing this package, before any mpi4py.MPI import, sets one MPICH default (a user's own
setting wins; other MPIs ignore it): the cohort reduce, a persistent or nonblocking Reduce, takes
the binomial tree. MPICH's automatic choice for it measured about 1.4x slower for 1 KB on 5 ranks
of 2 cores (persistent Reduce 194 vs 140 us) and no faster at 1 MB (docs/bench.md, section 5).
"""

import os
import sys

REDUCE_ALGORITHM_VAR = "MPIR_CVAR_IREDUCE_INTRA_ALGORITHM"
if "mpi4py.MPI" not in sys.modules:
    os.environ.setdefault(REDUCE_ALGORITHM_VAR, "sched_binomial")


def mpi_loaded() -> bool:
    """mpi4py.MPI was imported in this process (importing comm.world would initialise MPI)."""
    return "mpi4py.MPI" in sys.modules
