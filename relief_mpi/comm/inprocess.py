"""In-process transport: every client in this one process, same buffers as the MPI transport.

Used by the tests and by `relief-mpi train --transport inprocess`. The clients are grouped as
the MPI transport places them on `n_ranks` client ranks (comm.placement; default one client per
rank): each group adds up its clients' update buffers, then the groups' sums are added in rank
order. Sums are float32 terms accumulated in float64 (rounds.UPDATE_DTYPE), exact, so runs give
the MPI transport's numbers although MPI's Reduce adds in another order. Under --rng authors
(in-process only) each group also carries the authors' float32 client-after-client sum
(GroupSums.authors), which the strategy applies in place of ours.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from relief_mpi.comm import wire
from relief_mpi.comm.placement import check_fits
from relief_mpi.comm.transport import Handshake, HostedClients, RoundExchange, ServerTransport
from relief_mpi.rounds import GroupSums, RoundPlan, add_updates

__all__ = ["InProcessServerTransport"]


class InProcessServerTransport(ServerTransport):
    def __init__(self, ranks: list[HostedClients], n_clients: int, ownership: np.ndarray,
                 sizes: tuple[int, ...]) -> None:
        """`ranks[r - 1]`: the clients client rank r would host (comm.placement.clients_of)."""
        self.n_ranks = len(ranks)
        check_fits(n_clients, self.n_ranks)
        self.ranks = ranks
        self.n_clients = n_clients
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
        authors: dict[int, np.ndarray] = {}
        for r, rank in enumerate(self.ranks):
            local, reports[r::self.n_ranks] = rank.train(plan, everything)
            add_updates(acc, local)
        for rank in self.ranks:  # --rng authors: their float32 sums besides ours (after every rank trained)
            authors.update(rank.authors_sums())
        sums = {b: replace(GroupSums.unpack(v, self.sizes[b], bool(plan.plain[b])), authors=authors.get(b))
                for b, v in sorted(acc.items())}
        return RoundExchange(sums, reports)

    def stop(self) -> None:
        pass
