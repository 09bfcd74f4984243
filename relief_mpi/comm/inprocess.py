"""In-process transport: every client in this one process, same buffers as the MPI transport.

Used by the tests and by `relief-mpi train --transport inprocess`. The clients are grouped as
the MPI transport places them on `n_ranks` client ranks (comm.placement; default one client per
rank): each group adds up its clients' update buffers, then the groups' sums are added in rank
order. Sums are float32 terms accumulated in float64 (rounds.UPDATE_DTYPE), exact, so runs give
the MPI transport's numbers although MPI's Reduce adds in another order.
"""

from __future__ import annotations

import numpy as np

from relief_mpi.client import LocalClients, LocalTrainer
from relief_mpi.comm import wire
from relief_mpi.comm.placement import check_fits, clients_of
from relief_mpi.comm.transport import Handshake, RoundExchange, ServerTransport
from relief_mpi.rounds import GroupSums, RoundPlan, add_updates


class InProcessServerTransport(ServerTransport):
    def __init__(self, trainers: list[LocalTrainer], ownership: np.ndarray, sizes: tuple[int, ...],
                 n_ranks: int | None = None) -> None:
        k = len(trainers)
        self.n_ranks = n_ranks or k
        check_fits(k, self.n_ranks)
        self.ranks = [LocalClients([trainers[c] for c in clients_of(r, k, self.n_ranks)])
                      for r in range(1, self.n_ranks + 1)]
        self.n_clients = k
        self.ownership = ownership
        self.sizes = sizes

    def start(self, base: np.ndarray, me: Handshake) -> list[Handshake]:
        for rank in self.ranks:
            rank.set_base(base.copy())
        return [me] * (self.n_ranks + 1)

    def run_round(self, plan: RoundPlan, blocks: list[np.ndarray]) -> RoundExchange:
        acc: dict[int, np.ndarray] = {}
        reports = np.zeros((self.n_clients, len(wire.REPORT_FIELDS)), np.float64)
        everything = dict(enumerate(blocks))
        for r, rank in enumerate(self.ranks):
            local, reports[r::self.n_ranks] = rank.train(plan, everything)
            add_updates(acc, local)
        sums = {b: GroupSums.unpack(v, self.sizes[b], bool(plan.plain[b])) for b, v in sorted(acc.items())}
        return RoundExchange(sums, reports)

    def stop(self) -> None:
        pass
