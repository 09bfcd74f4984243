from relief_mpi.cli import main

main()
