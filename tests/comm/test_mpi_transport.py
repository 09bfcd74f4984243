"""Real multi-process runs: cohort Reduce is exact, failures abort (in-process and MPI agree: test_many_clients)."""

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from relief_mpi.log.hdf5 import read_log
from tests.helpers import FAST, run_mpi

pytestmark = pytest.mark.mpi


# In-process and mpiexec give the same numbers (FedAvg and RELIEF, bit for bit with 2 client ranks,
# the MPI library named in the log): tests/comm/test_many_clients.py,
# test_mpi_with_several_clients_per_rank_matches_inprocess, whose jobs this file's own 3-rank
# FedAvg/RELIEF jobs duplicated (same strategies, ranks and comparison; a subset of its fields, to a
# looser tolerance).


def test_cohort_reduce_equals_numpy_on_the_clients_deltas(tmp_path: Path) -> None:
    """skip-absent: sample-weighted mean updates over cohorts (absent sensors not encoded), so the
    update of a group is sum n d / sum n over its trainers and its divergence their sample-weighted
    variance over the group's parameters (strategy.base.weighted_divergence), here from the deltas
    each client dumped, in NumPy."""
    dump = tmp_path / "dump"
    dump.mkdir()
    # 4 clients (high, mid, low, low) on 2 client ranks, as a 5-rank job has: rank 1 hosts clients 0
    # and 2, rank 2 clients 1 and 3, so ecg (client 0's alone) is reduced over ranks {0, 1} only
    res = run_mpi(3, ["train", "--strategy", "skip-absent", "--clients", "4", "--rounds", "3", "--local-steps", "3",
                      *FAST, "--quiet", "--out", str(tmp_path / "r.h5"), "--debug-dump", str(dump)],
                  timeout=240)
    assert res.returncode == 0, res.stderr
    log = read_log(tmp_path / "r.h5")
    n_params = json.loads(log.attrs["group_n_params"])
    partial = 0
    for rnd in (1, 2, 3):
        alloc = log.alloc[rnd - 1]
        for b in range(len(log.block_names)):
            before = np.load(dump / f"r{rnd}-before-b{b}.npy")
            after = np.load(dump / f"r{rnd}-after-b{b}.npy")
            trainers = np.flatnonzero(alloc[:, b])
            if trainers.size == 0:
                assert np.array_equal(before, after), "an untrained block changed"
                continue
            partial += trainers.size < alloc.shape[0]
            rows = [np.load(dump / f"r{rnd}-c{k}-b{b}.npy").astype(np.float64) for k in trainers]
            deltas = np.array([r[:-1] for r in rows])
            n = np.array([r[-1] for r in rows])
            mean = (n[:, None] * deltas).sum(0) / n.sum()
            np.testing.assert_allclose(after, before + mean, rtol=1e-4, atol=1e-6)
            p = n_params[b]
            var = (n * ((deltas[:, :p] - mean[:p]) ** 2).sum(1)).sum() / n.sum() / p
            assert math.isclose(log.divergence[rnd - 1, b], var, rel_tol=1e-3, abs_tol=1e-9)
            # No client sent a block it did not train: only trainers dumped deltas.
            for k in set(range(alloc.shape[0])) - set(trainers.tolist()):
                assert not (dump / f"r{rnd}-c{k}-b{b}.npy").exists()
    assert partial > 0, "no group was reduced over a strict subset of the clients (a cohort)"


def test_exception_on_one_client_aborts_the_job(tmp_path: Path) -> None:
    log = tmp_path / "x.h5"
    # 3 clients on 3 ranks: rank 2 hosts client 1 alone; rank 1 (clients 0 and 2) goes on waiting
    res = run_mpi(3, ["train", "--rounds", "5", "--clients", "3", *FAST, "--quiet", "--out", str(log),
                      "--fault", "raise:2:2"], timeout=120)
    ended = time.time()
    assert res.returncode != 0
    assert "injected fault in client 1" in res.stderr
    assert "rank 2 failed" in res.stderr
    # the fault is raised in round 2, after round 1's row: the abort follows it within seconds,
    # not after the round watchdog's limit (120 s) or the launcher's own timeout
    assert len(read_log(log).rounds) == 1
    assert ended - log.stat().st_mtime < 30, f"the job took {ended - log.stat().st_mtime:.0f} s to end"


def test_exception_on_the_server_aborts_the_job(tmp_path: Path) -> None:
    res = run_mpi(3, ["train", "--rounds", "5", *FAST, "--quiet", "--out", str(tmp_path / "x.h5"),
                      "--fault", "raise:0:1"], timeout=120)
    assert res.returncode != 0
    assert "injected fault in the server" in res.stderr


def test_exchange_bench_runs_and_checks_what_it_moved() -> None:
    """The exchange benchmark (`bench --system`'s block-exchange sweep) at 1 and 4 KB on 3 ranks:
    every figure is a positive time and its ratio is raw / ours; measure() itself raises (non-zero
    exit) if its last exchange did not deliver the block or did not sum the clients' buffers."""
    import subprocess
    import sys

    from tests.helpers import REPO, mpi_command, mpi_env

    cmd = mpi_command(3, [])
    cmd = cmd[:cmd.index(sys.executable) + 1] + ["-m", "tests.comm.exchange_probe"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env=mpi_env())
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["bytes"] for r in rows] == [1024, 4096]
    for r in rows:
        for what in ("exchange", "round"):
            raw, ours = r[f"raw_{what}_s"], r[f"ours_{what}_s"]
            assert 0 < raw < 1 and 0 < ours < 1
            assert r[f"{what}_ratio"] == pytest.approx(raw / ours)
