"""Transports: how plans, blocks and updates move. An MPI one and an in-process one."""
