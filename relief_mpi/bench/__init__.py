"""`relief-mpi bench`: strategy comparison (runner, summary, plots) and emulator performance (system)."""
