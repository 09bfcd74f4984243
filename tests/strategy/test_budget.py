"""Oracles for the published budget and selection rules (numbers given in the issue, checked by hand)."""

import math

import numpy as np
import pytest

from relief_mpi.strategy import budget

TAU = [0.002, 0.026, 0.11]
N_G = [15, 11, 6]
K_MIN = [4, 2, 1]


def budgets(t_o: float) -> tuple[float, float, list[int]]:
    t_a = budget.full_training_target(t_o, TAU, N_G)
    t_f = budget.search_t_star(t_o, TAU, K_MIN, N_G, 0.5, 2.0, 4)
    t_star = budget.interpolate_t_star(1.0, t_a, t_f)
    return t_a, t_f, [budget.elastic_budget(t_star, t_o, TAU[n], K_MIN[n]) for n in range(3)]


@pytest.mark.parametrize(("t_o", "t_a", "t_f", "ks"), [
    (0.05, 0.71, 0.16525, [57, 4, 1]),
    (0.01, 0.67, 0.124188, [57, 4, 1]),
    (0.3, 0.96, 0.22, [4, 2, 1]),
])
def test_t_star_and_budgets_match_the_hand_computed_oracle(t_o: float, t_a: float, t_f: float, ks: list[int]) -> None:
    got_a, got_f, got_k = budgets(t_o)
    assert math.isclose(got_a, t_a, rel_tol=1e-9)
    assert math.isclose(got_f, t_f, rel_tol=1e-5)
    assert got_k == ks


def test_published_bracket_ends_below_the_overhead_and_every_budget_is_k_min() -> None:
    """T_o = 0.3 > 2 max tau = 0.22: the bracket never contains T_o (issue 16, property 1)."""
    t_o = 0.3
    t_f = budget.search_t_star(t_o, TAU, K_MIN, N_G)
    assert t_f < t_o
    assert [budget.elastic_budget(t_f, t_o, TAU[n], K_MIN[n]) for n in range(3)] == K_MIN


def test_corrected_bracket_contains_the_overhead_and_budgets_vary() -> None:
    t_o = 0.3
    t_f = budget.search_t_star(t_o, TAU, K_MIN, N_G, bracket="contains-overhead")
    assert t_f >= t_o
    ks = [budget.elastic_budget(t_f, t_o, TAU[n], K_MIN[n]) for n in range(3)]
    assert any(k > k_min for k, k_min in zip(ks, K_MIN, strict=True))
    # the round still fits the target it was searched for
    assert budget.max_round_time(t_f, t_o, TAU, K_MIN, N_G) <= t_f


def test_widened_search_converges_on_the_smallest_feasible_t() -> None:
    """The authors' bracket with hi_mult 1000 and 30 steps. By hand: for T >= T_o a client with
    floor((T - T_o) / tau) >= k_min finishes by T, so the smallest T that fits is
    T_o + max_n k_min tau_n = 0.3 + max(0.008, 0.052, 0.11) = 0.41; 30 halvings of [0.001, 110]
    leave it at most 110 / 2^30 = 1.03e-7 above (the search returns the feasible end)."""
    t_o = 0.3
    t_f = budget.search_t_star(t_o, TAU, K_MIN, N_G, bracket="widened")
    assert 0.41 <= t_f <= 0.41 + 110 / 2**30
    assert [budget.elastic_budget(t_f, t_o, TAU[n], K_MIN[n]) for n in range(3)] == [55, 4, 1]
    # contains-overhead's 4 steps on [0.301, 3.6] stop up to 0.21 higher: bigger budgets for the fast client
    t_c = budget.search_t_star(t_o, TAU, K_MIN, N_G, bracket="contains-overhead")
    assert t_c > 0.41 + 1e-3 and budget.elastic_budget(t_c, t_o, TAU[0], K_MIN[0]) > 55


D_BAR = {4: 0.5, 5: 2.0, 6: 0.1, 7: 0.3, 8: 1.0, 13: 0.7, 14: 0.05}
GROUPS = [0, 4, 5, 6, 7, 8, 13, 14]


def test_greedy_selection_oracle() -> None:
    assert sorted(budget.greedy_selection(GROUPS, [0], D_BAR, 4)) == [0, 5, 8, 13]


def test_round_robin_floor_oracle() -> None:
    sel = budget.greedy_selection(GROUPS, [0], D_BAR, 4)
    last = {j: 9 for j in GROUPS}
    last[6], last[14] = 1, 0
    assert sorted(budget.round_robin_floor(sel, GROUPS, [0], last, 10, 9, D_BAR)) == [0, 5, 6, 14]


def test_round_robin_floor_appends_when_nothing_optional_is_left() -> None:
    """With only the mandatory pick (budget k_min) stale groups are appended: the set grows."""
    last = dict.fromkeys(GROUPS, 0)
    out = budget.round_robin_floor([0], GROUPS, [0], last, 9, 9, D_BAR)
    assert sorted(out) == GROUPS


def test_random_selection_keeps_mandatory_and_draws_k_without_replacement() -> None:
    rng = np.random.default_rng(0)
    draws = {tuple(sorted(budget.random_selection(GROUPS, [0], 4, rng))) for _ in range(50)}
    assert all(len(d) == 4 and d[0] == 0 and len(set(d)) == 4 for d in draws)
    assert len(draws) > 5  # not a fixed order
