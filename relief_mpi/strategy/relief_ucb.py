"""Our first RELIEF design (from the paper's abstract alone), kept under its own names.

- relief-ucb: a client receives only the groups of its modalities, trains the groups the
  allocator gave it (budget = round deadline, filled by UCB score on cohort divergence per unit
  of measured cost), sends only those; each group is averaged over its uploaders by samples.
- relief-ucb-cohort: cohort aggregation only, no budgets (every client trains every group it owns).
- relief-ucb-random: the same budgets, groups drawn in random order instead of by score.
"""

from __future__ import annotations

import ast
import math

import numpy as np

from relief_mpi.rounds import RoundPlan
from relief_mpi.strategy.allocator import ClientCost, UcbScores, allocate, resolve_deadline
from relief_mpi.strategy.base import SampleWeighted, StrategyContext

__all__ = ["ReliefUcb", "ReliefUcbCohort", "ReliefUcbRandom"]


class ReliefUcbCohort(SampleWeighted):
    """Ablation: cohort-wise aggregation only (absent encoders skipped), full budgets."""

    name = "relief-ucb-cohort"


class ReliefUcb(SampleWeighted):
    name = "relief-ucb"

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        own = self.ownership()
        g = ctx.groups
        self.shared = frozenset(j for j, m in enumerate(g.modality) if m is None)
        self.owned = [[int(b) for b in np.flatnonzero(own[k])] for k in range(ctx.fleet.n_clients)]
        self.cost = ClientCost(ctx.fleet, g, ctx.costs, ctx.mode == "lora", own)
        steps = ctx.config.local_steps
        self.full_times = [self.cost.seconds(k, frozenset(self.owned[k]), steps) for k in range(ctx.fleet.n_clients)]
        self.deadline = resolve_deadline(ctx.config.deadline, self.full_times)
        self.ucb = UcbScores(len(g), ctx.config.beta, np.array([m is not None for m in g.modality]))
        self.rng = np.random.default_rng(np.random.SeedSequence([ctx.seed, 0xA110C]))

    def priority(self, k: int, candidates: list[int]) -> list[int]:
        """Best first: UCB score per second of marginal cost (never-trained groups first)."""
        scores = self.ucb.scores()
        steps = self.ctx.config.local_steps
        base = self.cost.seconds(k, self.shared, steps)

        def key(b: int) -> tuple[float, int]:
            extra = self.cost.seconds(k, self.shared | {b}, steps) - base
            s = scores[b]
            return (-(s / max(extra, 1e-12)) if math.isfinite(s) else -math.inf, b)

        return sorted(candidates, key=key)

    def configure_round(self, rnd: int) -> RoundPlan:
        self.ucb.tick()
        alloc, steps = allocate(self.cost, self.owned, self.shared, self.deadline, self.ctx.config.local_steps,
                                self.priority)
        return RoundPlan(rnd, alloc, alloc.astype(np.float64), steps, self.deadline,
                         np.zeros(len(self.ctx.groups), np.uint8))

    def observe(self, rnd: int, plan: RoundPlan, divergence: np.ndarray) -> None:
        for b, d in enumerate(divergence):
            if math.isfinite(d):
                self.ucb.observe(b, float(d))

    def state(self) -> dict[str, np.ndarray]:
        st = {f"ucb_{k}": v for k, v in self.ucb.state().items()}
        st["rng"] = np.frombuffer(repr(self.rng.bit_generator.state).encode(), np.uint8).copy()
        return st

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.ucb.load_state({k[4:]: v for k, v in state.items() if k.startswith("ucb_")})
        if "rng" in state:
            self.rng.bit_generator.state = ast.literal_eval(bytes(np.asarray(state["rng"], np.uint8)).decode())


class ReliefUcbRandom(ReliefUcb):
    """Ablation: the same budgets, groups drawn in random order (no divergence guidance)."""

    name = "relief-ucb-random"

    def priority(self, k: int, candidates: list[int]) -> list[int]:
        return [candidates[i] for i in self.rng.permutation(len(candidates))]
