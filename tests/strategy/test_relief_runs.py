"""RELIEF end to end: our variant reduces to FedAvg without heterogeneity and honours its deadline;
under MPI the low tier trains and sends less (published RELIEF and ours, CNN and LoRA)."""

from pathlib import Path

import numpy as np
import pytest

from relief_mpi.config import DeviceConfig, ModelConfig, RunConfig, StrategyConfig
from relief_mpi.debug import DebugHooks
from relief_mpi.log.hdf5 import read_log
from relief_mpi.run import run_inprocess
from tests.helpers import FAST, SPAR_DIR, need_shared, run_mpi

NARROW = ModelConfig(encoder_channels=(8, 16))


def test_relief_equals_fedavg_when_everyone_has_everything(tmp_path: Path) -> None:
    fleet = tmp_path / "all.toml"
    fleet.write_text('[[tier]]\nname = "all"\nprofile = "jetson-orin-nano"\nsensors = "all"\nfraction = 1.0\n')
    finals = {}
    for name in ("fedavg-sgd", "relief-ucb"):
        dump = tmp_path / name
        dump.mkdir()
        cfg = RunConfig(rounds=2, seed=1, strategy=StrategyConfig(name=name, local_steps=3, deadline="none", lr=0.05),
                        model=NARROW, device=DeviceConfig(fleet=str(fleet)))
        run_inprocess(cfg, 3, tmp_path / f"{name}.h5", debug=DebugHooks(dump_dir=str(dump)))
        finals[name] = [np.load(p) for p in sorted(dump.glob("r2-after-b*.npy"))]
    assert len(finals["relief-ucb"]) == 15  # the paper model's groups
    for a, b in zip(finals["fedavg-sgd"], finals["relief-ucb"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    fa, re = read_log(tmp_path / "fedavg-sgd.h5"), read_log(tmp_path / "relief-ucb.h5")
    np.testing.assert_allclose(fa.rounds["macro_f1"], re.rounds["macro_f1"], atol=1e-6)


def span(run) -> np.ndarray:
    return run.clients["download_s"] + run.clients["busy_s"] + run.clients["upload_s"]


def test_deadline_stops_slow_clients_early(tmp_path: Path) -> None:
    free = RunConfig(rounds=1, seed=0, model=NARROW,
                     strategy=StrategyConfig(name="relief-ucb", local_steps=20, deadline="none", lr=0.05))
    run_inprocess(free, 4, tmp_path / "free.h5")
    # So short that the slowest client cannot fit 20 steps even of the shared block alone.
    deadline = float(span(read_log(tmp_path / "free.h5")).max()) / 8
    cfg = RunConfig(rounds=2, seed=0, model=NARROW,
                    strategy=StrategyConfig(name="relief-ucb", local_steps=20, deadline=str(deadline), lr=0.05))
    run_inprocess(cfg, 4, tmp_path / "d.h5")
    run = read_log(tmp_path / "d.h5")
    steps = run.clients["steps"]
    assert np.all((span(run) <= deadline + 1e-6) | (steps == 1)), "only a single step may overrun"
    assert np.allclose(run.rounds["deadline_s"], deadline)
    assert run.clients["steps"].min() < 20
    assert np.all(run.clients["samples"] == run.clients["steps"] * 32)


def test_client_stops_at_the_deadline_and_reports_the_steps_done() -> None:
    from relief_mpi.rounds import REPORT_INDEX, RoundPlan
    from relief_mpi.run_setup import build_setup

    setup = build_setup(RunConfig(seed=0, model=NARROW, strategy=StrategyConfig(name="relief-ucb", lr=0.05)), 4)
    low = next(d.client for d in setup.devices if d.tier == "low")
    trainer = setup.trainer(low)
    own = setup.strategy.ownership()
    blocks = {b: setup.registry.get(setup.make_model(), b) for b in range(len(setup.registry)) if own[low, b]}
    alloc = own.astype(np.uint8)

    def plan(deadline: float) -> RoundPlan:
        return RoundPlan(1, alloc, alloc.astype(np.float64), np.full(4, 100, np.int64), deadline,
                         np.zeros(alloc.shape[1], np.uint8))

    _, free = trainer.train(plan(float("inf")), blocks)
    transfers = free[REPORT_INDEX["download_s"]] + free[REPORT_INDEX["upload_s"]]
    step_s = free[REPORT_INDEX["busy_s"]] / free[REPORT_INDEX["steps"]]  # the emulated time of one step on this device
    # Optimistic plan: 100 steps, but a deadline with room for the transfers and about 12 steps.
    plan_ = plan(transfers + 12.5 * step_s)
    updates, report = trainer.train(plan_, blocks)
    steps = report[REPORT_INDEX["steps"]]
    assert 1 <= steps < 100
    assert report[REPORT_INDEX["samples"]] == steps * 32
    for buf in updates.values():
        assert buf[-4] == steps * 32  # the update is weighted by the samples actually processed
    assert 10 <= steps <= 13
    used = report[REPORT_INDEX["download_s"]] + report[REPORT_INDEX["busy_s"]] + report[REPORT_INDEX["upload_s"]]
    assert used <= plan_.deadline_s


def tier_mean(run, metric: str, tier: str) -> float:
    cols = [p["client"] for p in run.profiles if p["tier"] == tier]
    return float(run.clients[metric][:, cols].mean())


@pytest.mark.mpi
@pytest.mark.parametrize(("strategy", "mode", "dataset"),
                         [("relief", "cnn", "synthetic"), ("relief-ucb", "lora", "spar")])
def test_mpirun_low_tier_trains_and_sends_less(tmp_path: Path, strategy: str, mode: str, dataset: str) -> None:
    extra = ["--dataset", "spar", "--data-dir", str(SPAR_DIR)] if dataset == "spar" else []
    if dataset == "spar":
        need_shared()
    log = tmp_path / "r.h5"
    # the 6 clients (2 high, 1 mid, 3 low) of a 7-rank job, on 2 client ranks: the same numbers
    # as one client per rank (tests/comm/test_many_clients.py)
    res = run_mpi(3, ["train", "--strategy", strategy, "--mode", mode, "--clients", "6", "--rounds", "3",
                      "--local-steps", "3", *FAST, "--quiet", "--out", str(log), *extra], timeout=420)
    assert res.returncode == 0, res.stderr
    run = read_log(log)
    assert len(run.rounds) == 3 and np.all(np.isfinite(run.rounds["macro_f1"]))
    assert tier_mean(run, "bytes_up", "low") < tier_mean(run, "bytes_up", "high")
    assert tier_mean(run, "n_groups", "low") < tier_mean(run, "n_groups", "high")
    # Never a group of a modality the client lacks (group names: A.<m>, B, E.<m>.<stage>, H.<l>).
    for p in run.profiles:
        for b, name in enumerate(run.block_names):
            parts = name.split(".")
            if parts[0] in ("A", "E") and parts[1] not in p["modalities"]:
                assert run.alloc[:, p["client"], b].sum() == 0, (p["client"], name)


def test_relief_shortens_the_low_tier_straggler(tmp_path: Path) -> None:
    busy = {}
    for name in ("fedavg-sgd", "relief-ucb"):
        cfg = RunConfig(rounds=1, seed=0, model=NARROW, strategy=StrategyConfig(name=name, local_steps=5, lr=0.05))
        run_inprocess(cfg, 4, tmp_path / f"{name}.h5")
        run = read_log(tmp_path / f"{name}.h5")
        busy[name] = (tier_mean(run, "busy_s", "low"), float(run.rounds["virtual_time_s"][0]))
    assert busy["relief-ucb"][0] < busy["fedavg-sgd"][0]
    assert busy["relief-ucb"][1] < busy["fedavg-sgd"][1]


def test_heterofl_gives_the_widest_model_to_the_fastest_tier(tmp_path: Path) -> None:
    from relief_mpi.run_setup import build_setup

    fleet = tmp_path / "f.toml"
    fleet.write_text('[[tier]]\nname = "low"\nprofile = "raspberry-pi-4"\nsensors = ["acc"]\nfraction = 0.5\n'
                     '[[tier]]\nname = "high"\nprofile = "jetson-agx-orin"\nfraction = 0.5\n')
    setup = build_setup(RunConfig(model=ModelConfig(model="small"), strategy=StrategyConfig(name="heterofl"),
                                  device=DeviceConfig(fleet=str(fleet))), 4)
    widths = {d.tier: setup.strategy.recipe(d.client).width for d in setup.devices}
    assert widths == {"low": 0.5, "high": 1.0}
