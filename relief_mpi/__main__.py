from relief_mpi.cli import entry

entry()
