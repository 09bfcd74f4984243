"""The first start-up line and the launcher's rank, for the commands (relief_mpi.launcher; the
program prints the line before the command line's own imports where it can)."""

from __future__ import annotations

from relief_mpi.launcher import launcher_rank, launcher_size, loading_line, said_start

__all__ = ["launcher_rank", "launcher_size", "loading_line", "said_start"]
