"""A run's results from its log, shared by our bench table (summary.py) and the paper's (paper.py):
the row label of a log file, time to a target through metrics.first_reached, ratios, mean and spread
over seeds, and how a number is printed."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relief_mpi.log.hdf5 import RunLog
from relief_mpi.metrics import first_reached

__all__ = ["NAN", "RUN_NAME", "SEARCH_NAME", "Reach", "Stat", "fmt", "label_of", "last_finite", "last_row", "ratio",
           "reach", "reduction_pct"]

RUN_NAME = re.compile(r"^(?P<strategy>.+)-seed(?P<seed>-?\d+)\.h5$")
SEARCH_NAME = re.compile(r"^(?P<strategy>.+)-lr(?P<lr>[^-]+)-seed(?P<seed>-?\d+)\.h5$")
NAN = math.nan


def label_of(path: str | Path, log: RunLog) -> str:
    """A bench row's name: the file's <label> (<label>-seed<k>.h5, or <label>-lr<x>-seed<k>.h5 in an
    lr-search/ folder, whose row is the strategy searched, not one row per learning rate; a
    strategy, or strategy+correction under --compare), else the log's strategy."""
    name = Path(path).name
    m = SEARCH_NAME.match(name) if Path(path).parent.name == "lr-search" else RUN_NAME.match(name)
    return m.group("strategy") if m else str(log.attrs.get("strategy") or log.config["strategy"]["name"])


def fmt(x: float | None, spec: str = ".3f") -> str:
    """A number for a table, or n/a (None, NaN, infinite)."""
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def ratio(a: float, b: float) -> float:
    """a / b where both are finite and b > 0, else NaN (a speedup is base time / run time)."""
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else NAN


def reduction_pct(e: float, e_base: float) -> float:
    """100 (1 - e / e_base): how much less than the base, in percent; NaN where the ratio is."""
    r = ratio(e, e_base)
    return 100.0 * (1.0 - r) if math.isfinite(r) else NAN


def last_row(values: np.ndarray) -> int:
    """Index of the last finite value (the last evaluated round), or -1."""
    ok = np.flatnonzero(np.isfinite(values))
    return int(ok[-1]) if ok.size else -1


def last_finite(values: np.ndarray) -> float:
    i = last_row(values)
    return float(values[i]) if i >= 0 else NAN


@dataclass
class Reach:
    """Where a run first reached a target macro-F1 (the first evaluated round at or above it); round 0 = never."""

    target: float
    round: int = 0
    virtual_s: float = NAN
    wall_s: float = NAN
    energy_j: float = NAN  # modeled, summed over rounds 1..round
    analytic_s: float = NAN
    analytic_energy_j: float = NAN

    @property
    def reached(self) -> bool:
        return self.round > 0


def reach(log: RunLog, target: float) -> Reach:
    out = Reach(target)
    if not math.isfinite(target):
        return out
    r = log.rounds
    i = first_reached(r["macro_f1"], target)
    if i < 0:
        return out
    out.round = int(r["round"][i])
    out.virtual_s = float(r["virtual_elapsed_s"][i])
    out.wall_s = float(r["wall_elapsed_s"][i])
    out.energy_j = float(np.nansum(r["energy_j"][:i + 1]))
    out.analytic_s = float(r["analytic_elapsed_s"][i])
    out.analytic_energy_j = float(r["analytic_energy_cum_j"][i])
    return out


@dataclass
class Stat:
    """Mean and spread of the finite values among n (n counts NaNs too); `why` it has none, if
    known (the paper table shows it instead of a number)."""

    values: list[float]
    why: str = ""

    @property
    def finite(self) -> np.ndarray:
        v = np.asarray(self.values, float)
        return v[np.isfinite(v)]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def count(self) -> int:
        return int(self.finite.size)

    @property
    def mean(self) -> float:
        f = self.finite
        return float(f.mean()) if f.size else NAN

    @property
    def std(self) -> float:
        f = self.finite
        return float(f.std(ddof=1)) if f.size > 1 else (0.0 if f.size == 1 else NAN)

    @property
    def max(self) -> float:
        f = self.finite
        return float(f.max()) if f.size else NAN
