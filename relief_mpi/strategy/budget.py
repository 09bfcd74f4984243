"""The published budget and selection rules (design.md section 0), as pure functions.

k_n(T) = max(k_min, floor((T - T_o) / tau_n)); T_a = max_n (T_o + |G_n| tau_n) (every client trains
everything); T_f = the smallest T, found by bisection on [lo x min tau, hi x max tau], with
max_n (T_o + min(k_n(T), |G_n|) tau_n) <= T; T* = (1 - lambda) T_a + lambda T_f. Selection: the
mandatory groups, then the others by descending smoothed divergence up to k_n; a group not trained
for Q rounds replaces the lowest-divergence optional pick (round-robin floor).

The published bracket never contains T_o, so when T_o > hi x max tau the search ends below T_o and
every budget falls to k_min. Two ways out:
- `bracket="contains-overhead"` (our correction): the bracket becomes [T_o + lo x min tau,
  T_o + hi x max tau x max |G_n|], which always holds a feasible T; still 4 steps, so T_f stays
  up to 1/16 of that wide bracket above the smallest feasible T (SPAR, fast tier: k_n 43-88).
- `bracket="widened"` (the authors' own search with its knobs opened, their relief.tstar.hi_mult
  and iters): [lo x min tau, WIDENED_HI_MULT x max tau] bisected WIDENED_ITERS times, which holds
  T_o while T_o < 1000 max tau and converges on the smallest feasible T (SPAR: k_n 38-78, the
  authors' run with the widened search).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "BRACKETS", "WIDENED_HI_MULT", "WIDENED_ITERS", "elastic_budget", "full_training_target", "greedy_selection",
    "interpolate_t_star", "max_round_time", "random_selection", "round_robin_floor", "search_t_star"
]


BRACKETS = ("published", "contains-overhead", "widened")
# The widened search: the authors' bracket and bisection with hi_mult and iters raised from their
# defaults (2, 4) so that the bracket holds T_o on the published fleets and the search converges.
WIDENED_HI_MULT = 1000.0
WIDENED_ITERS = 30


def elastic_budget(t_star: float, t_o: float, tau: float, k_min: int) -> int:
    if tau <= 0:
        return 1 << 30  # a device with no compute cost (native speed) fits any budget
    return max(k_min, int(math.floor((t_star - t_o) / tau)))


def max_round_time(t: float, t_o: float, tau: Sequence[float], k_min: Sequence[int], n_groups: Sequence[int]) -> float:
    return max(t_o + min(elastic_budget(t, t_o, tau[n], k_min[n]), n_groups[n]) * tau[n] for n in range(len(tau)))


def full_training_target(t_o: float, tau: Sequence[float], n_groups: Sequence[int]) -> float:
    return max(t_o + n_groups[n] * tau[n] for n in range(len(tau)))


def search_t_star(t_o: float, tau: Sequence[float], k_min: Sequence[int], n_groups: Sequence[int],
                  lo_mult: float = 0.5, hi_mult: float = 2.0, iters: int = 4, bracket: str = "published") -> float:
    """T_f by bisection; returns the upper end of the final bracket (as published)."""
    if bracket == "published":
        lo, hi = lo_mult * min(tau), hi_mult * max(tau)
    elif bracket == "contains-overhead":
        lo, hi = t_o + lo_mult * min(tau), t_o + hi_mult * max(tau) * max(n_groups)
    elif bracket == "widened":
        lo, hi, iters = lo_mult * min(tau), WIDENED_HI_MULT * max(tau), WIDENED_ITERS
    else:
        raise ValueError(f"bracket must be one of {BRACKETS}, got {bracket!r}")
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if max_round_time(mid, t_o, tau, k_min, n_groups) <= mid:
            hi = mid
        else:
            lo = mid
    return hi


def interpolate_t_star(lam: float, t_a: float, t_f: float) -> float:
    return (1.0 - lam) * t_a + lam * t_f


def greedy_selection(accessible: Sequence[int], mandatory: Sequence[int], d_bar: Mapping[int, float],
                     k: int) -> list[int]:
    """Mandatory groups, then the others by descending d_bar (ties: lower index), k in all."""
    req = set(mandatory)
    chosen = [j for j in accessible if j in req]
    optional = sorted((j for j in accessible if j not in req), key=lambda j: (-d_bar.get(j, 0.0), j))
    return chosen + optional[:max(0, k - len(chosen))]


def random_selection(accessible: Sequence[int], mandatory: Sequence[int], k: int,
                     rng: np.random.Generator) -> list[int]:
    """Mandatory groups, then optional ones drawn without replacement (the random ablation)."""
    req = set(mandatory)
    chosen = [j for j in accessible if j in req]
    optional = [j for j in accessible if j not in req]
    count = min(max(0, k - len(chosen)), len(optional))
    picks = rng.choice(len(optional), size=count, replace=False) if count > 0 else np.zeros(0, np.int64)
    return chosen + [optional[int(i)] for i in picks]


def round_robin_floor(selected: Sequence[int], accessible: Sequence[int], mandatory: Sequence[int],
                      last_trained: Mapping[int, int], r: int, q: int, d_bar: Mapping[int, float]) -> list[int]:
    """Every accessible group not trained for q rounds joins, replacing the lowest-d_bar optional
    pick while there is one to replace (after that it is appended: the set grows)."""
    out = list(selected)
    chosen = set(out)
    req = set(mandatory)
    stale = sorted((j for j in accessible if j not in chosen and r - last_trained.get(j, 0) >= q),
                   key=lambda j: last_trained.get(j, 0))
    optional = sorted((j for j in out if j not in req), key=lambda j: (d_bar.get(j, 0.0), j))
    for j in stale:
        if optional:
            out.remove(optional.pop(0))
        out.append(j)
    return out
