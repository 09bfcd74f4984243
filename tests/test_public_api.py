"""Public modules say what they export (__all__, every name defined), the package ships py.typed,
and the config's string modes are Literal types whose values are the CLI's choices."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

from relief_mpi import config

ROOT = Path(__file__).resolve().parents[1] / "relief_mpi"
PUBLIC = sorted(
    ".".join(p.relative_to(ROOT.parent).with_suffix("").parts)
    for p in [*ROOT.glob("*.py"), *ROOT.glob("*/*.py")] if p.name not in ("__init__.py", "__main__.py")
) + ["relief_mpi.cli"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_module_has_all_and_every_name_exists(name: str) -> None:
    mod = importlib.import_module(name)
    exported = getattr(mod, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert len(set(exported)) == len(exported)
    missing = [n for n in exported if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


def test_the_package_is_typed() -> None:
    assert (ROOT / "py.typed").is_file()
    assert '"relief_mpi" = ["py.typed"]' in (ROOT.parent / "pyproject.toml").read_text()


def test_string_modes_are_literals_whose_values_are_the_choices() -> None:
    hints = get_type_hints(config.ModelConfig)
    assert get_args(hints["mode"]) == config.MODES == ("cnn", "lora")
    assert get_args(hints["model"]) == config.MODELS == ("paper", "small")
    assert get_args(hints["b_mode"]) == config.B_MODES
    assert get_args(get_type_hints(config.DeviceConfig)["clock"]) == config.CLOCKS == ("virtual", "real")
    strat = get_type_hints(config.StrategyConfig)
    assert get_args(strat["cost_model"]) == config.COST_MODELS == ("published", "flops")
    assert get_args(strat["t_star_bracket"]) == config.T_STAR_BRACKETS
