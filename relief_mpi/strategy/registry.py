"""Strategy names -> classes: the torch half of the catalogue. Each catalogue entry names its class
("module:Name", strategy/catalogue.py); this module imports it, so there is no second list here."""

from __future__ import annotations

import importlib

from relief_mpi.errors import ReliefError
from relief_mpi.strategy import catalogue
from relief_mpi.strategy.base import Strategy, StrategyContext
from relief_mpi.strategy.catalogue import Entry

__all__ = ["make_strategy", "register", "strategy_class", "strategy_classes"]

_REGISTERED: dict[str, type[Strategy]] = {}  # classes given to register() (no import path)


def register(e: Entry, cls: type[Strategy]) -> None:
    """Add a strategy from outside the catalogue: its entry and its class (docs/design.md's worked example)."""
    if cls.name != e.name:
        raise ValueError(f"class {cls.__name__} is named {cls.name!r}, its entry {e.name!r}")
    catalogue.add(e)
    _REGISTERED[e.name] = cls


def strategy_class(name: str) -> type[Strategy]:
    """The class of a catalogued strategy (its entry's `cls`, imported here: strategy modules load torch)."""
    e = catalogue.entry(name)
    if name in _REGISTERED:
        return _REGISTERED[name]
    module, _, attr = e.cls.partition(":")
    if not module or not attr:
        raise ReliefError(f"strategy {name!r} is catalogued without a class (Entry.cls or registry.register)")
    obj = getattr(importlib.import_module(module), attr)
    cls = obj[name] if isinstance(obj, dict) else obj
    if not (isinstance(cls, type) and issubclass(cls, Strategy)) or cls.name != name:
        raise ReliefError(f"strategy {name!r}: {e.cls} is not its Strategy class")
    return cls


def strategy_classes() -> dict[str, type[Strategy]]:
    """Every catalogued strategy's class, in catalogue order."""
    return {n: strategy_class(n) for n in catalogue.names()}


def make_strategy(name: str, ctx: StrategyContext) -> Strategy:
    return strategy_class(name)(ctx)
