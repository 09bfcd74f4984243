"""The strategy interface: what a client does (hooks), who trains what (configure_round), how the
reduced sums become new groups (aggregate). A strategy never imports MPI and never mutates the
groups it is given; it returns new ones.

Aggregation sees only per-group sums that the transport reduced (rounds.GroupSums), never one
client's delta.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from relief_mpi.config import StrategyConfig
from relief_mpi.model.flops import FlopCosts
from relief_mpi.rounds import ClientRecipe, FleetInfo, GroupInfo, GroupSums, PlanNotes, RoundPlan
from relief_mpi.strategy.system import AnalyticRound, CostModel, analytic_round

__all__ = [
    "Aggregated", "PAPER_KINDS", "SampleWeighted", "Strategy", "StrategyContext", "weighted_divergence",
    "weighted_mean_update"
]


PAPER_KINDS = frozenset({"A", "B", "enc", "head"})


@dataclass(frozen=True)
class StrategyContext:
    config: StrategyConfig
    groups: GroupInfo
    fleet: FleetInfo
    costs: FlopCosts
    n_modalities: int
    seed: int
    mode: str = "cnn"
    batch_size: int = 32


@dataclass(frozen=True)
class Aggregated:
    groups: list[np.ndarray]  # the new global value of every group
    divergence: np.ndarray  # float64 [G]; NaN where nothing was measured


class Strategy(ABC):
    """Hooks with the defaults of our own variants: SGD for --local-steps, absent sensors not encoded,
    sample-weighted uploads."""

    name: ClassVar[str] = "base"
    zero_fill: ClassVar[bool] = False  # absent sensors: zero inputs through their encoders

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx
        g = ctx.groups
        own = np.zeros((ctx.fleet.n_clients, len(g)), bool)
        for k, mods in enumerate(ctx.fleet.modality_sets):
            for j, m in enumerate(g.modality):
                own[k, j] = self.zero_fill or m is None or m in mods
        self._ownership = own
        n_mod = frozenset(range(ctx.n_modalities))
        self.cost_model = CostModel(ctx.groups, ctx.fleet, ctx.config.cost_model, ctx.costs,
                                    tuple(n_mod if self.zero_fill else mods for mods in ctx.fleet.modality_sets),
                                    own, encoders_train=ctx.mode != "lora")

    # -- what a client does --------------------------------------------------------------------
    def recipe(self, k: int) -> ClientRecipe:
        del k
        c = self.ctx.config
        return ClientRecipe(zero_fill=self.zero_fill, optimizer="sgd", lr=c.lr, momentum=c.momentum)

    def ownership(self) -> np.ndarray:
        """bool [K, G]: groups a client receives every round (it needs them for its forward)."""
        return self._ownership

    def accessible(self, k: int) -> tuple[int, ...]:
        """Groups client k may train (the published cost model averages its group times over them)."""
        return tuple(int(j) for j in np.flatnonzero(self._ownership[k]))

    # -- the round -----------------------------------------------------------------------------
    @abstractmethod
    def configure_round(self, rnd: int) -> RoundPlan:
        """The plan of round `rnd` (1-based)."""

    def notes(self, plan: RoundPlan) -> PlanNotes:
        """Facts about the last plan for the log: T*, budgets, samples per client."""
        return PlanNotes(budget=plan.alloc.sum(axis=1).astype(np.int64),
                         accessible=tuple(self.accessible(k) for k in range(self.ctx.fleet.n_clients)),
                         samples=plan.steps * self.ctx.batch_size)

    def analytic(self, plan: RoundPlan, notes: PlanNotes) -> AnalyticRound:
        """The plan's analytic round time, energy and bytes under this run's --cost-model."""
        samples = notes.samples if notes.samples is not None else plan.steps * self.ctx.batch_size
        accessible = notes.accessible or tuple(self.accessible(k) for k in range(self.ctx.fleet.n_clients))
        return analytic_round(self.ctx.groups, self.ctx.fleet, plan.alloc, accessible, samples, self.cost_model)

    @abstractmethod
    def aggregate(self, rnd: int, plan: RoundPlan, groups: list[np.ndarray], sums: dict[int, GroupSums],
                  samples: np.ndarray) -> Aggregated:
        """New groups from the old ones, the reduced sums and each client's samples processed."""

    def state(self) -> dict[str, np.ndarray]:
        """Statistics a checkpoint must keep (arrays only)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        del state


def weighted_divergence(s: GroupSums, n_params: int) -> float:
    """(sum w|d|^2 / sum w - |sum w d / sum w|^2) / n_params: the weighted variance of the uploaders'
    deltas per parameter, from the sums alone. Needs sum w > 0."""
    mean = s.weighted[:n_params].astype(np.float64) / s.weight
    return max(0.0, (s.weighted_sq / s.weight - float(mean @ mean)) / max(1, n_params))


def weighted_mean_update(group: np.ndarray, s: GroupSums) -> np.ndarray:
    """group + sum w d / sum w (a group nobody uploaded is returned as it is)."""
    if s.weight <= 0:
        return group
    return (group.astype(np.float64) + s.weighted.astype(np.float64) / s.weight).astype(np.float32)


class SampleWeighted(Strategy):
    """Our variants' base: every client trains every group it owns for --local-steps; each group is
    averaged over its uploaders weighted by samples processed (cohort-wise by construction)."""

    def configure_round(self, rnd: int) -> RoundPlan:
        k = self.ctx.fleet.n_clients
        own = self._ownership.astype(np.uint8)
        return RoundPlan(rnd, own, own.astype(np.float64), np.full(k, self.ctx.config.local_steps, np.int64),
                         math.inf, np.zeros(len(self.ctx.groups), np.uint8))

    def aggregate(self, rnd: int, plan: RoundPlan, groups: list[np.ndarray], sums: dict[int, GroupSums],
                  samples: np.ndarray) -> Aggregated:
        new = list(groups)
        div = np.full(len(groups), np.nan)
        for g, s in sums.items():
            if s.weight > 0:
                new[g] = weighted_mean_update(groups[g], s)
                div[g] = weighted_divergence(s, self.ctx.groups.n_params[g])
        self.observe(rnd, plan, div)
        return Aggregated(new, div)

    def observe(self, rnd: int, plan: RoundPlan, divergence: np.ndarray) -> None:
        """Called after aggregation; stateful variants update their statistics here."""
