"""Several clients per rank: placement and cohorts by hand, the real MPI transport's cohorts and
per-rank sums on hand-made buffers, and the same seed giving the same numbers with 1, 2 and 4
clients per rank for every strategy (in-process, and under mpiexec for two)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from relief_mpi.comm.placement import buckets, by_rank, clients_of, host_rank, members
from relief_mpi.config import RunConfig
from relief_mpi.log.hdf5 import RunLog, read_log
from relief_mpi.run import run_inprocess
from relief_mpi.strategy.registry import strategy_classes
from tests.helpers import REPO, mpi_command, mpi_env, run_mpi

ROUND_FIELDS = ("accuracy", "macro_f1", "rare_f1", "own_macro_f1", "train_loss", "bytes_up", "bytes_down",
                "virtual_time_s", "energy_j", "rejected")
CLIENT_FIELDS = ("loss", "samples", "steps", "bytes_up", "bytes_down", "busy_s", "flops")
# Two rounds (every strategy plans and aggregates twice) on 12.5 Hz windows, one local epoch in
# batches of 128 (2 or 3 steps per client for the epoch-based presets; 1 for the step-based ones).
TINY = ["--rounds", "2", "--eval-every", "2", "--downsample", "4", "--local-epochs", "1", "--local-steps", "1",
        "--batch-size", "128", "--encoder-channels", "4,8", "--seed", "5", "--quiet"]


def tiny_config(strategy: str) -> RunConfig:
    model: dict[str, object] = {"encoder_channels": [4, 8]}
    if strategy == "b-block":
        model["b_mode"] = "block"
    if strategy == "heterofl":
        model = {"model": "small"}
    return RunConfig.from_dict({"rounds": 2, "seed": 5, "eval_every": 2, "data": {"downsample": 4}, "model": model,
                                "strategy": {"name": strategy, "local_steps": 1, "local_epochs": 1, "batch_size": 128}})


_LOGS: dict[tuple[str, int], Path] = {}


def inprocess_log(factory: pytest.TempPathFactory, strategy: str, n_ranks: int) -> RunLog:
    """run_inprocess(tiny_config(strategy), 4 clients, n_ranks), once per session: the MPI tests
    compare with the 1-per-rank run that test_same_numbers_with_1_2_4_clients_per_rank makes."""
    key = (strategy, n_ranks)
    if key not in _LOGS:
        out = factory.mktemp(f"ip-{strategy}-{n_ranks}") / "ip.h5"
        run_inprocess(tiny_config(strategy), 4, out, n_ranks=n_ranks)
        _LOGS[key] = out
    return read_log(_LOGS[key])


def assert_same(a: RunLog, b: RunLog, rtol: float = 0.0) -> None:
    """Bit for bit (rtol 0), or to float tolerance."""
    for f in ROUND_FIELDS:
        np.testing.assert_allclose(a.rounds[f], b.rounds[f], rtol=rtol, atol=0, err_msg=f)
    for f in CLIENT_FIELDS:
        np.testing.assert_allclose(a.clients[f], b.clients[f], rtol=rtol, atol=0, err_msg=f)
    # divergence is a variance from sums (E|d|^2 - |E d|^2): under tolerance its cancellation needs an absolute one
    np.testing.assert_allclose(a.divergence, b.divergence, rtol=rtol, atol=1e-6 if rtol else 0)
    np.testing.assert_array_equal(a.alloc, b.alloc)


def test_placement_and_cohorts_by_hand() -> None:
    # 7 clients on 3 client ranks, round robin
    assert [host_rank(k, 3) for k in range(7)] == [1, 2, 3, 1, 2, 3, 1]
    assert [clients_of(r, 7, 3) for r in (1, 2, 3)] == [[0, 3, 6], [1, 4], [2, 5]]
    own = np.zeros((7, 3), bool)
    own[:, 0] = True  # everyone's
    own[[3, 6], 1] = True  # only rank 1's clients
    own[[4, 5], 2] = True  # clients on ranks 2 and 3
    ranks = by_rank(own, 3)
    np.testing.assert_array_equal(ranks, [[1, 1, 0], [1, 0, 1], [1, 0, 1]])
    keys = [members(ranks[:, b]) for b in range(3)]
    assert keys == [(0, 1, 2, 3), (0, 1), (0, 2, 3)]
    assert members(np.zeros(3, bool)) is None
    own[:, 2] = True  # group 2 now shares group 0's members: one collective for both
    assert buckets([members(c) for c in by_rank(own, 3).T]) == [((0, 1, 2, 3), (0, 2)), ((0, 1), (1,))]


@pytest.mark.mpi
@pytest.mark.parametrize("collectives", ["persistent", "fallback"])
def test_cohort_communicators_and_per_rank_sums_through_mpi(collectives: str) -> None:
    """5 clients on 3 client ranks (tests/comm/mpi_probe.py): each cohort communicator holds the
    server and exactly the ranks hosting an owner, groups with one member set share it, and the
    server receives the sum over every uploader although ranks 1 and 2 host two clients each; in
    every round (a repeated plan with new values, new uploaders, a longer buffer on the same
    communicator and back), with the persistent collectives and with the per-round nonblocking
    ones an MPI without MPI-4 gets."""
    cmd = mpi_command(4, [])
    cmd = cmd[:cmd.index(sys.executable) + 1] + ["-m", "tests.comm.mpi_probe", collectives]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env=mpi_env())
    assert res.returncode == 0, res.stderr
    lines = set(res.stdout.splitlines())
    for rank in (0, 1, 2, 3):
        assert f"rank {rank} cohort [0, 3] members [0, 1, 2, 3]" in lines
    for rank in (0, 1):
        assert f"rank {rank} cohort [1] members [0, 1]" in lines
    for rank in (0, 2, 3):
        assert f"rank {rank} cohort [2] members [0, 2, 3]" in lines
    assert not any(f"rank {r} cohort [1]" in ln for r in (2, 3) for ln in lines)
    assert not any("rank 1 cohort [2]" in ln for ln in lines)
    for rnd in (1, 2, 3, 4, 5):
        assert {f"rank 1 round {rnd} hosts [0, 3] received [0, 1, 3]",
                f"rank 2 round {rnd} hosts [1, 4] received [0, 2, 3]",
                f"rank 3 round {rnd} hosts [2] received [0, 2, 3]"} <= lines
    # client k uploads (k+1) x round everywhere; client 4 trains group 0 without uploading it
    for rnd in (1, 2, 4, 5):
        assert f"round {rnd} sum 0: weighted {[10.0 * rnd] * 2} count 4" in lines  # clients 0..3
        assert f"round {rnd} sum 1: weighted {[4.0 * rnd] * 3} count 1" in lines  # client 3
        assert f"round {rnd} sum 2: weighted {[5.0 * rnd] * 4} count 2" in lines  # clients 1 and 2
        assert f"round {rnd} sum 3: weighted {[15.0 * rnd] * 2} count 5" in lines  # everyone
        assert f"round {rnd} samples " + " ".join(f"{k * rnd}" for k in range(5)) in lines  # in client order
    # round 3: client 0 no longer uploads group 3, client 3 group 1 (no sum), client 2 group 2
    assert "round 3 sum 0: weighted [30.0, 30.0] count 4" in lines
    assert not any(ln.startswith("round 3 sum 1") for ln in lines)
    assert "round 3 sum 2: weighted [6.0, 6.0, 6.0, 6.0] count 1" in lines  # client 1 alone
    assert "round 3 sum 3: weighted [42.0, 42.0] count 4" in lines  # clients 1..4: (2+3+4+5) x 3
    assert "round 3 samples 0 3 6 9 12" in lines
    # round 4 carries group 0's plain sum (its buffer and the shared reduce get longer), round 5 not
    assert "round 4 sum 0: plain [40.0, 40.0]" in lines
    assert [ln for ln in lines if ": plain" in ln] == ["round 4 sum 0: plain [40.0, 40.0]"]


@pytest.mark.parametrize("strategy", sorted(strategy_classes()))
def test_same_numbers_with_1_2_4_clients_per_rank(tmp_path_factory: pytest.TempPathFactory, strategy: str) -> None:
    logs = [inprocess_log(tmp_path_factory, strategy, n_ranks) for n_ranks in (4, 2, 1)]  # 4 clients: 1, 2, 4 per rank
    assert logs[0].alloc.sum() > 0
    for other in logs[1:]:
        assert_same(logs[0], other)


@pytest.mark.mpi
@pytest.mark.parametrize(("strategy", "ranks"), [("relief", 3), ("relief", 2), ("fedavg", 3)])
def test_mpi_with_several_clients_per_rank_matches_inprocess(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                             strategy: str, ranks: int) -> None:
    res = run_mpi(ranks, ["train", "--strategy", strategy, "--clients", "4", *TINY, "--out", str(tmp_path / "m.h5")],
                  timeout=300)
    assert res.returncode == 0, res.stderr
    log = read_log(tmp_path / "m.h5")
    # To float tolerance: a client rank alone on this 2-core host is given its profile's torch
    # threads (2, device/throttle.py), and two-threaded kernels add in another order than the
    # in-process run's one thread (1e-8 relative in the loss). With 2 or more client ranks each
    # gets one thread and the runs agree bit for bit.
    assert_same(log, inprocess_log(tmp_path_factory, strategy, 4), rtol=0.0 if ranks > 2 else 1e-6)
    assert log.attrs["world_size"] == ranks and log.clients["loss"].shape[1] == 4
    lib = log.attrs["mpi_library"]
    assert "MPICH" in lib or "Open MPI" in lib, lib


@pytest.mark.mpi
@pytest.mark.parametrize(("args", "words"), [
    (["--clients", "4", "--clock", "real"], "--clock real emulates concurrent devices in real time and needs one "
                                             "client per rank, got 4 clients on 2 client ranks"),
    (["--clients", "1"], "--clients 1 is fewer than the job's 2 client ranks"),
])
def test_clients_that_do_not_fit_the_ranks_are_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    res = run_mpi(3, ["train", *args, "--rounds", "1", "--quiet", "--out", str(tmp_path / "x.h5")], timeout=120)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.stderr
    assert not (tmp_path / "x.h5").exists()


def test_first_round_watchdog_allows_for_the_clients_a_rank_trains_in_turn() -> None:
    from relief_mpi.server import round_timeout

    assert round_timeout(None, 0.0, False, 125) == 120.0 * 125  # 1000 clients on 8 ranks, before round 1
    assert round_timeout(None, 0.0, True, 1) is None
    assert round_timeout(None, 3.0, False, 125) == 120.0  # then: max(120 s, 10x the longest round)
    assert round_timeout(None, 20.0, False, 4) == 200.0
    assert round_timeout(7.0, 0.0, False, 125) == 7.0


def test_system_bench_sums_client_compute_per_hosting_rank() -> None:
    from relief_mpi.bench.system import per_rank

    comp = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 0.5, 0.5, 0.5, 0.5]])  # 2 rounds x 5 clients
    # 2 ranks: rank 1 hosts clients 0, 2, 4; rank 2 hosts clients 1, 3
    np.testing.assert_array_equal(per_rank(comp, 2), [[9.0, 6.0], [1.5, 1.0]])
    np.testing.assert_array_equal(per_rank(comp, 5), comp)


def test_clients_default_to_the_ranks_or_to_the_fleets_named_clients(tmp_path: Path) -> None:
    from dataclasses import replace

    from relief_mpi.errors import ReliefError
    from relief_mpi.job import Resolved, check_clients

    fleet = tmp_path / "six.toml"
    fleet.write_text('[[tier]]\nname = "a"\nprofile = "raspberry-pi-4"\nranks = [1, 2, 3]\n'
                     '[[tier]]\nname = "b"\nprofile = "jetson-nano"\nranks = [4, 5, 6]\n')
    base = RunConfig()
    assert check_clients(Resolved(base, tmp_path / "x.h5"), 5).n_clients is None  # one per client rank
    assert check_clients(Resolved(base, tmp_path / "x.h5", n_clients=9), 5).n_clients == 9
    named = replace(base, device=replace(base.device, fleet=str(fleet)))
    assert check_clients(Resolved(named, tmp_path / "x.h5"), 3).n_clients == 6  # 6 named clients on 2 ranks
    assert check_clients(Resolved(named, tmp_path / "x.h5"), 7).n_clients is None  # 6 ranks: one each
    real = replace(named, device=replace(named.device, clock="real"))
    with pytest.raises(ReliefError, match="needs one client per rank, got 6 clients on 2 client ranks"):
        check_clients(Resolved(real, tmp_path / "x.h5"), 3)
    with pytest.raises(ReliefError, match="--clients 3 is fewer than the job's 4 client ranks"):
        check_clients(Resolved(base, tmp_path / "x.h5", n_clients=3), 5)
