"""Ctrl-C and SIGTERM at any moment, the last round and the final write included (issue 22, case 12).

Each run here sends the signal to its own process at an exact moment (a wrapper patches the log
writer or the round, then runs the real program): right after the final write, during the last
round, and twice in a row. Every one ends with one line, 130 / 143 and no traceback; on cead07c the
final-write cases gave a traceback with exit 0 or 1, or were killed with no line.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import mpi_command, mpi_env

WRAPPER = """
import os, signal, sys
sig, when, times = getattr(signal, sys.argv[1]), sys.argv[2], int(sys.argv[3])
def send():
    for _ in range(times):
        os.kill(os.getpid(), sig)
if when == "closed":
    from relief_mpi.log import hdf5
    close = hdf5.RoundLogWriter.close
    def closed(self, status="complete"):
        close(self, status)
        if status == "complete":
            send()
    hdf5.RoundLogWriter.close = closed
elif when == "returned":  # the run is over and its log closed: the signal lands in the last lines
    from relief_mpi import mpirun, run
    def after(f):
        def wrapped(*a, **k):
            out = f(*a, **k)
            if out is not None:  # rank 0 (or the one in-process rank)
                send()
            return out
        return wrapped
    run.run_inprocess = after(run.run_inprocess)
    mpirun.run_mpi = after(mpirun.run_mpi)
else:
    from relief_mpi import server
    run_round = server.Server.run_round
    def last_round(self, rnd):
        if rnd == self.setup.config.rounds:
            send()
        return run_round(self, rnd)
    server.Server.run_round = last_round
sys.argv = ["relief-mpi"] + sys.argv[4:]
try:
    from relief_mpi.cli import entry
except ImportError:  # a tree from before cli.entry: its program was main()
    from relief_mpi.cli import main as entry
entry()
"""
RUN = ["train", "--rounds", "2", "--local-epochs", "1", "--encoder-channels", "4,4", "--checkpoint-every", "1"]


def signalled(tmp_path: Path, sig: str, when: str, times: int, mpi: bool = False) -> tuple[int, str, list[str]]:
    log = tmp_path / "s.h5"
    args = [sig, when, str(times), *RUN, "--out", str(log)]
    if mpi:
        cmd = mpi_command(3, [])
        cmd = cmd[:cmd.index(sys.executable) + 1] + ["-c", WRAPPER, *args]
    else:
        cmd = [sys.executable, "-c", WRAPPER, *args, "--transport", "inprocess", "--clients", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=mpi_env())
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    return res.returncode, str(log), lines


@pytest.mark.parametrize("sig,times", [("SIGINT", 1), ("SIGTERM", 1), ("SIGINT", 2)])
def test_signal_after_the_final_write(tmp_path: Path, sig: str, times: int) -> None:
    code, log, lines = signalled(tmp_path, sig, "closed", times)
    assert code == 128 + getattr(signal, sig), lines
    assert lines == [f"interrupted by {sig} after the run completed; the log {log} is complete (2 rounds)"]


@pytest.mark.parametrize("sig,times", [("SIGINT", 1), ("SIGINT", 2), ("SIGTERM", 1)])
def test_signal_once_the_run_returned(tmp_path: Path, sig: str, times: int) -> None:
    # cead07c: the signal raised into the command's last lines: a traceback ending in
    # `Interrupted: SIGINT`, exit 1
    code, log, lines = signalled(tmp_path, sig, "returned", times)
    assert code == 128 + getattr(signal, sig), lines
    assert lines == [f"interrupted by {sig} after the run completed; the log {log} is complete (2 rounds)"]


def test_double_ctrl_c_in_the_last_round(tmp_path: Path) -> None:
    code, log, lines = signalled(tmp_path, "SIGINT", "last", 2)
    assert code == 130, lines
    assert lines == [f"interrupted by SIGINT after round 1; resume with: relief-mpi train --resume {log} "
                     "(checkpoint at round 1)"]


@pytest.mark.mpi
def test_signal_on_rank_0_after_the_final_write_under_mpiexec(tmp_path: Path) -> None:
    # SIGINT: MPICH's launcher passes a rank's exit code 130 on, but reports 143 (a rank ended by
    # SIGTERM, as it ends ranks itself) as 0; a SIGTERM to the launcher is its own 143 (test_stops.py)
    code, log, lines = signalled(tmp_path, "SIGINT", "returned", 2, mpi=True)
    assert code == 130, lines
    assert lines == [f"interrupted by SIGINT after the run completed; the log {log} is complete (2 rounds)"]
