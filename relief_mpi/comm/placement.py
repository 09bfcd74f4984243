"""Which client rank hosts which client: round robin, so every rank gets a mix of the fleet's tiers.

With R client ranks (ranks 1..R) and K >= R clients (0-based k), client k runs on rank
1 + (k mod R): rank r hosts clients r-1, r-1+R, r-1+2R, ... and trains them in turn. With one
client per rank (K = R) client k is rank k+1, as before. Every rank derives the same placement
from (K, R) alone, so it costs no message. No MPI here: the in-process transport groups its
clients the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Bucket", "Key", "buckets", "by_rank", "check_fits", "clients_of", "host_rank", "members", "split"]

Key = tuple[int, ...]  # a communicator's members: world ranks, the server (0) first


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
    return np.asarray(full.reshape(-1, n_ranks, g).any(axis=0))


def check_fits(n_clients: int, n_ranks: int) -> None:
    if n_clients < n_ranks:
        raise ValueError(f"{n_clients} client(s) cannot fill {n_ranks} client ranks: launch with -n {n_clients + 1} "
                         f"or fewer, or give --clients {n_ranks} or more")


def members(column: np.ndarray) -> Key | None:
    """Server + the client ranks flagged in an [R] column; None if no rank is flagged."""
    ranks = tuple(int(r) + 1 for r in np.flatnonzero(column))
    return (0, *ranks) if ranks else None


Bucket = tuple[Key, tuple[int, ...]]  # a member set and the groups (in order) that share its collective


def buckets(keys: list[Key | None]) -> list[Bucket]:
    """Groups by member set, in order of first appearance (the same on every rank)."""
    out: dict[Key, list[int]] = {}
    for b, key in enumerate(keys):
        if key is not None:
            out.setdefault(key, []).append(b)
    return [(key, tuple(groups)) for key, groups in out.items()]


def split(buf: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """Views of consecutive pieces of `buf` (no copy)."""
    return np.split(buf, np.cumsum(lengths)[:-1]) if len(lengths) > 1 else [buf]
