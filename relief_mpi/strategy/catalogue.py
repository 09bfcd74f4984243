"""The strategy catalogue: every --strategy's name, recipe, requirements and parameters, in one list.

Torch-free on purpose: the command line imports it to build --strategy's choices, default --lr and
--help text without loading torch. The torch classes are mapped to these names in
strategy/registry.py; tests/strategy/test_catalogue.py checks that both agree. Adding a strategy =
its own module + one `Entry` here (or `registry.register(entry, cls)` from outside the package,
as docs/design.md's worked example does).

Each entry's parameters are a frozen dataclass of the StrategyConfig fields that algorithm reads
(pfl-research style, per algorithm). The log keeps the flat StrategyConfig so every old log still
loads and a fixed-seed log is byte-for-byte the same JSON; `Entry.params_of` gives the view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from relief_mpi.config import BMode, CostModelName, Mode, ModelName, TStarBracket
from relief_mpi.errors import ReliefError

if TYPE_CHECKING:
    from relief_mpi.config import RunConfig, StrategyConfig

__all__ = [
    "CATALOGUE", "FAMILIES", "CommonParams", "Entry", "EpochParams", "Family", "HeteroFLParams", "Optimizer",
    "ProxParams", "StepParams", "UcbParams", "adam_strategies", "add", "default_lr", "entry", "names",
    "strategy_help",
]

Optimizer = Literal["adam", "sgd"]
Family = Literal["published", "ours", "control"]
DEFAULT_LR: dict[Optimizer, float] = {"adam": 1e-3, "sgd": 0.05}

FAMILIES: dict[Family, str] = {
    "published": "Published presets (the authors' RELIEF, design.md section 0; Adam, --local-epochs)",
    "ours": "Our own (SGD, --local-steps, sample weights)",
    "control": "Ours on the published recipe (Adam, --local-epochs)",
}


@dataclass(frozen=True)
class CommonParams:
    """What every strategy reads: the batch size and the analytic cost model (strategy/system.py)."""

    batch_size: int = 32
    cost_model: CostModelName = "published"


@dataclass(frozen=True)
class EpochParams(CommonParams):
    """The published recipe: E local epochs, the T* search and divergence smoothing."""

    local_epochs: int = 5
    lam: float | None = None
    gamma: float = 0.9
    t_star_bracket: TStarBracket = "published"


@dataclass(frozen=True)
class StepParams(CommonParams):
    """Our SGD recipe: a fixed number of local steps."""

    local_steps: int = 10
    momentum: float = 0.0


@dataclass(frozen=True)
class ProxParams(StepParams):
    mu: float = 0.01


@dataclass(frozen=True)
class UcbParams(StepParams):
    deadline: str = "auto"
    beta: float = 0.5


@dataclass(frozen=True)
class HeteroFLParams(StepParams):
    heterofl_widths: tuple[float, ...] = (1.0, 0.5, 0.25)


def _no_check(cfg: RunConfig) -> None:
    del cfg


@dataclass(frozen=True)
class Entry:
    """One strategy as the command line and the config see it (no torch)."""

    name: str
    family: Family
    optimizer: Optimizer
    doc: str = ""  # a phrase for --help ("" = the name alone)
    params: type[CommonParams] = CommonParams
    model: ModelName | None = None  # the --model it needs (None: any)
    modes: tuple[Mode, ...] = ("cnn", "lora")
    b_mode: BMode | None = None  # the --b-mode it implies (None: as given)
    extra_check: Callable[[RunConfig], None] = _no_check
    cls: str = ""  # "module:Name" of its class (strategy/registry imports it), or of a dict of classes by name

    @property
    def default_lr(self) -> float:
        return DEFAULT_LR[self.optimizer]

    def params_of(self, s: StrategyConfig) -> CommonParams:
        """This algorithm's own parameters out of the run's (flat, logged) StrategyConfig."""
        return self.params(**{f.name: getattr(s, f.name) for f in dataclasses.fields(self.params)})

    def check(self, cfg: RunConfig) -> None:
        """One `error:` line when the run's model, mode or B layout is not one this strategy runs on."""
        if self.model is not None and cfg.model.model != self.model:
            raise ReliefError(f"--strategy {self.name} {self._why('model')}: add --model {self.model}")
        if cfg.model.mode not in self.modes:
            raise ReliefError(f"--strategy {self.name} {self._why('mode')} is defined for --mode "
                              f"{' or '.join(self.modes)} only")
        if self.b_mode is not None and cfg.model.b_mode != self.b_mode:
            raise ReliefError(f"--strategy {self.name} {self._why('b_mode')}: use --b-mode {self.b_mode}")
        self.extra_check(cfg)

    def _why(self, what: str) -> str:
        return _WHY.get((self.name, what), "needs it")


# The reasons the error lines give (kept word for word from the checks they replace).
_WHY = {
    ("heterofl", "model"): "scales the small model's layer widths",
    ("heterofl", "mode"): "scales layer widths and",
    ("b-block", "b_mode"): "is the published preset with one B per modality",
}


_M = "relief_mpi.strategy."


def _published(name: str, doc: str = "", **kw: Any) -> Entry:
    return Entry(name, "published", "adam", doc, EpochParams, cls=_M + "relief:PUBLISHED", **kw)


def _control(name: str, doc: str) -> Entry:
    return Entry(name, "control", "adam", doc, EpochParams, cls=_M + "controls:CONTROL_CLASSES")


def _ours(name: str, cls: str, doc: str = "", params: type[CommonParams] = StepParams, **kw: Any) -> Entry:
    return Entry(name, "ours", "sgd", doc, params, cls=_M + cls, **kw)


CATALOGUE: dict[str, Entry] = {e.name: e for e in (
    _published("fedavg", "whole model, zero-filled sensors, 1/N weights"),
    _published("cohort-fedavg"),
    _published("relief-acc", "no budget"),
    _published("relief", "T*-elastic budgets, divergence-greedy groups, cohort aggregation"),
    _published("relief-fast", "= relief"),
    _published("ablation-v2", "FedAvg weights, no mandatory A"),
    _published("ablation-v3", "v2 with random groups"),
    _published("b-uniform"),
    _published("b-freeze"),
    _published("b-block", "one B per modality", b_mode="block"),
    _ours("fedavg-sgd", "fedavg:FedAvgSgd"),
    _ours("fedprox", "fedavg:FedProx", "proximal term --mu", ProxParams),
    _ours("heterofl", "heterofl:HeteroFL", "width-scaled sub-models per tier; --model small", HeteroFLParams,
          model="small", modes=("cnn",)),
    _ours("relief-ucb", "relief_ucb:ReliefUcb", "our first design: UCB allocation under a FLOP deadline", UcbParams),
    _ours("relief-ucb-cohort", "relief_ucb:ReliefUcbCohort"),
    _ours("relief-ucb-random", "relief_ucb:ReliefUcbRandom", "", UcbParams),
    _control("fedavg-fair", "sample weights; a client never updates the groups or BatchNorm statistics of a "
                            "sensor it lacks"),
    _control("skip-absent", "fedavg-fair, absent encoders not run"),
    _control("fedavg-deadline", "fedavg-fair under RELIEF's budget as fewer steps"),
    _control("fixed-order", "RELIEF's budget, groups least recently trained first"),
)}


def add(e: Entry) -> None:
    """Catalogue one more strategy (strategy/registry.register pairs it with its class)."""
    if e.name in CATALOGUE and CATALOGUE[e.name] != e:
        raise ReliefError(f"strategy {e.name!r} is already catalogued")
    CATALOGUE[e.name] = e


def names() -> tuple[str, ...]:
    """Every --strategy choice, in catalogue order."""
    return tuple(CATALOGUE)


def adam_strategies() -> tuple[str, ...]:
    return tuple(n for n, e in CATALOGUE.items() if e.optimizer == "adam")


def entry(name: str) -> Entry:
    if name not in CATALOGUE:
        raise ReliefError(f"unknown strategy {name!r}; choose one of {', '.join(sorted(CATALOGUE))}")
    return CATALOGUE[name]


def default_lr(name: str) -> float:
    """--lr when not given: 1e-3 for the Adam recipes, 0.05 for our SGD ones."""
    return entry(name).default_lr


def strategy_help() -> str:
    """--strategy's help text: each family's recipe, then its strategies with their phrases."""
    parts = []
    for fam, intro in FAMILIES.items():
        items = [f"{e.name} ({e.doc})" if e.doc else e.name for e in CATALOGUE.values() if e.family == fam]
        parts.append(f"{intro}: {', '.join(items)}.")
    return " ".join(parts)
