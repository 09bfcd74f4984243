"""Federated strategies: what each client trains each round and how updates merge.

Strategies never touch MPI: they see plans, block buffers and sums, nothing of the transport.
"""
