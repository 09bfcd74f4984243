"""The published analytic system model (design.md section 0, "Budget" and "System model").

Group time t_nj = FLOPs_j x samples_n / speed_n, with FLOPs_j = 6 x the group's forward MACs per
sample and samples_n = E x the client's windows; tau_n = the mean of t_nj over the client's
accessible groups. Communication = 8 x (whole-model download + upload bytes) / bandwidth + 0.05 s.
A round lasts max_n (|S_n| tau_n + comm_n); energy = P compute + 0.5 P comm + 0.2 P idle.
It charges |S_n| x the mean group time whatever groups were chosen (training an A block needs the
whole forward pass), which is why we log it next to our FLOP-measured emulated time, not instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from relief_mpi.rounds import FleetInfo, GroupInfo

SYNC_LATENCY_S = 0.05
COMM_POWER_RATIO = 0.5
IDLE_POWER_RATIO = 0.2
BYTES_PER_VALUE = 4


def payload_bytes(groups: GroupInfo, ids: Sequence[int]) -> int:
    return BYTES_PER_VALUE * sum(groups.sizes[j] for j in ids)


def group_time(groups: GroupInfo, fleet: FleetInfo, k: int, j: int, samples: float) -> float:
    speed = fleet.flops[k]
    return 0.0 if math.isinf(speed) else groups.flops[j] * samples / speed


def tau(groups: GroupInfo, fleet: FleetInfo, k: int, accessible: Sequence[int], samples: float) -> float:
    return sum(group_time(groups, fleet, k, j, samples) for j in accessible) / max(len(accessible), 1)


def comm_time(groups: GroupInfo, fleet: FleetInfo, k: int, up_bytes: int) -> float:
    down = payload_bytes(groups, range(len(groups)))
    return 8.0 * down / (fleet.downlink_mbps[k] * 1e6) + 8.0 * up_bytes / (fleet.uplink_mbps[k] * 1e6) + SYNC_LATENCY_S


def overhead(groups: GroupInfo, fleet: FleetInfo, accessible: Sequence[Sequence[int]]) -> float:
    """T_o: the slowest client's communication with every accessible group uploaded."""
    return max(comm_time(groups, fleet, k, payload_bytes(groups, g)) for k, g in enumerate(accessible))


@dataclass(frozen=True)
class AnalyticRound:
    time_s: float
    energy_j: float
    up_bytes: float
    down_bytes: float
    compute_s: np.ndarray  # [K]
    comm_s: np.ndarray  # [K]
    client_energy_j: np.ndarray  # [K]
    trained_fraction: float  # mean over clients of the share of parameters trained


def analytic_round(groups: GroupInfo, fleet: FleetInfo, alloc: np.ndarray, accessible: Sequence[Sequence[int]],
                   samples: Sequence[float]) -> AnalyticRound:
    k_n = fleet.n_clients
    compute = np.zeros(k_n)
    comm = np.zeros(k_n)
    up = np.zeros(k_n)
    trained = np.zeros(k_n)
    total = sum(groups.n_params)
    for k in range(k_n):
        chosen = [int(j) for j in np.flatnonzero(alloc[k])]
        compute[k] = len(chosen) * tau(groups, fleet, k, accessible[k], samples[k])
        up[k] = payload_bytes(groups, chosen)
        comm[k] = comm_time(groups, fleet, k, int(up[k]))
        trained[k] = sum(groups.n_params[j] for j in chosen) / max(total, 1)
    t_round = float((compute + comm).max()) if k_n else 0.0
    p = np.array(fleet.p_busy_w if fleet.p_busy_w else [0.0] * k_n)
    idle = np.maximum(t_round - compute - comm, 0.0)
    energy = p * compute + COMM_POWER_RATIO * p * comm + IDLE_POWER_RATIO * p * idle
    down = float(payload_bytes(groups, range(len(groups))) * k_n)
    return AnalyticRound(t_round, float(energy.sum()), float(up.sum()), down, compute, comm, energy,
                         float(trained.mean()) if k_n else 0.0)
