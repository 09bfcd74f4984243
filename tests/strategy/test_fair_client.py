"""Issue 16, property 2, on a real client: an acc_only client under the published FedAvg moves the gyro
encoder and its BatchNorm statistics (trained on zeros); under fedavg-fair and skip-absent it leaves
them exactly as it received them and uploads nothing of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relief_mpi.client import ClientRole, LocalTrainer
from relief_mpi.config import StrategyConfig
from relief_mpi.data.base import DatasetSpec, Modality, WindowSet
from relief_mpi.device.clock import DeviceClock
from relief_mpi.device.profiles import load_profiles
from relief_mpi.model.flops import group_flops, measure_costs
from relief_mpi.model.groups import GroupRegistry
from relief_mpi.model.paper import PaperNet
from relief_mpi.rounds import FleetInfo, GroupInfo
from relief_mpi.strategy.base import StrategyContext
from relief_mpi.strategy.registry import make_strategy

SPEC = DatasetSpec("tiny", ("a", "b", "c"), (Modality("acc", (0, 1, 2)), Modality("gyro", (3, 4, 5))), 50.0,
                   tuple(f"c{i}" for i in range(6)))
LEN, N, BATCH = 16, 24, 8
ACC_ONLY = 1  # client 0 has both sensors, client 1 the accelerometer only


def world(name: str) -> tuple[LocalTrainer, GroupRegistry, dict[int, np.ndarray], object]:
    torch.manual_seed(0)
    model = PaperNet([3, 3], 3, rho=4)
    reg = GroupRegistry(model, ("acc", "gyro"), "cnn")
    costs = measure_costs(model, [3, 3], LEN, BATCH)
    groups = GroupInfo(reg.names, reg.kinds, tuple(reg.modality), reg.sizes, reg.n_params,
                       group_flops(model, reg, [3, 3], LEN))
    sets = (frozenset({0, 1}), frozenset({0}))
    fleet = FleetInfo(sets, ("full", "acc_only"), (5e12, 5e12), (20.0,) * 2, (20.0,) * 2, (25.0,) * 2, (N, N))
    ctx = StrategyContext(StrategyConfig(name=name, local_epochs=1), groups, fleet, costs, 2, 0, "cnn", BATCH)
    strategy = make_strategy(name, ctx)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 6, LEN)).astype(np.float32)
    x[:, 3:, :] = 0.0  # the client has no gyroscope: its gyro channels are zeros, as the data pipeline gives them
    data = WindowSet(x, rng.integers(0, 3, N), np.zeros(N, np.int64))
    role = ClientRole(ACC_ONLY, sets[ACC_ONLY], strategy.recipe(ACC_ONLY), BATCH, 0)
    clock = DeviceClock(load_profiles()["paper-acc-only"], "virtual")
    trainer = LocalTrainer(role, PaperNet([3, 3], 3, rho=4), reg, SPEC, data, clock, costs, strategy.ownership())
    own = strategy.ownership()
    blocks = {b: reg.get(model, b) for b in range(len(reg)) if own[ACC_ONLY, b]}
    return trainer, reg, blocks, strategy


def gyro_groups(reg: GroupRegistry) -> list[int]:
    return [b for b in range(len(reg)) if reg.modality_of(b) == 1]


def test_published_fedavg_trains_the_gyro_encoder_and_its_batchnorm_on_zeros() -> None:
    trainer, reg, blocks, strategy = world("fedavg")
    plan = strategy.configure_round(2)
    updates, _ = trainer.train(plan, blocks)
    enc = [b for b in gyro_groups(reg) if reg.kinds[b] == "enc"]
    assert set(gyro_groups(reg)) <= set(updates)  # uploaded, with the 1/N weight
    for b in enc:
        delta = reg.get(trainer.model, b).astype(np.float64) - blocks[b]
        assert np.abs(delta[:reg.n_params[b]]).max() > 0  # conv and BN affine weights moved
        assert np.abs(delta[reg.n_params[b]:]).max() > 0  # and the running statistics


@pytest.mark.parametrize("name", ["fedavg-fair", "skip-absent"])
def test_fair_variants_leave_the_gyro_encoder_and_its_batchnorm_untouched(name: str) -> None:
    trainer, reg, blocks, strategy = world(name)
    plan = strategy.configure_round(2)
    updates, _ = trainer.train(plan, blocks)
    gyro = gyro_groups(reg)
    assert not set(gyro) & set(updates)
    for b in gyro:
        if b in blocks:  # fedavg-fair received them (its zero-filled forward needs them); skip-absent did not
            assert np.array_equal(reg.get(trainer.model, b), blocks[b]), reg.names[b]
    assert (name == "fedavg-fair") == all(b in blocks for b in gyro)
    acc = [b for b in range(len(reg)) if reg.modality_of(b) == 0 and reg.kinds[b] == "enc"]
    assert all(not np.array_equal(reg.get(trainer.model, b), blocks[b]) for b in acc)  # it did train
