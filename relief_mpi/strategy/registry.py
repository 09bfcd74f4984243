"""Strategy names -> classes (the CLI's --strategy choices)."""

from __future__ import annotations

from relief_mpi.strategy.base import Strategy, StrategyContext
from relief_mpi.strategy.fedavg import FedAvg, FedProx


def strategy_classes() -> dict[str, type[Strategy]]:
    classes: dict[str, type[Strategy]] = {"fedavg": FedAvg, "fedprox": FedProx}
    try:
        from relief_mpi.strategy.relief import Relief, ReliefCohort, ReliefRandom

        classes.update({c.name: c for c in (Relief, ReliefCohort, ReliefRandom)})
    except ImportError:  # pragma: no cover - while relief.py is being built
        pass
    try:
        from relief_mpi.strategy.heterofl import HeteroFL

        classes[HeteroFL.name] = HeteroFL
    except ImportError:  # pragma: no cover
        pass
    return classes


def make_strategy(name: str, ctx: StrategyContext) -> Strategy:
    classes = strategy_classes()
    if name not in classes:
        from relief_mpi.errors import ReliefError

        raise ReliefError(f"unknown strategy {name!r}; choose one of {', '.join(sorted(classes))}")
    return classes[name](ctx)
