"""The published RELIEF presets: weights, divergence and allocation, checked against NumPy and by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from relief_mpi.config import StrategyConfig
from relief_mpi.log.hdf5 import read_log
from relief_mpi.model.flops import FlopCosts
from relief_mpi.rounds import FleetInfo, GroupInfo, GroupSums, pack_update, update_len
from relief_mpi.strategy.base import StrategyContext
from relief_mpi.strategy.registry import make_strategy
from tests.helpers import FAST, SPAR_DIR, fast_config, need_shared, run_mpi

# Four modalities, the paper's 15 groups (sizes small: only the rules matter here).
NAMES = ("A.acc", "A.gyro", "A.mag", "A.ecg", "B", "E.acc.0", "E.acc.1", "E.gyro.0", "E.gyro.1", "E.mag.0",
         "E.mag.1", "E.ecg.0", "E.ecg.1", "H.0", "H.1")
KINDS = ("A",) * 4 + ("B",) + ("enc",) * 8 + ("head",) * 2
MODALITY = (0, 1, 2, 3, None, 0, 0, 1, 1, 2, 2, 3, 3, None, None)
SETS = (frozenset({0, 1, 2, 3}), frozenset({0, 1}), frozenset({0}), frozenset({0}))


def context(name: str, sets: tuple[frozenset[int], ...] = SETS, speed: float = 5e12) -> StrategyContext:
    g = GroupInfo(NAMES, KINDS, MODALITY, (3,) * 15, (2,) * 15, tuple(1e6 * (j + 1) for j in range(15)))
    k = len(sets)
    fleet = FleetInfo(sets, ("t",) * k, (speed,) * k, (20.0,) * k, (20.0,) * k, (25.0,) * k, (100,) * k, (5.0,) * k)
    costs = FlopCosts((1.0,) * 4, (1.0,) * 4, 1.0, 1.0, 32)
    return StrategyContext(StrategyConfig(name=name, local_epochs=1), g, fleet, costs, 4, 0, "cnn", 32)


def test_published_weights_by_hand() -> None:
    s = make_strategy("relief", context("relief"))
    plan = s.configure_round(1)  # the seeding round: every accessible group
    c = plan.coef
    np.testing.assert_allclose(c[:, 0], [1 / 4] * 4)  # A.acc: all four own acc and trained it
    np.testing.assert_allclose(c[:, 1], [1 / 2, 1 / 2, 0, 0])  # A.gyro: its two owners
    np.testing.assert_allclose(c[:, 2], [1, 0, 0, 0])
    np.testing.assert_allclose(c[:, 4], np.array([4, 2, 1, 1]) / 8)  # B: modality counts over all participants
    np.testing.assert_allclose(c[:, 13], [1 / 4] * 4)  # head: 1 / participants
    assert plan.plain[4] == 1 and plan.plain.sum() == 1  # only B's coefficients differ between uploaders
    fed = make_strategy("fedavg", context("fedavg")).configure_round(1)
    assert fed.alloc.all()  # whole model, zero-filled inputs
    np.testing.assert_allclose(fed.coef, 1 / 4)
    coh = make_strategy("cohort-fedavg", context("cohort-fedavg")).configure_round(1)
    assert coh.alloc.all()
    np.testing.assert_allclose(coh.coef[:, 1], [1 / 2, 1 / 2, 0, 0])  # non-owners train gyro but are not averaged
    np.testing.assert_allclose(coh.coef[:, 4], 1 / 4)  # B uniform


def test_divergence_from_reduced_sums_equals_the_zero_padded_formula() -> None:
    rng = np.random.default_rng(1)
    s = make_strategy("relief", context("relief"))
    deltas = {k: rng.normal(size=3) for k in (0, 1)}  # two of A.gyro's cohort of 2... and B's cohort of 4
    for j, coef in ((1, [0.5, 0.5]), (4, [4 / 8, 2 / 8])):
        plain = j == 4
        buf = sum(pack_update(deltas[k].astype(np.float32), 2, coef[k], plain) for k in (0, 1))
        sums = GroupSums.unpack(np.asarray(buf, np.float32), 3, plain)
        cohort = 2 if j == 1 else 4
        d = np.array([deltas[k][:2] for k in (0, 1)])
        mean = d.sum(0) / cohort
        expect = (((d - mean) ** 2).sum() + (cohort - 2) * (mean @ mean)) / cohort
        assert math.isclose(s.divergence(j, sums), expect, rel_tol=1e-5)
    assert update_len(3, True) == 10 and update_len(3, False) == 7


def test_relief_and_random_ablation_allocate_differently_and_acc_only_trains_its_a_group() -> None:
    allocs = {}
    for name in ("relief", "ablation-v3"):
        s = make_strategy(name, context(name))
        rounds = []
        for r in range(1, 8):
            plan = s.configure_round(r)
            rounds.append(plan.alloc.copy())
            sums = {j: GroupSums(np.full(3, 0.01 * (j + 1), np.float32), None, 1.0, 1.0, 1e-4 * (j + 1), 1e-4 * (j + 1))
                    for j in range(15) if plan.alloc[:, j].any()}
            s.aggregate(r, plan, [np.zeros(3, np.float32)] * 15, sums, np.ones(4))
        allocs[name] = np.array(rounds)
    rel = allocs["relief"]
    assert rel[1:, 2:, 0].all()  # acc_only clients always train A.acc (mandatory)
    assert (rel[1:, 2:].sum(axis=2) < rel[1:, 0].sum(axis=1, keepdims=True)).all()  # fewer groups than full
    assert not np.array_equal(allocs["relief"], allocs["ablation-v3"])


def test_round_robin_floor_brings_every_group_back_within_q_rounds() -> None:
    s = make_strategy("relief", context("relief"))
    seen = np.zeros((4, 15), bool)
    for r in range(1, 11):  # published rounds 0..9, Q = 9
        plan = s.configure_round(r)
        if r > 1:
            seen |= plan.alloc.astype(bool)
        sums = {j: GroupSums(np.zeros(3, np.float32), None, 1.0, 1.0, 0.0, 0.0) for j in range(15)}
        s.aggregate(r, plan, [np.zeros(3, np.float32)] * 15, sums, np.ones(4))
    acc = np.array([[MODALITY[j] is None or MODALITY[j] in SETS[k] for j in range(15)] for k in range(4)])
    assert np.array_equal(seen, acc)


def expected_coef(kind: str, modality: int | None, trainers: np.ndarray, sets: list[set[str]],
                  names: list[str]) -> np.ndarray:
    """The published weights, recomputed from the rules for the trainers of one group."""
    n = len(sets)
    out = np.zeros(n)
    if kind == "B" and modality is None:
        counts = np.array([len(s) for s in sets], float)
        out[trainers] = counts[trainers] / counts.sum()
    elif modality is None:
        out[trainers] = 1.0 / n
    else:
        owners = [k for k in trainers if names[modality] in sets[k]]
        out[owners] = 1.0 / len(owners) if owners else 0.0
    return out


@pytest.fixture(scope="module")
def paper_fleet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The suite's one real-fleet job: the paper fleet's 10 clients one per rank (11 ranks), RELIEF
    for 3 rounds on the narrow paper model (FAST), every client's deltas and the server's groups
    dumped. Both tests below read it: the log's groups, T* and budgets, and the aggregation and
    divergence recomputed from the dumps."""
    d = tmp_path_factory.mktemp("paper-fleet")
    dump = d / "dump"
    dump.mkdir()
    res = run_mpi(11, ["train", "--strategy", "relief", "--fleet", "paper", "--rounds", "3", *FAST,
                       "--quiet", "--out", str(d / "r.h5"), "--debug-dump", str(dump)], timeout=420)
    assert res.returncode == 0, res.stderr
    return d / "r.h5", dump


@pytest.mark.mpi
def test_mpi_aggregation_and_divergence_equal_numpy_on_the_dumped_deltas(paper_fleet_run: tuple[Path, Path]) -> None:
    path, dump = paper_fleet_run
    log = read_log(path)
    kinds = json.loads(log.attrs["group_kinds"])
    n_params = json.loads(log.attrs["group_n_params"])
    mods = json.loads(log.attrs["modalities"])
    profiles = json.loads(log.attrs["profiles"])
    sets = [set(p["modalities"]) for p in profiles]
    names = list(log.block_names)
    buffers_checked = untrained = 0
    for rnd in (1, 2, 3):
        alloc = log.alloc[rnd - 1]
        for g, name in enumerate(names):
            before = np.load(dump / f"r{rnd}-before-b{g}.npy").astype(np.float64)
            after = np.load(dump / f"r{rnd}-after-b{g}.npy").astype(np.float64)
            trainers = np.flatnonzero(alloc[:, g])
            modality = None if kinds[g] in ("head",) or name == "B" else mods.index(name.split(".")[1])
            coef = expected_coef(kinds[g], modality, trainers, sets, mods)
            uploaders = [k for k in trainers if coef[k] > 0]
            if not uploaders:
                untrained += 1
                assert np.array_equal(before, after), f"untrained group {name} changed in round {rnd}"
                continue
            rows = {k: np.load(dump / f"r{rnd}-c{k}-b{g}.npy").astype(np.float64) for k in uploaders}
            for k in uploaders:
                assert math.isclose(rows[k][-1], coef[k], rel_tol=1e-9), (name, k)
            new = before + sum(coef[k] * rows[k][:-1] for k in uploaders)
            np.testing.assert_allclose(after, new, rtol=1e-4, atol=1e-6, err_msg=f"{name} round {rnd}")
            if after.size > n_params[g] and not np.allclose(after[n_params[g]:], before[n_params[g]:]):
                buffers_checked += 1  # BatchNorm statistics moved, and by the published weights
            cohort = len(sets) if modality is None else sum(mods[modality] in s for s in sets)
            d = np.array([rows[k][:n_params[g]] for k in uploaders])
            mean = d.sum(0) / cohort
            div = (((d - mean) ** 2).sum() + (cohort - len(uploaders)) * (mean @ mean)) / cohort
            assert math.isclose(log.divergence[rnd - 1, g], div, rel_tol=1e-3, abs_tol=1e-12), (name, rnd)
            for k in set(range(len(sets))) - set(uploaders):
                assert not (dump / f"r{rnd}-c{k}-b{g}.npy").exists(), "a client sent a group it did not upload"
    assert buffers_checked > 0 and untrained > 0


@pytest.mark.mpi
def test_mpirun_11_relief_on_the_paper_fleet_logs_groups_t_star_and_budgets(paper_fleet_run: tuple[Path, Path],
                                                                            tmp_path: Path) -> None:
    log = read_log(paper_fleet_run[0])
    assert len(log.block_names) == 15 and log.block_names[0] == "A.acc"
    assert math.isnan(log.rounds["t_star"][0]) and np.isfinite(log.rounds["t_star"][1:]).all()
    tiers = [p["tier"] for p in json.loads(log.attrs["profiles"])]
    assert tiers == ["full"] * 3 + ["acc_gyro"] * 3 + ["acc_only"] * 4
    alloc = log.alloc[1:]  # after the seeding round
    acc_only = [k for k, t in enumerate(tiers) if t == "acc_only"]
    full = [k for k, t in enumerate(tiers) if t == "full"]
    assert alloc[:, acc_only, 0].all()  # A.acc, every round
    assert alloc[:, acc_only].sum(axis=2).max() < alloc[:, full].sum(axis=2).min()
    assert (log.clients["budget"][1:] >= 1).all()
    assert np.isfinite(log.rounds["analytic_time_s"]).all() and (log.rounds["analytic_energy_j"] > 0).all()
    from relief_mpi.config import DeviceConfig
    from relief_mpi.run import run_inprocess

    # the random ablation on the same fleet, model and seed allocates otherwise
    run_inprocess(fast_config(3, "ablation-v3", device=DeviceConfig(fleet="paper")), 10, tmp_path / "v3.h5")
    assert not np.array_equal(read_log(tmp_path / "v3.h5").alloc, log.alloc)


@pytest.mark.mpi
def test_one_client_per_rank_under_mpiexec_gives_the_in_process_numbers(paper_fleet_run: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    """The 11-rank job (one client per rank) against the same run in one process."""
    from relief_mpi.config import DeviceConfig
    from relief_mpi.run import run_inprocess

    run_inprocess(fast_config(3, "relief", device=DeviceConfig(fleet="paper")), 10, tmp_path / "ip.h5")
    a, b = read_log(paper_fleet_run[0]), read_log(tmp_path / "ip.h5")
    for field in ("accuracy", "macro_f1", "rare_f1", "virtual_time_s", "bytes_up", "bytes_down", "energy_j"):
        np.testing.assert_allclose(a.rounds[field], b.rounds[field], rtol=1e-5, atol=1e-6, err_msg=field)
    for metric in ("busy_s", "steps", "samples", "bytes_up", "loss"):
        np.testing.assert_allclose(a.clients[metric], b.clients[metric], rtol=1e-4, atol=1e-6, err_msg=metric)
    np.testing.assert_array_equal(a.alloc, b.alloc)
    lib = a.attrs["mpi_library"]
    assert a.attrs["world_size"] == 11 and ("MPICH" in lib or "Open MPI" in lib), (a.attrs["world_size"], lib)


@pytest.mark.mpi
def test_relief_runs_on_spar_with_the_paper_model(tmp_path: Path) -> None:
    need_shared()
    # the production model (64,128 channels) for the 10 clients an 11-rank job has, on 2 client
    # ranks: the same numbers as one per rank (tests/comm/test_many_clients.py), 8 fewer processes
    res = run_mpi(3, ["train", "--strategy", "relief", "--dataset", "spar", "--data-dir", str(SPAR_DIR),
                      "--clients", "10", "--rounds", "2", "--local-epochs", "1", "--quiet",
                      "--out", str(tmp_path / "s.h5")], timeout=420)
    assert res.returncode == 0, res.stderr
    log = read_log(tmp_path / "s.h5")
    assert log.block_names[:2] == ["A.acc", "A.gyro"] and np.isfinite(log.rounds["macro_f1"]).all()
