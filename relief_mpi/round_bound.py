"""The watchdog's bound for a run's first round, from the profiles and the work (issue 22, case 6).

With `--clock real` the clients sleep as long as the emulated device would take, so a first round
can legitimately last far longer than the 120 s per client the virtual clock allows, and it used to
have no limit at all (a client stopped in round 1 hung the job). The published cost model gives the
emulated seconds the slowest client needs to train every group on its round's samples and send
them; the bound is FACTOR times that on top of the virtual clock's floor.
"""

from __future__ import annotations

import math

from relief_mpi.comm.placement import clients_of
from relief_mpi.comm.watchdog import FACTOR, FLOOR_S, ServerWatch
from relief_mpi.run_setup import RunSetup
from relief_mpi.strategy.system import CostModel, payload_bytes

__all__ = ["FACTOR", "FLOOR_S", "first_round_emulated_s", "first_round_limit", "server_watch"]


def first_round_emulated_s(setup: RunSetup) -> float:
    """Emulated seconds of the slowest client in a round where it trains every group: its compute
    (the larger of --local-epochs over its windows and --local-steps batches) and its transfers."""
    ctx = setup.strategy.ctx
    cost = CostModel(ctx.groups, ctx.fleet)
    every = list(range(len(ctx.groups)))
    s = ctx.config
    worst = 0.0
    for k in range(ctx.fleet.n_clients):
        samples = max(s.local_epochs * ctx.fleet.n_train[k], s.local_steps * s.batch_size)
        t = cost.compute_s(k, every, every, samples) + cost.comm_time(k, payload_bytes(ctx.groups, every))
        worst = max(worst, t)
    return worst


def first_round_limit(setup: RunSetup, per_rank: int) -> float:
    """The first round's bound in seconds: the virtual clock's floor (per client on the busiest
    rank), plus, with --clock real, FACTOR times the emulated time of the slowest client."""
    real = setup.config.device.clock == "real"
    return FLOOR_S * per_rank + (FACTOR * first_round_emulated_s(setup) if real else 0.0)


def server_watch(setup: RunSetup, timeout: float, hosts: list[str], rank: int) -> ServerWatch | None:
    """A client rank's watch on the server from rank 0's --round-timeout as broadcast (NaN: auto,
    inf: none): the same first-round bound rank 0 uses for its own watchdog."""
    if math.isinf(timeout):
        return None
    busiest = len(clients_of(1, setup.n_clients, max(1, len(hosts) - 1)))  # rank 1 hosts the most
    return ServerWatch(None if math.isnan(timeout) else timeout, first_round_limit(setup, busiest), hosts[0], rank)
