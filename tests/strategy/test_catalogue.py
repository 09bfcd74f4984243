"""The strategy catalogue (torch-free) and the registry (torch classes) agree, and a new strategy is
its own module plus one catalogue entry: the worked example of docs/design.md, registered here
without editing a package file and run in-process for two rounds."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import numpy as np
import pytest

from relief_mpi.config import ModelConfig, RunConfig, StrategyConfig
from relief_mpi.errors import ReliefError
from relief_mpi.log.hdf5 import read_log
from relief_mpi.model.flops import FlopCosts
from relief_mpi.rounds import FleetInfo, GroupInfo, RoundPlan
from relief_mpi.run import run_inprocess
from relief_mpi.strategy import catalogue
from relief_mpi.strategy.base import SampleWeighted, Strategy, StrategyContext
from relief_mpi.strategy.catalogue import Entry, StepParams
from relief_mpi.strategy.registry import make_strategy, register, strategy_classes
from tests.helpers import fast_config

FLEET = FleetInfo((frozenset({0, 1}), frozenset({0})), ("high", "low"), (2e9, 1e9), (10.0,) * 2, (10.0,) * 2,
                  (5.0,) * 2, (64, 64), (5.0, 2.0))
PAPER_GROUPS = GroupInfo(("A.acc", "A.gyro", "B", "E.acc.1", "E.gyro.1", "head"),
                         ("A", "A", "B", "enc", "enc", "head"), (0, 1, None, 0, 1, None), (4,) * 6, (4,) * 6,
                         (10.0,) * 6)
SMALL_GROUPS = GroupInfo(("acc", "gyro", "shared"), ("block", "block", "shared"), (0, 1, None), (4,) * 3, (4,) * 3,
                         (10.0,) * 3)


def _context(e: Entry) -> StrategyContext:
    groups = SMALL_GROUPS if e.model == "small" else PAPER_GROUPS
    return StrategyContext(StrategyConfig(name=e.name, lr=e.default_lr), groups, FLEET,
                           FlopCosts((1.0, 1.0), (1.0, 1.0), 1.0, 1.0, 32), 2, 0)


def _package_strategy_classes() -> dict[str, type[Strategy]]:
    """Every named Strategy class the package defines (the presets' generated classes included)."""
    for mod in ("controls", "fedavg", "heterofl", "relief", "relief_ucb"):
        importlib.import_module(f"relief_mpi.strategy.{mod}")
    found: dict[str, type[Strategy]] = {}
    todo = list(Strategy.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("relief_mpi.strategy.") and cls.name != "base":
            assert found.setdefault(cls.name, cls) is cls, f"two classes named {cls.name}"
    return found


def test_every_catalogued_strategy_has_a_class_and_every_class_is_catalogued() -> None:
    package = _package_strategy_classes()
    assert sorted(package) == sorted(catalogue.names())
    assert list(strategy_classes()) == list(catalogue.names())
    assert len(set(catalogue.names())) == len(catalogue.names()) >= 20
    assert all(strategy_classes()[n] is cls for n, cls in package.items())


@pytest.mark.parametrize("name", list(catalogue.CATALOGUE))
def test_every_name_builds_with_the_optimizer_its_entry_names(name: str) -> None:
    e = catalogue.entry(name)
    s = make_strategy(name, _context(e))
    assert s.name == name
    recipe = s.recipe(0)
    assert recipe.optimizer == e.optimizer
    assert recipe.lr == e.default_lr


def test_parameter_defaults_are_the_logged_configs_defaults() -> None:
    """Each algorithm's parameters are StrategyConfig fields (the log keeps the flat config) with the
    same defaults, so params_of a default config is the params class's own default."""
    flat = {f.name: f for f in dataclasses.fields(StrategyConfig)}
    for e in catalogue.CATALOGUE.values():
        for f in dataclasses.fields(e.params):
            assert f.name in flat, (e.name, f.name)
            assert f.default == flat[f.name].default, (e.name, f.name)
        assert e.params_of(StrategyConfig(name=e.name)) == e.params()
    assert catalogue.entry("fedprox").params_of(StrategyConfig(mu=0.5)) == catalogue.ProxParams(mu=0.5)


def test_cli_choices_default_lr_and_help_come_from_the_catalogue() -> None:
    from relief_mpi.cli.options import build_config
    from relief_mpi.cli.train import train

    opt = next(p for p in train.params if p.name == "strategy")
    assert tuple(opt.type.choices) == catalogue.names()  # type: ignore[attr-defined]
    assert opt.help is not None and "heterofl (width-scaled" in opt.help and "fixed-order (RELIEF's" in opt.help
    defaults = {p.name: p.default for p in train.params if p.name}
    for e in catalogue.CATALOGUE.values():
        kw = {**defaults, "strategy": e.name, "model_name": e.model or "paper"}
        cfg = build_config(kw, given={"strategy"})
        assert cfg.strategy.lr == e.default_lr
        assert cfg.model.b_mode == (e.b_mode or "shared")
    assert catalogue.default_lr("relief") == 1e-3 and catalogue.default_lr("fedavg-sgd") == 0.05


def test_strategy_checks_are_the_entrys() -> None:
    paper = RunConfig(strategy=StrategyConfig(name="heterofl"))
    with pytest.raises(ReliefError, match="add --model small"):
        catalogue.entry("heterofl").check(paper)
    lora = RunConfig(model=ModelConfig(model="small", mode="lora"), strategy=StrategyConfig(name="heterofl"))
    with pytest.raises(ReliefError, match="defined for --mode cnn only"):
        catalogue.entry("heterofl").check(lora)
    with pytest.raises(ReliefError, match="use --b-mode block"):
        catalogue.entry("b-block").check(RunConfig(strategy=StrategyConfig(name="b-block")))
    catalogue.entry("b-block").check(RunConfig(model=ModelConfig(b_mode="block")))
    with pytest.raises(ReliefError, match="unknown strategy 'nope'"):
        catalogue.entry("nope")


# --- the worked example (docs/design.md, "Adding a strategy") --------------------------------------
# Package file 1 would be relief_mpi/strategy/fedavg_half.py holding this class; package file 2 the
# one catalogue line `_ours("fedavg-half", "fedavg_half:FedAvgHalf", "fedavg-sgd at half the
# --local-steps")`. Here the class lives in this test module and its entry is added as that line
# would add it, so no package file is edited and nothing else (registry, CLI, config) is either.

class FedAvgHalf(SampleWeighted):
    """fedavg-sgd with every client training half of --local-steps (at least one)."""

    name = "fedavg-half"
    zero_fill = True

    def configure_round(self, rnd: int) -> RoundPlan:
        plan = super().configure_round(rnd)
        return dataclasses.replace(plan, steps=np.maximum(1, plan.steps // 2))


HALF = Entry("fedavg-half", "ours", "sgd", "fedavg-sgd at half the --local-steps", StepParams,
             cls=f"{__name__}:FedAvgHalf")


def test_a_new_strategy_is_one_class_and_one_entry(tmp_path: Path) -> None:
    catalogue.add(HALF)
    try:
        assert "fedavg-half" in catalogue.names() and strategy_classes()["fedavg-half"] is FedAvgHalf
        assert "fedavg-half (fedavg-sgd at half the --local-steps)" in catalogue.strategy_help()
        logs = {}
        for name in ("fedavg-sgd", "fedavg-half"):
            out = tmp_path / f"{name}.h5"
            run_inprocess(fast_config(2, name, seed=3, local_steps=4, lr=0.05), 2, out)
            logs[name] = read_log(out)
        assert (logs["fedavg-sgd"].clients["steps"] == 4).all()
        assert (logs["fedavg-half"].clients["steps"] == 2).all()
        assert logs["fedavg-half"].config["strategy"]["name"] == "fedavg-half"
        assert (logs["fedavg-half"].rounds["train_loss"] != logs["fedavg-sgd"].rounds["train_loss"]).any()
    finally:
        catalogue.CATALOGUE.pop("fedavg-half", None)


def test_register_adds_a_class_without_an_import_path() -> None:
    e = dataclasses.replace(HALF, name="fedavg-half-2", cls="")
    two = type("FedAvgHalf2", (FedAvgHalf,), {"name": "fedavg-half-2"})
    with pytest.raises(ReliefError, match="catalogued without a class"):
        catalogue.add(e)
        strategy_classes()
    catalogue.CATALOGUE.pop(e.name)
    register(e, two)
    try:
        assert make_strategy(e.name, _context(e)).name == e.name
    finally:
        catalogue.CATALOGUE.pop(e.name)


def test_registering_a_class_under_another_name_or_a_taken_name_is_refused() -> None:
    with pytest.raises(ValueError, match="named 'fedavg-half'"):
        register(dataclasses.replace(HALF, name="other"), FedAvgHalf)
    with pytest.raises(ReliefError, match="already catalogued"):
        catalogue.add(dataclasses.replace(catalogue.entry("relief"), doc="something else"))
