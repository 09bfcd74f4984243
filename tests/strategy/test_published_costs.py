"""The analytic payload, T_o, round time, energy and % trained are the authors' on SPAR (their
relief/fl/system.py and server.py: a group's values are its parameters and every buffer,
BatchNorm's num_batches_tracked included, 4 bytes each; % trained = those values over the
model's parameters, mean over the clients). Every expected number is computed here by hand from
the paper model's shapes and the published formulas, not by our code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from relief_mpi.cli.options import build_config
from relief_mpi.cli.train import train
from relief_mpi.run_setup import build_setup
from relief_mpi.strategy import budget
from relief_mpi.strategy.system import CostModel, analytic_round
from tests.helpers import SPAR_DIR, need_shared

# The paper CNN on SPAR (acc 3 ch, gyro 3 ch, 256 samples, 7 classes), by hand:
# A.m = 8 x 128; B = 128 x 8 + bias 128; E.m.0 = conv 3->64 k5 (960 + 64) + BN 64 + 64, buffers
# running mean / var 64 + 64 and num_batches_tracked 1; E.m.1 = conv 64->128 k5 (40960 + 128) + BN
# 128 + 128, buffers 128 + 128 + 1; H.0 = 128 x 64 + 64; H.1 = 64 x 7 + 7.
NAMES = ("A.acc", "A.gyro", "B", "E.acc.0", "E.acc.1", "E.gyro.0", "E.gyro.1", "H.0", "H.1")
PARAMS = (1024, 1024, 1152, 1152, 41344, 1152, 41344, 8256, 455)
AUTHORS_VALUES = (1024, 1024, 1152, 1152 + 129, 41344 + 257, 1152 + 129, 41344 + 257, 8256, 455)
# forward MACs per sample: conv 256 x 64 x 3 x 5, then (pooled to 128) 128 x 128 x 64 x 5; A_m and B 8 x 128
MACS = (1024, 1024, 1024, 245760, 5242880, 245760, 5242880, 128 * 64, 64 * 7)
FULL = dict(flops=275e12, watts=60.0, mbps=100.0)
ACC_ONLY = dict(flops=5e12, watts=5.0, mbps=20.0)
E = 5


@pytest.fixture(scope="module")
def spar():  # noqa: ANN201
    need_shared()
    with train.make_context("train", ["--protocol", "paper", "--dataset", "spar", "--data-dir", str(SPAR_DIR),
                                      "--strategy", "relief", "--split", "paper"]) as ctx:
        cfg = build_config(dict(ctx.params))
    return build_setup(cfg, 10)


def hand_round(n_train: list[int], chosen: list[list[int]], accessible: list[list[int]]) -> dict[str, float]:
    """The authors' SystemModel.round_cost and overhead, and their trained_pct, for SPAR's 5 full
    and 5 acc_only clients (in that order)."""
    dev = [FULL] * 5 + [ACC_ONLY] * 5
    down = 4 * sum(AUTHORS_VALUES)
    total_params = sum(PARAMS)

    def comm(n: int, groups: list[int]) -> float:
        return 8.0 * (down + 4 * sum(AUTHORS_VALUES[j] for j in groups)) / (dev[n]["mbps"] * 1e6) + 0.05

    tau = [sum(6 * MACS[j] * E * n_train[n] / dev[n]["flops"] for j in accessible[n]) / len(accessible[n])
           for n in range(10)]
    compute = [len(chosen[n]) * tau[n] for n in range(10)]
    comms = [comm(n, chosen[n]) for n in range(10)]
    t_round = max(c + m for c, m in zip(compute, comms, strict=True))
    energy = sum(dev[n]["watts"] * compute[n] + 0.5 * dev[n]["watts"] * comms[n]
                 + 0.2 * dev[n]["watts"] * max(t_round - compute[n] - comms[n], 0.0) for n in range(10))
    trained = float(np.mean([sum(AUTHORS_VALUES[j] for j in chosen[n]) / total_params for n in range(10)]))
    return {"t_o": max(comm(n, accessible[n]) for n in range(10)), "time": t_round, "energy": energy,
            "trained_pct": 100.0 * trained, "down": 10.0 * down,
            "up": float(sum(4 * sum(AUTHORS_VALUES[j] for j in chosen[n]) for n in range(10)))}


def test_groups_count_what_the_authors_count(spar) -> None:  # noqa: ANN001
    g = spar.strategy.ctx.groups
    assert g.names == NAMES and g.n_params == PARAMS and g.counted == AUTHORS_VALUES
    assert g.n_model_params == sum(PARAMS) == 96903
    assert [f / 6 for f in g.flops] == list(MACS)
    assert 4 * sum(g.counted) == 390_700  # the authors' download; our wire carries 390,684 bytes


FULL_ACC = [list(range(9))] * 5 + [[0, 2, 3, 4, 7, 8]] * 5  # every accessible group (round 0)


@pytest.mark.parametrize("case", ["round 0", "elastic"])
def test_analytic_round_is_the_authors_system_model(spar, case: str) -> None:  # noqa: ANN001
    fleet, g = spar.strategy.ctx.fleet, spar.strategy.ctx.groups
    assert fleet.tiers == ("full",) * 5 + ("acc_only",) * 5
    n_train = list(fleet.n_train)
    chosen = FULL_ACC if case == "round 0" else [[0, 1, 2, 4, 7]] * 5 + [[0]] * 5
    alloc = np.zeros((10, 9), bool)
    for n, s in enumerate(chosen):
        alloc[n, s] = True
    want = hand_round(n_train, chosen, FULL_ACC)
    ana = analytic_round(g, fleet, alloc, FULL_ACC, [E * n for n in n_train])
    t_o = CostModel(g, fleet).overhead(FULL_ACC)
    for name, got in (("t_o", t_o), ("time", ana.time_s), ("energy", ana.energy_j),
                      ("trained_pct", 100.0 * ana.trained_fraction), ("down", ana.down_bytes), ("up", ana.up_bytes)):
        assert math.isclose(got, want[name], rel_tol=1e-9), (name, got, want[name])
    if case == "round 0":  # the figures the side-by-side run showed: 78.14 (theirs) against 77.54 (ours)
        assert round(100.0 * ana.trained_fraction, 2) == 78.14
        assert round(100.0 * ana.trained_param_fraction, 2) == 77.54


def test_fedavg_trains_more_than_100_percent_as_published(spar) -> None:  # noqa: ANN001
    fleet, g = spar.strategy.ctx.fleet, spar.strategy.ctx.groups
    everything = [list(range(9))] * 10
    ana = analytic_round(g, fleet, np.ones((10, 9), bool), everything, [E * n for n in fleet.n_train])
    assert math.isclose(100.0 * ana.trained_fraction, 100.0 * sum(AUTHORS_VALUES) / sum(PARAMS), rel_tol=1e-12)
    assert round(100.0 * ana.trained_fraction, 1) == 100.8 and ana.trained_param_fraction == 1.0


def test_widened_bracket_gives_the_authors_budgets_on_spar() -> None:
    """SPAR, E = 1: the authors' simulator with its widened search gave the fast tier k_n 38-78;
    contains-overhead gives 43-88 (the side-by-side run of issue 23). By hand, the widened search
    converges on T_o + max_n k_min tau_n (the acc_only clients' one A group)."""
    need_shared()
    with train.make_context("train", ["--protocol", "paper", "--dataset", "spar", "--data-dir", str(SPAR_DIR),
                                      "--strategy", "relief", "--split", "paper", "--local-epochs", "1"]) as ctx:
        cfg = build_config(dict(ctx.params))
    setup = build_setup(cfg, 10)
    g, fleet = setup.strategy.ctx.groups, setup.strategy.ctx.fleet
    cost = CostModel(g, fleet)
    taus = [cost.tau(k, FULL_ACC[k], fleet.n_train[k]) for k in range(10)]
    t_o = cost.overhead(FULL_ACC)
    k_min, n_g = [2] * 5 + [1] * 5, [9] * 5 + [6] * 5
    ranges = {}
    for bracket in ("contains-overhead", "widened"):
        t_f = budget.search_t_star(t_o, taus, k_min, n_g, bracket=bracket)
        ks = [budget.elastic_budget(t_f, t_o, taus[k], k_min[k]) for k in range(10)]
        assert ks[5:] == [1] * 5  # acc_only: k_min
        ranges[bracket] = (min(ks[:5]), max(ks[:5]))
        if bracket == "widened":
            assert math.isclose(t_f, t_o + max(k * t for k, t in zip(k_min, taus, strict=True)), rel_tol=1e-7)
    assert ranges == {"contains-overhead": (43, 88), "widened": (38, 78)}
