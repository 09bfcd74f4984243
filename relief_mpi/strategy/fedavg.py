"""FedAvg and FedProx: the whole model on every client, missing sensors zero-filled."""

from __future__ import annotations

from relief_mpi.strategy.base import Strategy


class FedAvg(Strategy):
    """McMahan et al. 2017: every client trains the whole model; sample-weighted average.

    A missing modality is zero-filled and its encoder still runs forward and backward: the
    compute and bytes RELIEF saves. Averaging every block over all clients is exactly FedAvg.
    """

    name = "fedavg"
    zero_fill_absent = True


class FedProx(FedAvg):
    """Li et al. 2020: FedAvg plus (mu/2)||w - w_global||^2 in the local objective."""

    name = "fedprox"

    @property
    def prox_mu(self) -> float:
        return self.ctx.config.mu
