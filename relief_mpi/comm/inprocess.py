"""In-process transport: every client in this one process, same buffers as the MPI transport.

Used by the tests and by `relief-mpi train --transport inprocess`. Sums are accumulated in
float64 in client order (rounds.UPDATE_DTYPE), so runs give the MPI transport's numbers although
MPI's Reduce adds in another order.
"""

from __future__ import annotations

import numpy as np

from relief_mpi.client import LocalTrainer
from relief_mpi.comm import wire
from relief_mpi.comm.transport import Handshake, RoundExchange, ServerTransport
from relief_mpi.rounds import GroupSums, RoundPlan, zero_update


class InProcessServerTransport(ServerTransport):
    def __init__(self, trainers: list[LocalTrainer], ownership: np.ndarray, sizes: tuple[int, ...]) -> None:
        self.trainers = trainers
        self.ownership = ownership
        self.sizes = sizes

    def start(self, base: np.ndarray, me: Handshake) -> list[Handshake]:
        for t in self.trainers:
            t.set_base(base.copy())
        return [me] * (len(self.trainers) + 1)

    def run_round(self, plan: RoundPlan, blocks: list[np.ndarray]) -> RoundExchange:
        acc: dict[int, np.ndarray] = {}
        reports = np.zeros((len(self.trainers), len(wire.REPORT_FIELDS)), np.float64)
        for k, t in enumerate(self.trainers):
            received = {b: blocks[b].copy() for b in range(len(blocks)) if self.ownership[k, b]}
            updates, report = t.train(plan, received)
            for b, buf in updates.items():
                if b not in acc:
                    acc[b] = zero_update(self.sizes[b], bool(plan.plain[b]))
                acc[b] += buf
            reports[k] = report
        sums = {b: GroupSums.unpack(v, self.sizes[b], bool(plan.plain[b])) for b, v in sorted(acc.items())}
        return RoundExchange(sums, reports)

    def stop(self) -> None:
        pass
