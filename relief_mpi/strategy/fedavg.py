"""Our FedAvg and FedProx: the whole model on every client, missing sensors zero-filled, SGD for
--local-steps, sample-weighted averaging (the published FedAvg preset is in relief.py)."""

from __future__ import annotations

from dataclasses import replace

from relief_mpi.rounds import ClientRecipe
from relief_mpi.strategy.base import SampleWeighted

__all__ = ["FedAvgSgd", "FedProx"]


class FedAvgSgd(SampleWeighted):
    """McMahan et al. 2017: every client trains every group; weights = samples processed.

    A missing modality is zero-filled and its encoder still runs forward and backward: the
    compute and bytes RELIEF saves."""

    name = "fedavg-sgd"
    zero_fill = True


class FedProx(FedAvgSgd):
    """Li et al. 2020: FedAvg plus (mu/2)||w - w_global||^2 in the local objective."""

    name = "fedprox"

    def recipe(self, k: int) -> ClientRecipe:
        return replace(super().recipe(k), prox_mu=self.ctx.config.mu)
