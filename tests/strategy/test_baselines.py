"""Our SGD baselines' numbers: HeteroFL's per-entry averaging by hand, FedProx at mu = 0 is
FedAvg exactly, and relief-ucb-random's random stream survives a checkpoint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from relief_mpi.checkpoint import checkpoint_path, load_checkpoint
from relief_mpi.config import ModelConfig, StrategyConfig
from relief_mpi.log.hdf5 import read_log
from relief_mpi.model.flops import FlopCosts
from relief_mpi.rounds import FleetInfo, GroupInfo, GroupSums, pack_update
from relief_mpi.run import run_inprocess
from relief_mpi.strategy.base import StrategyContext
from relief_mpi.strategy.heterofl import HeteroFL
from tests.helpers import fast_config

SAME = ("accuracy", "macro_f1", "train_loss", "virtual_time_s", "bytes_up", "energy_j")


def heterofl_context() -> StrategyContext:
    """Two clients with every sensor: a fast one (width 1) and a slow one (width 0.5); one modality
    block of 4 entries and a shared block of 2."""
    groups = GroupInfo(("acc", "shared"), ("block", "shared"), (0, None), (4, 2), (4, 2), (0.0, 0.0))
    fleet = FleetInfo((frozenset({0}),) * 2, ("fast", "slow"), (2e9, 1e9), (1e3,) * 2, (1e3,) * 2, (0.0,) * 2,
                      (100, 100))
    cfg = StrategyConfig(name="heterofl", local_steps=2, heterofl_widths=(1.0, 0.5))
    return StrategyContext(cfg, groups, fleet, FlopCosts((1.0,), (1.0,), 1.0, 1.0, 32), 1, 0)


def test_heterofl_averages_each_entry_over_the_clients_whose_submodel_holds_it() -> None:
    s = HeteroFL(heterofl_context())
    assert [s.recipe(k).width for k in (0, 1)] == [1.0, 0.5]
    s.set_entry_masks({1.0: [np.ones(4), np.ones(2)], 0.5: [np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 0.0])]})
    plan = s.configure_round(1)
    samples = np.array([32.0, 64.0])
    deltas = {0: [np.array([1, 2, 3, 4], np.float32), np.array([10, 20, 0, 0], np.float32)],
              1: [np.array([1, 1], np.float32), np.array([4, 0], np.float32)]}
    sums = {}
    for b, ds in deltas.items():
        buf = sum(pack_update(d, d.size, float(samples[k]), False) for k, d in enumerate(ds))
        sums[b] = GroupSums.unpack(buf, ds[0].size, False)
    groups = [np.zeros(4, np.float32), np.full(2, 5.0, np.float32)]
    new = s.aggregate(1, plan, groups, sums, samples).groups
    # Block: entries 0-1 over both clients, (32 d1 + 64 d2) / 96; entries 2-3 over the fast one only.
    np.testing.assert_allclose(new[0], [(32 + 640) / 96, (64 + 1280) / 96, 3.0, 4.0], rtol=1e-6)
    # Shared: entry 0 over both (32 + 256) / 96 = 3; entry 1 over the fast one (32 / 32 = 1).
    np.testing.assert_allclose(new[1], [5.0 + 3.0, 5.0 + 1.0], rtol=1e-6)
    assert groups[0].tolist() == [0, 0, 0, 0], "aggregate must not modify the groups it is given"


def test_fedprox_with_mu_0_is_fedavg_and_with_mu_above_0_is_not(tmp_path: Path) -> None:
    logs = {}
    for name, mu in (("fedavg-sgd", 0.01), ("fedprox", 0.0), ("fedprox", 1.0)):
        out = tmp_path / f"{name}-{mu}.h5"
        run_inprocess(fast_config(2, name, seed=4, local_steps=3, lr=0.05, mu=mu), 3, out)
        logs[(name, mu)] = read_log(out)
    base, zero, prox = logs[("fedavg-sgd", 0.01)], logs[("fedprox", 0.0)], logs[("fedprox", 1.0)]
    for f in SAME:
        np.testing.assert_array_equal(base.rounds[f], zero.rounds[f], err_msg=f)
    assert not np.array_equal(base.clients["loss"][1], prox.clients["loss"][1])


def test_relief_ucb_random_resumes_with_the_same_random_draws(tmp_path: Path) -> None:
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    # The small model with two blocks per modality: at a 0.35 s deadline a low-tier client affords
    # one of its two acc blocks (0.21 s for the shared block, +0.11 s for either), drawn at random.
    cfg = replace(fast_config(4, "relief-ucb-random", seed=2, local_steps=2, lr=0.05, deadline="0.35"),
                  model=ModelConfig(model="small", groups_per_modality=2))
    run_inprocess(cfg, 4, full)
    run_inprocess(replace(cfg, rounds=2, checkpoint_every=1), 4, part)
    run_inprocess(replace(cfg, checkpoint_every=1), 4, part, resume=load_checkpoint(checkpoint_path(part)))
    a, b = read_log(full), read_log(part)
    assert list(b.rounds["round"]) == [1, 2, 3, 4]
    assert len({x.tobytes() for x in a.alloc}) > 1, "the draws should vary between rounds, or this test shows nothing"
    np.testing.assert_array_equal(a.alloc, b.alloc)
    for f in SAME:
        np.testing.assert_array_equal(a.rounds[f], b.rounds[f], err_msg=f)
