from relief_mpi.program import entry

entry()
