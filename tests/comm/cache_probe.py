"""Run under mpiexec -n 3 by test_comm_cache: the communicator cache's LRU bound with a pinned
communicator and a round that needs more than the bound. Every rank writes to DIR/rank<k>.txt
(argv[1]), per step, the keys the cache holds (in LRU order) and the size and rank sum of every
communicator it is a member of."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

from relief_mpi.comm.mpi import CommCache
from relief_mpi.comm.wait import wait_all

STEPS: list[tuple[list[tuple[int, ...]], bool]] = [
    ([(0, 1, 2)], True),  # pinned: never counted against the bound, never evicted
    ([(0, 1)], False),
    ([(0, 2)], False),
    ([(0,)], False),  # 3 unpinned > 2: the least recently used, (0, 1), goes
    ([(0, 2), (0, 1)], False),  # (0, 2) used again; (0, 1) back; the LRU one, (0,), goes
    ([(0,), (0, 1), (0, 2)], False),  # all three needed this round: kept beyond the bound (the
    # ones it holds are touched first, then (0,) is created: it is the most recently used)
]


def main() -> None:
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    cache = CommCache(world, capacity=2)
    out: list[str] = []
    for i, (keys, pin) in enumerate(STEPS):
        cache.ensure(keys, pin=pin)
        out.append(f"rank {rank} step {i} holds {list(cache.comms)}")
        for key in keys:
            if rank not in key:
                continue
            comm = cache.get(key)
            total = np.zeros(1, np.int64)
            wait_all([comm.Iallreduce(np.array([rank], np.int64), total)])
            out.append(f"rank {rank} step {i} {key} size {comm.Get_size()} sum {int(total[0])}")
    try:
        cache.get(next(k for k in cache.comms if rank not in k))
    except RuntimeError as e:
        out.append(f"rank {rank} not a member: {e}")
    except StopIteration:
        out.append(f"rank {rank} member of all")
    cache.close()
    out.append(f"rank {rank} closed {len(cache.comms)}")
    (Path(sys.argv[1]) / f"rank{rank}.txt").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
