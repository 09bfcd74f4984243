"""One writer per log: a second train or resume on a log being written is one line naming the holder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relief_mpi.log.hdf5 import read_log
from relief_mpi.log.lock import LogBusy, hold, lock_path, release_all
from tests.helpers import FAST, mpi_env, run_here, run_mpi

QUICK = ["train", "--transport", "inprocess", "--clients", "2", *FAST]


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A run writing tmp_path/run.h5 (in its own process), once it has a complete round."""
    log = tmp_path / "run.h5"
    proc = subprocess.Popen([sys.executable, "-m", "relief_mpi", *QUICK, "--rounds", "500", "--quiet",
                             "--checkpoint-every", "1", "--out", str(log)], env=mpi_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the writer ended early: {proc.communicate()[1]}")
            if log.with_name("run.ckpt.pt").exists() and len(read_log(log).rounds) >= 1:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the writer wrote no round within 180 s")
        yield log, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def test_second_writer_is_refused_naming_the_holder_and_a_reader_is_not(
        writer: tuple[Path, subprocess.Popen[str]]) -> None:
    log, proc = writer
    holder = f"the log is being written by pid {proc.pid} on host {socket.gethostname()} (since "
    for args in (["train", "--transport", "inprocess", "--resume", str(log)],  # today: accepted, rounds lost
                 [*QUICK, "--rounds", "1", "--out", str(log), "--overwrite"]):
        res = run_here(args, timeout=60)
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
        assert lines[0].startswith("error: ") and holder in lines[0], lines
    rep = run_here(["report", str(log), "--no-plots"], timeout=60)  # a reader neither waits nor is refused
    assert rep.returncode == 0 and "status: still running" in rep.stdout, rep.stderr
    assert proc.poll() is None, "the first run goes on"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    hold(log, "--out")  # a killed holder holds nothing: the lock is taken at once
    release_all()
    assert not lock_path(log).exists(), "a released lock leaves no file"


def test_lock_is_refused_to_another_process_and_freed_when_it_ends(tmp_path: Path) -> None:
    log = tmp_path / "x.h5"
    hold(log, "--out")
    try:
        code = ("import sys; from pathlib import Path; from relief_mpi.log.lock import LogBusy, hold\n"
                f"try:\n    hold(Path({str(log)!r}), '--out')\nexcept LogBusy as e:\n    print(e); sys.exit(3)\n")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=mpi_env())
        assert res.returncode == 3 and f"pid {os.getpid()} on host" in res.stdout, res.stdout + res.stderr
    finally:
        release_all()
    with pytest.raises(LogBusy):  # and the other way round: a lock held by a live other process
        proc = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                                 "from relief_mpi.log.lock import hold; "
                                 f"hold(Path({str(log)!r}), '--out'); print('held', flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE, text=True, env=mpi_env())
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            hold(log, "--out")
        finally:
            proc.kill()
            proc.wait(timeout=60)
    hold(log, "--out")
    release_all()


def test_inprocess_under_a_launcher_is_refused_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    # what mpiexec -n 3 sets (MPICH's PMI_SIZE; Open MPI's OMPI_COMM_WORLD_SIZE is read too)
    res = subprocess.run([sys.executable, "-m", "relief_mpi", *QUICK, "--rounds", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=120,
                         env=mpi_env({"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "0"}))
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "error: --transport inprocess runs the whole job in one process, but this was started as 3 MPI ranks "
        "(OMPI_COMM_WORLD_SIZE=3): each would run it on the same log; drop mpirun, or drop --transport inprocess"]
    assert not out.exists()


def test_inprocess_under_mpiexec_is_refused_once_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    res = run_mpi(3, [*QUICK, "--rounds", "1", "--quiet", "--out", str(out)], timeout=180)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stdout + res.stderr
    assert lines[0].startswith("error: --transport inprocess runs the whole job in one process, but this was started "
                               "as 3 MPI ranks"), lines
    assert "log:" not in res.stdout and not out.exists()
