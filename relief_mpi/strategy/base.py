"""The strategy interface: configure a round (who trains which block, how long), aggregate it.

Aggregation works on per-block sums that the transport reduces, never on one client's delta:
for block b, S_wd = sum n_k delta_k, S_w = sum n_k, S_wsq = sum n_k ||delta_k||^2.
"""

from __future__ import annotations

import math
from abc import ABC
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from relief_mpi.config import StrategyConfig
from relief_mpi.model.flops import FlopCosts


@dataclass(frozen=True)
class FleetInfo:
    """What a strategy knows of the clients (index k = client k = rank k+1)."""

    modality_sets: tuple[frozenset[int], ...]  # modality indices each client has
    tiers: tuple[str, ...]
    flops: tuple[float, ...]  # profile speed, FLOP/s (inf = native)
    uplink_mbps: tuple[float, ...]
    downlink_mbps: tuple[float, ...]
    latency_ms: tuple[float, ...]
    n_train: tuple[int, ...]

    @property
    def n_clients(self) -> int:
        return len(self.modality_sets)


@dataclass(frozen=True)
class BlockInfo:
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    modality: tuple[int | None, ...]  # None = shared


@dataclass(frozen=True)
class StrategyContext:
    config: StrategyConfig
    blocks: BlockInfo
    fleet: FleetInfo
    costs: FlopCosts
    n_modalities: int
    seed: int
    mode: str = "cnn"


@dataclass(frozen=True)
class RoundPlan:
    round: int
    alloc: np.ndarray  # uint8 [K, B]: 1 = client k trains and uploads block b this round
    steps: np.ndarray  # int64 [K]: local steps
    deadline_s: float  # emulated seconds from round start; inf = none


@dataclass(frozen=True)
class BlockSums:
    weighted_delta: np.ndarray  # sum_k n_k delta_k
    weight: float  # sum_k n_k
    weighted_sq_norm: float  # sum_k n_k ||delta_k||^2


def divergence(s: BlockSums) -> float:
    """(S_wsq / S_w - ||S_wd / S_w||^2) / size: the weighted variance of the trainers' deltas per
    parameter, from the sums alone (the server never sees one client's delta). Needs S_w > 0."""
    mean = s.weighted_delta.astype(np.float64) / s.weight
    return max(0.0, (s.weighted_sq_norm / s.weight - float(mean @ mean)) / max(1, mean.size))


def cohort_update(global_block: np.ndarray, s: BlockSums) -> tuple[np.ndarray, float]:
    """Apply the weighted mean delta; return the new block and its normalised divergence.
    A block nobody trained (S_w = 0) is returned unchanged, with NaN divergence."""
    if s.weight <= 0:
        return global_block, math.nan
    mean = s.weighted_delta.astype(np.float64) / s.weight
    return (global_block.astype(np.float64) + mean).astype(np.float32), divergence(s)


class Strategy(ABC):
    """Base: every client trains every block it owns, full budget, cohort-wise averaging."""

    name: ClassVar[str] = "base"
    zero_fill_absent: ClassVar[bool] = False  # True: run the whole model on zero-filled inputs

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx
        k, b = ctx.fleet.n_clients, len(ctx.blocks.names)
        own = np.zeros((k, b), bool)
        for i, mods in enumerate(ctx.fleet.modality_sets):
            for j, m in enumerate(ctx.blocks.modality):
                own[i, j] = self.zero_fill_absent or m is None or m in mods
        self._ownership = own

    # -- hooks ---------------------------------------------------------------------------------
    @property
    def prox_mu(self) -> float:
        return 0.0

    def client_width(self, k: int) -> float:
        """Sub-model width of client k (HeteroFL); 1.0 = the whole model."""
        del k
        return 1.0

    def ownership(self) -> np.ndarray:
        """bool [K, B]: blocks a client receives every round (it needs them for its forward)."""
        return self._ownership

    def configure_round(self, rnd: int) -> RoundPlan:
        k = self.ctx.fleet.n_clients
        return RoundPlan(rnd, self._ownership.astype(np.uint8),
                         np.full(k, self.ctx.config.local_steps, np.int64), math.inf)

    def aggregate(self, rnd: int, plan: RoundPlan, blocks: list[np.ndarray], sums: dict[int, BlockSums],
                  n_samples: np.ndarray) -> np.ndarray:
        """Update `blocks` in place; return the divergence per block (NaN where untrained)."""
        div = np.full(len(blocks), np.nan)
        for b, s in sums.items():
            blocks[b], div[b] = cohort_update(blocks[b], s)
        self.observe(rnd, plan, div)
        return div

    def observe(self, rnd: int, plan: RoundPlan, divergence: np.ndarray) -> None:
        """Called after aggregation; stateful strategies update their statistics here."""

    def state(self) -> dict[str, np.ndarray]:
        """Statistics a checkpoint must keep (arrays only)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        del state
