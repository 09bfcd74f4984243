"""HeteroFL (Diao et al. 2021): static width-scaled sub-models per tier.

A client of width p trains the sub-model made of the first p fraction of every hidden layer's
units (conv channels, encoder features, fusion units); the rest of the model is outside its
sub-model and gets no update. Each parameter entry is averaged over the clients whose
sub-model contains it, weighted by samples. Missing sensors are zero-filled, as in FedAvg.
The server knows every client's width (static, per tier) and sample count (its report), so the
per-entry denominators need no extra bytes on the wire.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from relief_mpi.errors import ReliefError
from relief_mpi.rounds import ClientRecipe, GroupSums, RoundPlan
from relief_mpi.strategy.base import Aggregated, SampleWeighted, StrategyContext, weighted_divergence

__all__ = ["HeteroFL"]


class HeteroFL(SampleWeighted):
    name = "heterofl"
    zero_fill = True

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        if set(ctx.groups.kinds) - {"block", "shared"}:
            raise ReliefError("--strategy heterofl scales layer widths of the small model; use --model small")
        widths = ctx.config.heterofl_widths
        # Tiers ranked by device speed (fastest first, a native profile counts as fastest), so the
        # widest sub-model goes to the strongest tier whatever order the fleet file lists them in.
        speed: dict[str, float] = {}
        for t, f in zip(ctx.fleet.tiers, ctx.fleet.flops, strict=True):
            speed[t] = max(speed.get(t, 0.0), f)
        order = sorted(speed, key=lambda t: -speed[t])
        self.widths = [float(widths[min(order.index(t), len(widths) - 1)]) for t in ctx.fleet.tiers]
        self.entry_masks: dict[float, list[np.ndarray]] = {}  # width -> per-block 0/1 vectors

    def recipe(self, k: int) -> ClientRecipe:
        return replace(super().recipe(k), width=self.widths[k])

    def set_entry_masks(self, masks: dict[float, list[np.ndarray]]) -> None:
        """Per width, per block: 1 where the entry belongs to that width's sub-model."""
        self.entry_masks = masks

    def aggregate(self, rnd: int, plan: RoundPlan, groups: list[np.ndarray], sums: dict[int, GroupSums],
                  samples: np.ndarray) -> Aggregated:
        """Per entry: sum of n_k delta_k over the uploaders whose sub-model holds it / their samples."""
        new = list(groups)
        div = np.full(len(groups), np.nan)
        for b, s in sums.items():
            if s.weight <= 0:
                continue
            denom = np.zeros(groups[b].size)
            for k in np.flatnonzero(plan.uploads[:, b]):
                denom += samples[k] * self.entry_masks[self.widths[k]][b]
            upd = np.divide(s.weighted.astype(np.float64), denom, out=np.zeros(denom.size), where=denom > 0)
            new[b] = (groups[b].astype(np.float64) + upd).astype(np.float32)
            div[b] = weighted_divergence(s, self.ctx.groups.n_params[b])
        return Aggregated(new, div)
