"""Strategy names -> classes (the CLI's --strategy choices)."""

from __future__ import annotations

from relief_mpi.errors import ReliefError
from relief_mpi.strategy.base import Strategy, StrategyContext
from relief_mpi.strategy.controls import CONTROL_CLASSES
from relief_mpi.strategy.fedavg import FedAvgSgd, FedProx
from relief_mpi.strategy.heterofl import HeteroFL
from relief_mpi.strategy.relief import PUBLISHED
from relief_mpi.strategy.relief_ucb import ReliefUcb, ReliefUcbCohort, ReliefUcbRandom


def strategy_classes() -> dict[str, type[Strategy]]:
    classes: dict[str, type[Strategy]] = {**PUBLISHED, **CONTROL_CLASSES}
    for c in (FedAvgSgd, FedProx, HeteroFL, ReliefUcb, ReliefUcbCohort, ReliefUcbRandom):
        classes[c.name] = c
    return classes


def make_strategy(name: str, ctx: StrategyContext) -> Strategy:
    classes = strategy_classes()
    if name not in classes:
        raise ReliefError(f"unknown strategy {name!r}; choose one of {', '.join(sorted(classes))}")
    return classes[name](ctx)
