"""Transports: how plans, blocks and updates move. An MPI one and an in-process one.

MPI (mpi4py) is imported only here in comm/ (and by the entry point): comm.world holds the job's
start-up and end, comm.mpi a round's exchange, comm.wait the sleeping wait.
"""

import sys


def mpi_loaded() -> bool:
    """mpi4py.MPI was imported in this process (importing comm.world would initialise MPI)."""
    return "mpi4py.MPI" in sys.modules
