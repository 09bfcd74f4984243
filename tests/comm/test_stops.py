"""Stopping a run from outside under mpiexec: SIGINT/SIGTERM to the launcher's process group, and a
client that stops answering (SIGSTOP) caught by the round watchdog. One line, the right exit code,
no traceback from any rank, and a log and checkpoint that hold every complete round."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from relief_mpi.checkpoint import checkpoint_path, load_checkpoint
from relief_mpi.log.hdf5 import read_log
from tests.helpers import mpi_command, mpi_env

pytestmark = pytest.mark.mpi
ARGS = ["--rounds", "200", "--strategy", "fedavg-sgd", "--local-steps", "1", "--eval-every", "1000",
        "--checkpoint-every", "1", "--quiet"]


def start(log: Path, extra: list[str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(mpi_command(3, ["train", *ARGS, *(extra or []), "--out", str(log)]), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mpi_env(), start_new_session=True)


def wait_rounds(proc: subprocess.Popen[str], log: Path, n: int, timeout: float = 150) -> None:
    """Until the log holds n complete rounds (the run is past start-up)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"the job ended early: {proc.communicate()}")
        try:
            if log.exists() and len(read_log(log).rounds) >= n:
                return
        except (OSError, KeyError):
            pass
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"no {n} complete round(s) within {timeout} s")


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the job did not end within {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_mpiexec_is_one_line_and_a_resumable_log(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "s.h5"
    proc = start(log)
    wait_rounds(proc, log, 2)
    os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does (SIGINT) or `kill -TERM -PGID`
    code, out, err = finish(proc, 60)
    assert code == 128 + sig, (code, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    run = read_log(log)
    k = len(run.rounds)
    assert lines[0] == (f"interrupted by {sig.name} after round {k}; resume with: relief-mpi train --resume {log} "
                        f"(checkpoint at round {k})")
    assert run.status == "interrupted" and run.incomplete_rows == 0
    assert list(run.rounds["round"]) == list(range(1, k + 1))
    assert load_checkpoint(checkpoint_path(log)).round == k
    assert "Traceback" not in out + err


def rank_process(proc: subprocess.Popen[str], rank: int) -> psutil.Process:
    """The process of MPI rank `rank` among the launcher's descendants (MPICH or Open MPI)."""
    ranks = [p for p in psutil.Process(proc.pid).children(recursive=True)
             if str(rank) in (p.environ().get("PMI_RANK"), p.environ().get("OMPI_COMM_WORLD_RANK"))]
    assert len(ranks) == 1, f"rank {rank}'s process"
    return ranks[0]


def test_stopped_client_is_named_by_the_round_watchdog(tmp_path: Path) -> None:
    log = tmp_path / "w.h5"
    proc = start(log, ["--round-timeout", "4"])
    wait_rounds(proc, log, 1)
    client = rank_process(proc, 2)
    client.suspend()  # SIGSTOP: alive, but it never answers again
    try:
        t0 = time.monotonic()
        code, out, err = finish(proc, 60)
        took = time.monotonic() - t0
    finally:
        if client.is_running():
            client.kill()
    assert code == 4, (code, err)
    assert took < 30, f"the watchdog (4 s) took {took:.0f} s to end the job"
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    run = read_log(log)
    k = len(run.rounds)
    host = os.uname().nodename
    assert lines[0].startswith(f"error: round {k + 1}: rank 2 on {host} did not "), lines[0]
    assert "within the round timeout of 4 s (--round-timeout)" in lines[0]
    assert lines[0].endswith(f"the log {log} keeps rounds 1..{k}; resume with: relief-mpi train --resume {log} "
                             f"(checkpoint at round {k})")
    assert run.status == "timeout" and list(run.rounds["round"]) == list(range(1, k + 1))
    assert load_checkpoint(checkpoint_path(log)).round == k


def test_stopped_server_is_named_by_a_client(tmp_path: Path) -> None:
    """Issue 22 case 6: a SIGSTOPped rank 0 hung the job (250 s, then killed). Each client bounds its
    wait on the server (comm/watchdog.py: --round-timeout 4 s plus at least 30 s for the server's own
    work between rounds), and the first to give up ends the job with one line naming rank 0 and its host."""
    log = tmp_path / "z.h5"
    proc = start(log, ["--round-timeout", "4"])
    wait_rounds(proc, log, 1)
    server = rank_process(proc, 0)
    server.suspend()  # SIGSTOP: alive, but it never answers again
    try:
        code, out, err = finish(proc, 150)
    finally:
        if server.is_running():
            server.kill()
    assert code == 4, (code, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    host = os.uname().nodename
    assert lines[0].startswith(f"error: rank 0 (the server) on {host} did not answer rank 1 within "), lines[0]
    assert "the job was ended" in lines[0] and "Traceback" not in out + err
    run = read_log(log)  # what the server completed before it stopped is kept
    assert len(run.rounds) >= 1 and list(run.rounds["round"]) == list(range(1, len(run.rounds) + 1))
