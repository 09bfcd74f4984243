"""One round's exchange timed two ways in the same job: through the MPI transport, and as the same
messages through raw blocking mpi4py (`relief-mpi bench --system`, relief_mpi/bench/system.py).

For a block of B bytes (float32) and one group owned by every client (one per client rank):

- block exchange (the goal figure of issue 15): ours = the transport's own start_exchange /
  start_blocks / start_updates (the cohort's block broadcast and update reduce, persistent where
  the MPI has them) completed by comm.wait.wait_all, with the copies in and out of their buffers;
  raw = a blocking Bcast of the block and a blocking Reduce of the update buffer (float64,
  rounds.update_len) on COMM_WORLD (which has the cohort's members);
- whole round: ours = run_round on the server, next_plan / receive_blocks / send on the clients:
  the plan (one message per rank), each rank's acknowledgement, the block exchange, each rank's
  report, with the encoding and decoding of the plan and of the sums; raw = the same messages,
  already built, with blocking Send/Recv, Bcast and Reduce, and no encoding or decoding.

Each repetition runs raw then ours back to back after a barrier, so both see the same load.
ratio = raw time / our time (1: as fast as raw mpi4py; below 1: ours slower).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from mpi4py import MPI

from relief_mpi.comm import wire
from relief_mpi.comm.mpi import MpiClientTransport, MpiServerTransport
from relief_mpi.comm.transport import Handshake
from relief_mpi.comm.wait import wait_all
from relief_mpi.rounds import UPDATE_DTYPE, RoundPlan, update_len

__all__ = ["TAG_RAW", "measure"]

TAG_RAW = 41


def _timed_pair(world: MPI.Intracomm, raw: Callable[[], None], ours: Callable[[], None],
                reps: int) -> tuple[float, float]:
    """Median seconds of raw and of ours on rank 0, interleaved, one warm-up each."""
    raw()
    ours()
    t_raw: list[float] = []
    t_ours: list[float] = []
    for _ in range(reps):
        for fn, out in ((raw, t_raw), (ours, t_ours)):
            world.Barrier()
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return float(np.median(t_raw)), float(np.median(t_ours))


def _check(server: MpiServerTransport | None, client: MpiClientTransport | None, plan: RoundPlan,
           trainers: list[Any], block: np.ndarray, update: np.ndarray, k: int) -> None:
    """One more exchange whose numbers are checked, with values the timed ones never used (a
    broadcast that delivered nothing would leave the old ones): a timing of a transport that moved
    the wrong bytes would be worthless. The server sends 7 x block, every client 3 x update."""
    if server is not None:
        wait_all(server.start_exchange(trainers, [7 * block]))
        got = server.sums(plan, trainers)[0]
        want = 3 * k * update
        if not (np.array_equal(got.weighted, want[:block.size]) and got.count == want[-3]):
            raise RuntimeError("exchange bench: the reduce did not return the sum of the clients' buffers")
    else:
        assert client is not None
        wait_all(client.start_blocks())
        if not np.array_equal(client.blocks()[0], 7 * block):
            raise RuntimeError("exchange bench: the broadcast did not deliver the server's block")
        wait_all(client.start_updates({0: 3 * update}))


def measure(nbytes: int, reps: int, comm: MPI.Intracomm | None = None) -> dict[str, float]:
    """Both ways at one block size (collective over `comm`, default COMM_WORLD); figures on rank 0."""
    world = comm if comm is not None else MPI.COMM_WORLD
    rank, k = world.Get_rank(), world.Get_size() - 1
    n = max(1, nbytes // 4)
    own = np.ones((k, 1), bool)
    me = Handshake("exchange-bench", "exchange-bench", "")
    plan = RoundPlan(1, np.ones((k, 1), np.uint8), np.ones((k, 1)), np.ones(k, np.int64), float("inf"),
                     np.zeros(1, np.uint8))
    block = np.ones(n, np.float32)
    update = np.ones(update_len(n, False), UPDATE_DTYPE)
    report = np.zeros((1, len(wire.REPORT_FIELDS)), np.float64)
    msg = wire.plan_message(plan, k, 1)
    ack = np.zeros(1, np.int64)
    recv = np.zeros_like(update)
    server = MpiServerTransport(own, (n,), world) if rank == 0 else None
    client = MpiClientTransport(own, (n,), world) if rank else None
    if server is not None:
        server.start(np.zeros(0, np.float32), me)
        trainers = server.reduces_for(plan, wire.body_bytes(msg))
    else:
        assert client is not None
        client.start(me)
        trainers = client.reduces_for(plan, wire.body_bytes(msg))

    def raw_exchange() -> None:
        world.Bcast(block, root=0)
        world.Reduce(MPI.IN_PLACE if rank == 0 else update, recv if rank == 0 else None, op=MPI.SUM, root=0)

    def our_exchange() -> None:
        if server is not None:
            wait_all(server.start_exchange(trainers, [block]))
            server.sums(plan, trainers)
        else:
            assert client is not None
            wait_all(client.start_blocks())
            client.blocks()
            wait_all(client.start_updates({0: update}))

    def raw_round() -> None:
        if rank == 0:
            for c in range(1, k + 1):
                world.Send(msg, c, TAG_RAW)
            for c in range(1, k + 1):
                world.Recv(ack, c, TAG_RAW)
            world.Bcast(block, root=0)
            world.Reduce(MPI.IN_PLACE, recv, op=MPI.SUM, root=0)
            for c in range(1, k + 1):
                world.Recv(report, c, TAG_RAW)
        else:
            world.Recv(msg, 0, TAG_RAW)
            world.Send(ack, 0, TAG_RAW)
            world.Bcast(block, root=0)
            world.Reduce(update, None, op=MPI.SUM, root=0)
            world.Send(report, 0, TAG_RAW)

    def our_round() -> None:
        if server is not None:
            server.run_round(plan, [block])
        else:
            assert client is not None
            p = client.next_plan()
            assert p is not None
            client.receive_blocks(p)
            client.send(p, {0: update}, report)

    t_raw_x, t_ours_x = _timed_pair(world, raw_exchange, our_exchange, reps)
    t_raw_r, t_ours_r = _timed_pair(world, raw_round, our_round, reps)
    _check(server, client, plan, trainers, block, update, k)
    if server is not None:
        server.stop()
    else:
        assert client is not None and client.next_plan() is None
    return {"bytes": nbytes, "reps": reps, "raw_exchange_s": t_raw_x, "ours_exchange_s": t_ours_x,
            "raw_round_s": t_raw_r, "ours_round_s": t_ours_r,
            "exchange_ratio": t_raw_x / t_ours_x, "round_ratio": t_raw_r / t_ours_r,
            "raw_exchange_mbps": 2 * nbytes / t_raw_x / 1e6, "ours_exchange_mbps": 2 * nbytes / t_ours_x / 1e6}
