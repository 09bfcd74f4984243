"""kill -9 of any rank ends the job (no hang); the log keeps every complete round; resume works.
NaN updates are rejected; mismatched versions refuse to start."""

import time
from pathlib import Path

import numpy as np
import pytest

from relief_mpi.log.hdf5 import read_log
from tests.helpers import FAST, run_mpi

pytestmark = pytest.mark.mpi
ARGS = ["--rounds", "4", "--clients", "3", *FAST, "--checkpoint-every", "1", "--quiet", "--strategy", "relief"]


@pytest.mark.parametrize("rank,round_", [(2, 3), (0, 2)], ids=["client", "server"])
def test_kill_9_then_resume(tmp_path: Path, rank: int, round_: int) -> None:
    log = tmp_path / "k.h5"
    # 3 clients on 3 ranks: rank 2 hosts client 1 alone, so killing it kills one client (as with
    # one client per rank), and rank 1 (clients 0 and 2) is left waiting on the dead rank
    res = run_mpi(3, ["train", *ARGS, "--out", str(log), "--fault", f"kill:{rank}:{round_}"], timeout=180)
    ended = time.time()
    assert res.returncode != 0
    # The kill comes during round `round_`, after the last write of the log and checkpoint (every
    # round is logged and checkpointed): the job must end within 60 s of that write.
    last_write = max(log.stat().st_mtime, log.with_name(log.stem + ".ckpt.pt").stat().st_mtime)
    assert ended - last_write < 60, f"the job took {ended - last_write:.0f} s to end after its last write"
    part = read_log(log)
    assert len(part.rounds) >= 2
    assert np.all(np.isfinite(part.rounds["macro_f1"]))
    assert part.clients["busy_s"].shape[0] == len(part.rounds)
    res = run_mpi(3, ["train", "--resume", str(log), "--quiet"], timeout=180)  # its 3 clients, from the log
    assert res.returncode == 0, res.stderr
    done = read_log(log)
    assert list(done.rounds["round"]) == [1, 2, 3, 4]
    np.testing.assert_array_equal(done.rounds["macro_f1"][:2], part.rounds["macro_f1"][:2])


def test_version_mismatch_refuses_to_start(tmp_path: Path) -> None:
    res = run_mpi(3, ["train", "--rounds", "2", "--quiet", "--out", str(tmp_path / "v.h5"),
                      "--fault", "version:2:0"], timeout=180)
    assert res.returncode == 2
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "rank 2" in lines[0] and "0.0.0-test" in lines[0], res.stderr


def test_fleet_that_does_not_fit_is_one_line(tmp_path: Path) -> None:
    fleet = tmp_path / "f.toml"
    fleet.write_text('[[tier]]\nname = "a"\nprofile = "jetson-nano"\nranks = [1, 2, 3, 4]\n')
    # without --clients the fleet's 4 named clients would share the 2 client ranks (docs/cluster.md)
    res = run_mpi(3, ["train", "--fleet", str(fleet), "--clients", "2", "--rounds", "1",
                      "--out", str(tmp_path / "x.h5")], timeout=180)
    assert res.returncode == 2
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "names 4 clients" in lines[0] and "--clients 4" in lines[0], res.stderr
    assert not (tmp_path / "x.h5").exists()


def test_bad_base_under_mpi_is_one_line_before_any_round(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    res = run_mpi(3, ["train", "--mode", "lora", "--base", str(bad), "--rounds", "1", "--out", str(tmp_path / "b.h5")],
                  timeout=180)
    assert res.returncode == 2, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "not a relief-mpi checkpoint" in lines[0], res.stderr
    assert not (tmp_path / "b.h5").exists()
