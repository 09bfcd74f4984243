"""Run under mpiexec -n 4 by test_many_clients: 5 clients on 3 client ranks, 4 groups, five rounds
of hand-made update buffers through the real MPI transport (argv[1] "fallback": with per-round
nonblocking collectives instead of persistent ones). Round 2 repeats round 1's plan with new values
(the persistent collectives and the plan a client reuses must carry the new numbers); round 3 changes
who uploads (new trainer communicators and reduces); round 4 is round 1's plan with group 0's plain
sum carried (a longer buffer on the same communicator: its reduce is replaced), round 5 round 1's
plan again. Rank 0 prints what it received; every rank
prints the members of the cohort communicators it belongs to."""

from __future__ import annotations

import sys

import numpy as np
from mpi4py import MPI

from relief_mpi.comm.mpi import MpiClientTransport, MpiServerTransport
from relief_mpi.comm.transport import Handshake
from relief_mpi.rounds import REPORT_FIELDS, RoundPlan, pack_update
from relief_mpi.rounds import REPORT_INDEX as R

SIZES = (2, 3, 4, 2)
OUT: list[str] = []  # written in one call at the end: lines of different ranks never interleave
# clients 0..4; groups: 0 and 3 everyone's, 1 only client 3's, 2 clients 1 and 2's
OWN = np.array([[1, 0, 0, 1], [1, 0, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 0, 0, 1]], bool)
COEF = OWN.astype(np.float64)
COEF[4, 0] = 0.0  # client 4 trains group 0 but does not upload it
COEF3 = COEF.copy()
COEF3[0, 3] = COEF3[3, 1] = COEF3[2, 2] = 0.0  # round 3: group 1 has no uploader, group 2 only client 1


def plans() -> list[RoundPlan]:
    alloc, steps, plain = OWN.astype(np.uint8), np.ones(5, np.int64), np.zeros(4, np.uint8)
    plain4 = plain.copy()
    plain4[0] = 1
    rounds = ((1, COEF, plain), (2, COEF, plain), (3, COEF3, plain), (4, COEF, plain4), (5, COEF, plain))
    return [RoundPlan(r, alloc, coef, steps, float("inf"), p) for r, coef, p in rounds]


def main(persistent: bool) -> None:
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    me = Handshake("probe", "probe", "host")
    if rank == 0:
        server = MpiServerTransport(OWN, SIZES, world, persistent=persistent)
        server.start(np.zeros(0, np.float32), me)
        for plan in plans():
            ex = server.run_round(plan, [np.full(s, 0.5 * plan.round, np.float32) for s in SIZES])
            for b, s in sorted(ex.sums.items()):
                OUT.append(f"round {plan.round} sum {b}: weighted {s.weighted.tolist()} count {s.count:g}")
                if s.plain is not None:
                    OUT.append(f"round {plan.round} sum {b}: plain {s.plain.tolist()}")
            OUT.append(f"round {plan.round} samples " + " ".join(f"{v:g}" for v in ex.reports[:, R['samples']]))
        members(server)
        server.stop()
        return
    client = MpiClientTransport(OWN, SIZES, world, persistent=persistent)
    client.start(me)
    while (got := client.next_plan()) is not None:
        blocks = client.receive_blocks(got)
        sums: dict[int, np.ndarray] = {}
        reports = np.zeros((len(client.local), len(REPORT_FIELDS)))
        for i, k in enumerate(client.local):
            reports[i, R["samples"]] = k * got.round
            for b in np.flatnonzero(got.uploads[k]):
                assert np.all(blocks[b] == 0.5 * got.round), (got.round, b, blocks[b])
                buf = pack_update(np.full(SIZES[b], (k + 1) * got.round, np.float32), SIZES[b], 1.0,
                                  bool(got.plain[b]))
                sums[b] = sums[b] + buf if b in sums else buf
        client.send(got, sums, reports)
        OUT.append(f"rank {rank} round {got.round} hosts {client.local} received {sorted(blocks)}")
        if got.round == 1:
            members(client)


def members(tr: MpiServerTransport | MpiClientTransport) -> None:
    world_group = tr.world.Get_group()
    for key, groups in tr.cohorts:
        if tr.rank in key:
            comm = tr.cache.get(key)
            ranks = MPI.Group.Translate_ranks(comm.Get_group(), list(range(comm.Get_size())), world_group)
            OUT.append(f"rank {tr.rank} cohort {list(groups)} members {sorted(ranks)}")


if __name__ == "__main__":
    main(persistent=sys.argv[1:] != ["fallback"])
    sys.stdout.write("".join(line + "\n" for line in OUT))
    sys.stdout.flush()
