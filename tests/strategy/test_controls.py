"""fedavg-fair, skip-absent, fedavg-deadline, fixed-order, the T* bracket and --cost-model: plans,
weights and budgets checked against numbers computed by hand (issues 16 and 17)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from relief_mpi.config import StrategyConfig
from relief_mpi.model.flops import FlopCosts
from relief_mpi.rounds import FleetInfo, GroupInfo, GroupSums, pack_update
from relief_mpi.strategy.base import StrategyContext
from relief_mpi.strategy.registry import make_strategy
from relief_mpi.strategy.system import analytic_round

# The paper model's 15 groups over four modalities (acc, gyro, mag, ecg); 10 values each.
NAMES = ("A.acc", "A.gyro", "A.mag", "A.ecg", "B", "E.acc.0", "E.acc.1", "E.gyro.0", "E.gyro.1", "E.mag.0",
         "E.mag.1", "E.ecg.0", "E.ecg.1", "H.0", "H.1")
KINDS = ("A",) * 4 + ("B",) + ("enc",) * 8 + ("head",) * 2
MODALITY = (0, 1, 2, 3, None, 0, 0, 1, 1, 2, 2, 3, 3, None, None)
FULL, ACC_GYRO, ACC_ONLY = frozenset({0, 1, 2, 3}), frozenset({0, 1}), frozenset({0})
G_FULL = list(range(15))
G_ACC_GYRO = [0, 1, 4, 5, 6, 7, 8, 13, 14]
G_ACC_ONLY = [0, 4, 5, 6, 13, 14]
# Per sample: every encoder forward 1 MFLOP, backward 2 MFLOP, fusion+head 0.5 + 0.5 MFLOP.
COSTS = FlopCosts((1e6,) * 4, (2e6,) * 4, 0.5e6, 0.5e6, 1)


def context(name: str, sets: tuple[frozenset[int], ...], speeds: tuple[float, ...], n_train: int = 3200,
            mbps: float = 1e6, **cfg: object) -> StrategyContext:
    """Every group 1 MFLOP per sample (published model), E = 1, batch 32."""
    g = GroupInfo(NAMES, KINDS, MODALITY, (10,) * 15, (8,) * 15, (1e6,) * 15)
    k = len(sets)
    fleet = FleetInfo(sets, ("t",) * k, speeds, (mbps,) * k, (mbps,) * k, (0.0,) * k, (n_train,) * k, (5.0,) * k)
    config = StrategyConfig(name=name, local_epochs=1, **cfg)  # type: ignore[arg-type]
    return StrategyContext(config, g, fleet, COSTS, 4, 0, "cnn", 32)


def feed(s, plan, rnd: int, scale: float = 1.0) -> None:  # noqa: ANN001 - any strategy
    """Aggregate one round of made-up sums (divergence grows with the group index x scale)."""
    sums = {j: GroupSums(np.full(10, 0.01, np.float32), np.full(10, 0.02, np.float32), 2.0, 2.0,
                         1e-3 * scale * (j + 1), 1e-3 * scale * (j + 1) ** 2)
            for j in range(15) if plan.alloc[:, j].any()}
    s.aggregate(rnd, plan, [np.zeros(10, np.float32)] * 15, sums, np.full(plan.alloc.shape[0], 100.0))


def rows(alloc: np.ndarray) -> list[list[int]]:
    return [list(np.flatnonzero(r)) for r in alloc]


# -- fedavg-fair ------------------------------------------------------------------------------------

def test_fedavg_fair_trains_only_own_groups_every_round_with_sample_weights() -> None:
    s = make_strategy("fedavg-fair", context("fedavg-fair", (FULL, ACC_GYRO, ACC_ONLY), (1e12,) * 3))
    for rnd in (1, 2, 3):
        plan = s.configure_round(rnd)
        assert rows(plan.alloc) == [G_FULL, G_ACC_GYRO, G_ACC_ONLY]
        assert np.array_equal(plan.coef, plan.alloc.astype(float))  # the client multiplies by its samples
        assert not plan.plain.any() and math.isinf(plan.deadline_s)
        np.testing.assert_array_equal(plan.steps, [100, 100, 100])  # E = 1 over 3200 windows, batch 32
        feed(s, plan, rnd)
    r = s.recipe(2)
    assert (r.zero_fill, r.freeze_absent_bn, r.sample_weighted, r.optimizer) == (True, True, True, "adam")
    assert s.ownership().all()  # zero-filled inputs: every encoder runs forward, so every group is needed
    fed = make_strategy("fedavg", context("fedavg", (FULL, ACC_GYRO, ACC_ONLY), (1e12,) * 3))
    assert fed.configure_round(2).alloc.all() and not fed.recipe(2).freeze_absent_bn  # the published FedAvg


def test_fedavg_fair_averages_each_group_over_its_trainers_by_samples() -> None:
    s = make_strategy("fedavg-fair", context("fedavg-fair", (FULL, ACC_GYRO, ACC_ONLY), (1e12,) * 3))
    plan = s.configure_round(1)
    d = {0: np.arange(10, dtype=np.float32), 1: np.ones(10, np.float32), 2: np.full(10, -2.0, np.float32)}
    n = {0: 100.0, 1: 300.0, 2: 600.0}
    sums = {}
    for j in (1, 4):  # A.gyro: clients 0 and 1; B: everyone
        trainers = [k for k in range(3) if plan.alloc[k, j]]
        buf = sum(pack_update(d[k], 8, float(plan.coef[k, j]) * n[k], False) for k in trainers)
        sums[j] = GroupSums.unpack(buf, 10, False)
    groups = [np.full(10, 0.5, np.float32) for _ in range(15)]
    agg = s.aggregate(1, plan, groups, sums, np.array([100.0, 300.0, 600.0]))
    np.testing.assert_allclose(agg.groups[1], 0.5 + (100 * d[0] + 300 * d[1]) / 400, rtol=1e-6)
    np.testing.assert_allclose(agg.groups[4], 0.5 + (100 * d[0] + 300 * d[1] + 600 * d[2]) / 1000, rtol=1e-6)
    assert np.array_equal(agg.groups[2], groups[2])  # nobody uploaded A.mag this time: unchanged
    # logged divergence: the sample-weighted variance of A.gyro's two deltas over its 8 parameters
    mean = (100 * d[0][:8] + 300 * d[1][:8]) / 400
    var = (100 * (d[0][:8] @ d[0][:8]) + 300 * (d[1][:8] @ d[1][:8])) / 400 - mean @ mean
    assert math.isclose(agg.divergence[1], var / 8, rel_tol=1e-6)


# -- skip-absent ------------------------------------------------------------------------------------

def test_skip_absent_neither_runs_nor_downloads_absent_encoders() -> None:
    ctx = context("skip-absent", (FULL, ACC_GYRO, ACC_ONLY), (1e12,) * 3)
    s = make_strategy("skip-absent", ctx)
    plan = s.configure_round(2)
    assert rows(plan.alloc) == [G_FULL, G_ACC_GYRO, G_ACC_ONLY]
    assert rows(s.ownership()) == [G_FULL, G_ACC_GYRO, G_ACC_ONLY]  # downloads only what its forward needs
    r = s.recipe(2)
    assert (r.zero_fill, r.sample_weighted) == (False, True)
    # flops cost model, acc_only client, every accessible group: forward acc only (1) + top (1) +
    # acc backward (2) = 4 MFLOP per sample; fedavg-fair also runs three zero-filled encoders: 7.
    for name, per_sample in (("skip-absent", 4e6), ("fedavg-fair", 7e6)):
        st = make_strategy(name, replace(ctx, config=replace(ctx.config, name=name, cost_model="flops")))
        p = st.configure_round(2)
        ana = st.analytic(p, st.notes(p))
        assert math.isclose(ana.compute_s[2], per_sample * 3200 / 1e12, rel_tol=1e-12)


# -- T* bracket (issue 16, property 1) -----------------------------------------------------------------

def test_published_bracket_gives_k_min_and_a_q_round_floor_corrected_bracket_budgets_by_tier() -> None:
    """Fast devices, 40-byte groups over 20 Mbit/s: T_o ~ 0.05 s >> 2 max tau ~ 1e-4 s."""
    sets = (FULL, ACC_GYRO, ACC_ONLY, ACC_ONLY)
    s = make_strategy("relief", context("relief", sets, (5e12,) * 4, n_train=100, mbps=20.0))
    allocs = []
    for rnd in range(1, 12):
        plan = s.configure_round(rnd)
        allocs.append(plan.alloc.copy())
        notes = s.notes(plan)
        if rnd > 1:
            assert notes.t_star < s.cost_model.overhead(notes.accessible)
            np.testing.assert_array_equal(notes.budget, [4, 2, 1, 1])  # k_min = the A groups, every tier
        feed(s, plan, rnd)
    # published rounds 1..8 train only the A groups; round 9 (Q = 9) brings back every accessible group
    for rnd in range(2, 10):
        assert rows(allocs[rnd - 1]) == [[0, 1, 2, 3], [0, 1], [0], [0]]
    assert rows(allocs[9]) == [G_FULL, G_ACC_GYRO, G_ACC_ONLY, G_ACC_ONLY]

    c = make_strategy("relief", context("relief", sets, (5e12,) * 4, n_train=100, mbps=20.0,
                                        t_star_bracket="contains-overhead"))
    feed(c, c.configure_round(1), 1)
    notes = c.notes(c.configure_round(2))
    assert notes.t_star >= c.cost_model.overhead(notes.accessible)
    assert notes.budget is not None and any(notes.budget > [4, 2, 1, 1])


# -- fedavg-deadline and fixed-order: a 2-client case solved by hand ----------------------------------
#
# Client 0 has every sensor (15 groups, k_min 4), client 1 acc only (6 groups, k_min 1); 3200 windows,
# E = 1. Published cost: tau_0 = 1e6 x 3200 / 3.2e10 = 0.1 s, tau_1 = 1e6 x 3200 / 3.2e9 = 1 s,
# T_o = 0.05 s (+ ~1e-8 for the bytes). Client 1 fits T iff T >= T_o + 1 s. Bisection on [0.05, 2]:
# 1.025 no, 1.5125 yes, 1.26875 yes, 1.146875 yes -> T* = 1.146875; k_0 = floor(1.096875 / 0.1) = 10,
# k_1 = max(1, floor(1.096875 / 1)) = 1.
TWO = (FULL, ACC_ONLY)
SPEEDS = (3.2e10, 3.2e9)


def test_fedavg_deadline_spends_relief_budget_on_fewer_steps_of_every_group() -> None:
    s = make_strategy("fedavg-deadline", context("fedavg-deadline", TWO, SPEEDS))
    rel = make_strategy("relief", context("relief", TWO, SPEEDS))
    first = s.configure_round(1)
    np.testing.assert_array_equal(first.steps, [100, 100])  # the seeding round is full, as RELIEF's
    feed(s, first, 1)
    feed(rel, rel.configure_round(1), 1)
    plan = s.configure_round(2)
    notes = s.notes(plan)
    rel_notes = rel.notes(rel.configure_round(2))
    assert math.isclose(notes.t_star, 1.146875, rel_tol=1e-12) and notes.t_star == rel_notes.t_star
    np.testing.assert_array_equal(notes.budget, [10, 1])
    np.testing.assert_array_equal(rel_notes.budget, [10, 1])
    assert rows(plan.alloc) == [G_FULL, G_ACC_ONLY]  # every group ...
    np.testing.assert_array_equal(plan.steps, [100 * 10 // 15, 100 * 1 // 6])  # ... for 66 and 16 steps
    np.testing.assert_allclose(notes.samples, [3200 * 66 / 100, 3200 * 16 / 100])
    assert np.array_equal(plan.coef, plan.alloc.astype(float)) and s.recipe(0).sample_weighted
    # analytic compute: |G_n| tau_n on the samples of those steps = 15 x 0.1 x 0.66, 6 x 1 x 0.16
    ana = s.analytic(plan, notes)
    np.testing.assert_allclose(ana.compute_s, [0.99, 0.96], rtol=1e-12)
    assert (ana.compute_s <= np.array([10 * 0.1, 1 * 1.0]) + 1e-12).all()  # within RELIEF's budget


def test_fixed_order_cycles_least_recently_trained_groups_whatever_the_divergence() -> None:
    allocs = {}
    for scale in (1.0, -1.0):  # divergence rising or falling with the group index: same allocation
        s = make_strategy("fixed-order", context("fixed-order", TWO, SPEEDS))
        out = []
        for rnd in range(1, 5):
            plan = s.configure_round(rnd)
            out.append(rows(plan.alloc))
            feed(s, plan, rnd, scale)
        allocs[scale] = out
    a = [0, 1, 2, 3]
    assert allocs[1.0] == allocs[-1.0]
    assert allocs[1.0][0] == [G_FULL, G_ACC_ONLY]
    # k_0 = 10: the 4 A groups + 6 of the 11 others, oldest first (ties: group order); k_1 = 1: A.acc
    assert allocs[1.0][1] == [a + [4, 5, 6, 7, 8, 9], [0]]
    assert allocs[1.0][2] == [a + [4, 10, 11, 12, 13, 14], [0]]
    assert allocs[1.0][3] == [a + [4, 5, 6, 7, 8, 9], [0]]  # 5..9 are now oldest, then B by group order
    rel = []
    for scale in (1.0, -1.0):
        s = make_strategy("relief", context("relief", TWO, SPEEDS))
        for rnd in range(1, 4):
            plan = s.configure_round(rnd)
            feed(s, plan, rnd, scale)
        rel.append(rows(plan.alloc))
    assert rel[0] != rel[1]  # RELIEF's choice does follow the divergence


# -- --cost-model flops ------------------------------------------------------------------------------
#
# Same fleet. flops: client 0 runs 4 encoders forward (4), top (1), 4 backward (8) = 13 MFLOP/sample,
# 13e6 x 3200 / 3.2e10 = 1.3 s for all 15 groups: tau_0 = 1.3 / 15; client 1 (acc only, zero-filled:
# all 4 forward, acc backward) 7e6 x 3200 / 3.2e9 = 7 s for 6 groups: tau_1 = 7 / 6. Client 1 fits
# T iff T >= T_o + 7/6 = 1.21667. Bisection on [0.65 / 15, 7 / 3]: 1.188333 no, 1.760833 yes,
# 1.474583 yes, 1.331458 yes -> T* = 1.331458; k_0 = floor(1.281458 / 0.086667) = 14, k_1 = 1.

def test_flops_cost_model_changes_t_star_budgets_and_the_charged_round() -> None:
    out = {}
    for model in ("published", "flops"):
        s = make_strategy("relief", context("relief", TWO, SPEEDS, cost_model=model))
        feed(s, s.configure_round(1), 1)
        plan = s.configure_round(2)
        out[model] = (s, plan, s.notes(plan))
    _, _, pub = out["published"]
    s, plan, fl = out["flops"]
    assert math.isclose(pub.t_star, 1.146875, rel_tol=1e-12)
    assert math.isclose(fl.t_star, (1.188333333 + 1.474583333) / 2, rel_tol=1e-8)
    np.testing.assert_array_equal(pub.budget, [10, 1])
    np.testing.assert_array_equal(fl.budget, [14, 1])
    assert math.isclose(s.cost_model.tau(0, G_FULL, 3200), 1.3 / 15, rel_tol=1e-12)
    # training A.acc alone: published charges one mean group (1 s); flops the whole forward, 5 MFLOP/sample
    cm_pub = out["published"][0].cost_model
    assert math.isclose(cm_pub.compute_s(1, [0], G_ACC_ONLY, 3200), 1.0, rel_tol=1e-12)
    assert math.isclose(s.cost_model.compute_s(1, [0], G_ACC_ONLY, 3200), 5e6 * 3200 / 3.2e9, rel_tol=1e-12)
    assert s.cost_model.compute_s(1, [], G_ACC_ONLY, 3200) == 0.0  # nothing to train, nothing run


@pytest.mark.parametrize(("model", "down"), [("published", 2 * 600), ("flops", 600 + 240)])
def test_download_bytes_by_cost_model(model: str, down: int) -> None:
    """skip-absent: the acc_only client needs 6 of the 15 groups (40 bytes each); the published model
    charges everyone the whole model; zero-filling strategies need every group under either."""
    s = make_strategy("skip-absent", context("skip-absent", TWO, SPEEDS, cost_model=model))
    plan = s.configure_round(2)
    ana = s.analytic(plan, s.notes(plan))
    assert ana.down_bytes == down
    assert math.isclose(ana.comm_s[1], 8 * ((down - 600 if model == "flops" else 600) + 240) / 1e12 + 0.05,
                        rel_tol=1e-12)
    z = make_strategy("fedavg-fair", context("fedavg-fair", TWO, SPEEDS, cost_model=model))
    p = z.configure_round(2)
    assert z.analytic(p, z.notes(p)).down_bytes == 1200


def test_analytic_round_default_is_the_published_model() -> None:
    s = make_strategy("relief", context("relief", TWO, SPEEDS))
    plan = s.configure_round(1)
    notes = s.notes(plan)
    a = analytic_round(s.ctx.groups, s.ctx.fleet, plan.alloc, notes.accessible, notes.samples)
    b = s.analytic(plan, notes)
    np.testing.assert_array_equal(a.compute_s, b.compute_s)
    np.testing.assert_allclose(a.compute_s, [15 * 0.1, 6 * 1.0], rtol=1e-12)
