"""Which client rank hosts which client: round robin, so every rank gets a mix of the fleet's tiers.

With R client ranks (ranks 1..R) and K >= R clients (0-based k), client k runs on rank
1 + (k mod R): rank r hosts clients r-1, r-1+R, r-1+2R, ... and trains them in turn. With one
client per rank (K = R) client k is rank k+1, as before. Every rank derives the same placement
from (K, R) alone, so it costs no message. No MPI here: the in-process transport groups its
clients the same way.
"""

from __future__ import annotations

import numpy as np


def host_rank(k: int, n_ranks: int) -> int:
    """The client rank (1..n_ranks) that hosts client k."""
    return 1 + k % n_ranks


def clients_of(rank: int, n_clients: int, n_ranks: int) -> list[int]:
    """The clients hosted by client rank `rank`, in training order."""
    return list(range(rank - 1, n_clients, n_ranks))


def by_rank(flags: np.ndarray, n_ranks: int) -> np.ndarray:
    """bool [R, G]: whether rank r+1 hosts at least one client flagged in the [K, G] matrix."""
    k, g = flags.shape
    pad = -(-k // n_ranks) * n_ranks - k
    full = np.concatenate([flags.astype(bool), np.zeros((pad, g), bool)]) if pad else flags.astype(bool)
    return full.reshape(-1, n_ranks, g).any(axis=0)


def check_fits(n_clients: int, n_ranks: int) -> None:
    if n_clients < n_ranks:
        raise ValueError(f"{n_clients} client(s) cannot fill {n_ranks} client ranks: launch with -n {n_clients + 1} "
                         f"or fewer, or give --clients {n_ranks} or more")
