"""relief-mpi: RELIEF federated learning on a heterogeneous IoT fleet emulated as an MPI cluster."""

__version__ = "0.1.0"
