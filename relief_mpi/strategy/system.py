"""The analytic system model (design.md section 0, "Budget" and "System model"), under two cost models.

`published` (the authors'): group time t_nj = FLOPs_j x samples_n / speed_n, with FLOPs_j = 6 x
the group's forward MACs per sample and samples_n = E x the client's windows; tau_n = the mean of
t_nj over the client's accessible groups, and a round's compute is |S_n| x tau_n whatever groups
were chosen (training an A block needs the whole forward pass). Communication = 8 x (whole-model
download + upload bytes) / bandwidth + 0.05 s.

`flops` (ours, `--cost-model flops`): a round's compute is what our emulator charges for the
groups chosen, from the FLOPs measured with torch.utils.flop_counter (model.flops.FlopCosts): the
forward of every encoder the client runs (all of them when absent sensors are zero-filled), the
fusion and head forward and backward, and the backward of each encoder with a trained group;
the download is only the groups the client needs for its forward (the strategy's ownership).
tau_n is then that model's time to train all of G_n, divided by |G_n|: the same "mean time per
group" the published budget rule divides by, so the rule itself is unchanged.

Either way a round lasts max_n (compute_n + comm_n); energy = P compute + 0.5 P comm + 0.2 P idle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from relief_mpi.config import COST_MODELS
from relief_mpi.model.flops import FlopCosts
from relief_mpi.rounds import FleetInfo, GroupInfo

__all__ = [
    "AnalyticRound", "BYTES_PER_VALUE", "COMM_POWER_RATIO", "CostModel", "IDLE_POWER_RATIO", "SYNC_LATENCY_S",
    "analytic_round", "group_time", "payload_bytes"
]


SYNC_LATENCY_S = 0.05
COMM_POWER_RATIO = 0.5
IDLE_POWER_RATIO = 0.2
BYTES_PER_VALUE = 4


def payload_bytes(groups: GroupInfo, ids: Iterable[int]) -> int:
    """The analytic bytes of these groups, counted as the authors do (GroupInfo.counted: BatchNorm's
    num_batches_tracked included, which our wire does not carry)."""
    counted = groups.counted or groups.sizes
    return BYTES_PER_VALUE * sum(counted[j] for j in ids)


def group_time(groups: GroupInfo, fleet: FleetInfo, k: int, j: int, samples: float) -> float:
    speed = fleet.flops[k]
    return 0.0 if math.isinf(speed) else groups.flops[j] * samples / speed


@dataclass(frozen=True)
class CostModel:
    """What the analytic model charges a client for a round (see the module docstring)."""

    groups: GroupInfo
    fleet: FleetInfo
    kind: str = "published"
    costs: FlopCosts | None = None  # flops: the measured per-step FLOPs
    present: tuple[frozenset[int], ...] = ()  # flops: the encoders each client runs forward
    ownership: np.ndarray | None = None  # flops: bool [K, G], the groups each client downloads
    encoders_train: bool = True  # False in LoRA mode: frozen encoders never back-propagate

    def __post_init__(self) -> None:
        if self.kind not in COST_MODELS:
            raise ValueError(f"cost model must be one of {COST_MODELS}, got {self.kind!r}")
        if self.kind == "flops" and (self.costs is None or self.ownership is None or not self.present):
            raise ValueError("the flops cost model needs the measured costs, the encoders run and the ownership")

    def compute_s(self, k: int, chosen: Sequence[int], accessible: Sequence[int], samples: float) -> float:
        """Seconds client k computes to train `chosen` on `samples` samples."""
        if self.kind == "published":
            return len(chosen) * self.tau(k, accessible, samples)
        speed = self.fleet.flops[k]
        if not chosen or math.isinf(speed):
            return 0.0
        assert self.costs is not None
        g = self.groups
        back = {g.modality[j] for j in chosen if g.kinds[j] in ("enc", "block")} if self.encoders_train else set()
        present = self.present[k]
        return self.costs.step(present, (m for m in back if m in present), samples) / speed

    def tau(self, k: int, accessible: Sequence[int], samples: float) -> float:
        """Mean time per accessible group: the unit of the published budget rule."""
        n = max(len(accessible), 1)
        if self.kind == "published":
            return sum(group_time(self.groups, self.fleet, k, j, samples) for j in accessible) / n
        return self.compute_s(k, accessible, accessible, samples) / n

    def down_bytes(self, k: int) -> int:
        if self.kind == "published":
            return payload_bytes(self.groups, range(len(self.groups)))
        assert self.ownership is not None
        return payload_bytes(self.groups, np.flatnonzero(self.ownership[k]).tolist())

    def comm_time(self, k: int, up_bytes: int) -> float:
        f = self.fleet
        return (8.0 * self.down_bytes(k) / (f.downlink_mbps[k] * 1e6) + 8.0 * up_bytes / (f.uplink_mbps[k] * 1e6)
                + SYNC_LATENCY_S)

    def overhead(self, accessible: Sequence[Sequence[int]]) -> float:
        """T_o: the slowest client's communication with every accessible group uploaded."""
        return max(self.comm_time(k, payload_bytes(self.groups, g)) for k, g in enumerate(accessible))


@dataclass(frozen=True)
class AnalyticRound:
    time_s: float
    energy_j: float
    up_bytes: float
    down_bytes: float
    compute_s: np.ndarray  # [K]
    comm_s: np.ndarray  # [K]
    client_energy_j: np.ndarray  # [K]
    trained_fraction: float  # the authors' % trained / 100: mean over clients of the values trained (buffers
    # included) over the model's parameters, so FedAvg's is above 1 on a model with BatchNorm
    trained_param_fraction: float = math.nan  # ours: mean over clients of the share of group parameters trained


def analytic_round(groups: GroupInfo, fleet: FleetInfo, alloc: np.ndarray, accessible: Sequence[Sequence[int]],
                   samples: Sequence[float] | np.ndarray, model: CostModel | None = None) -> AnalyticRound:
    """One round's analytic figures under `model` (default: the published cost model)."""
    cost = model if model is not None else CostModel(groups, fleet)
    k_n = fleet.n_clients
    compute = np.zeros(k_n)
    comm = np.zeros(k_n)
    up = np.zeros(k_n)
    down = np.zeros(k_n)
    trained = np.zeros(k_n)
    trained_params = np.zeros(k_n)
    total = sum(groups.n_params)
    counted = groups.counted or groups.sizes
    model_params = groups.n_model_params or total
    for k in range(k_n):
        chosen = [int(j) for j in np.flatnonzero(alloc[k])]
        compute[k] = cost.compute_s(k, chosen, accessible[k], samples[k])
        up[k] = payload_bytes(groups, chosen)
        down[k] = cost.down_bytes(k)
        comm[k] = cost.comm_time(k, int(up[k]))
        trained[k] = sum(counted[j] for j in chosen) / max(model_params, 1)
        trained_params[k] = sum(groups.n_params[j] for j in chosen) / max(total, 1)
    t_round = float((compute + comm).max()) if k_n else 0.0
    p = np.array(fleet.p_busy_w if fleet.p_busy_w else [0.0] * k_n)
    idle = np.maximum(t_round - compute - comm, 0.0)
    energy = p * compute + COMM_POWER_RATIO * p * comm + IDLE_POWER_RATIO * p * idle
    return AnalyticRound(t_round, float(energy.sum()), float(up.sum()), float(down.sum()), compute, comm, energy,
                         float(trained.mean()) if k_n else 0.0, float(trained_params.mean()) if k_n else 0.0)
