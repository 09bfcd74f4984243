"""The log on a failed write or a full disk: one clear error, only complete rounds, `report` says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from relief_mpi.log.hdf5 import RoundLogWriter, read_log
from relief_mpi.log.report import summary_table
from tests.helpers import REPO, small_tmpfs
from tests.log.test_hdf5 import record

ATTRS = {"config": json.dumps({"rounds": 40}), "profiles": "[]", "hosts": "[]", "strategy": "fedavg"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, or skip where mounting is not permitted."""
    with small_tmpfs(tmp_path, "2m", "the writer's fail_after hook covers the same path") as mnt:
        yield mnt


def fill(disk: Path) -> None:
    """Take every free byte of the file system."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


def in_fresh_process(body: str) -> subprocess.CompletedProcess[str]:
    """Run a writer scenario in its own interpreter: after a failed write HDF5 keeps buffers it can
    never flush, so (as the CLI does, cli.output.exit_process) such a process must end without touching
    HDF5 again; the test process reads the log afterwards."""
    script = "import os, sys\n" + f"sys.path.insert(0, {str(REPO)!r})\n" + PRELUDE + textwrap.dedent(body) + \
        "\nsys.stdout.flush(); sys.stderr.flush(); os._exit(0)\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


PRELUDE = """
from tests.log.test_hdf5 import record
from tests.log.test_stops import ATTRS, fill
from relief_mpi.log.hdf5 import RoundLogWriter
from relief_mpi.stops import LogWriteError
"""


def test_failed_write_is_one_error_and_the_log_keeps_complete_rounds(tmp_path: Path) -> None:
    p = tmp_path / "f.h5"
    res = in_fresh_process(f"""
        w = RoundLogWriter({str(p)!r}, ATTRS, 3, ["acc", "shared"], ["high"])
        w.fail_after = 2  # the third round's write fails as on a full disk
        w.append(record(1))
        w.append(record(2))
        for r in (3, 4):  # no later write pretends to work either
            try:
                w.append(record(r))
            except LogWriteError as e:
                print(e)
    """)
    assert res.stdout.splitlines() == [f"writing round log {p} failed: No space left on device",
                                       f"writing round log {p} failed earlier; the log keeps rounds 1..2"]
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr
    log = read_log(p)
    assert list(log.rounds["round"]) == [1, 2]
    assert log.clients["busy_s"].shape == (2, 3) and log.alloc.shape[0] == 2
    # the unfinished round is rolled back: raw /rounds (pandas, h5py) holds no row beyond /n_rounds
    assert log.rows_written == 2 and log.incomplete_rows == 0 and log.status == "failed"
    with h5py.File(p, "r") as f:
        assert f["rounds"].shape == (2,) and int(f["n_rounds"][()]) == 2 and f["clients/busy_s"].shape == (2, 3)
    assert "status: stopped early (failed) after 2 of 40 rounds" in summary_table(log)


def test_disk_full_on_a_small_tmpfs(small_disk: Path) -> None:
    p = small_disk / "full.h5"
    res = in_fresh_process(f"""
        from pathlib import Path
        w = RoundLogWriter({str(p)!r}, ATTRS, 3, ["acc", "shared"], ["high"])
        w.append(record(1))
        fill(Path({str(small_disk)!r}))
        try:
            for r in range(2, 200):  # chunks hold 16 rounds: the disk runs out within the first chunks
                w.append(record(r))
        except LogWriteError as e:
            print(e)
    """)
    assert res.stdout.strip() == f"writing round log {p} failed: No space left on device"
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr[:2000]
    log = read_log(p)
    n = len(log.rounds)
    assert n >= 1 and list(log.rounds["round"]) == list(range(1, n + 1)), "only complete rounds, none of zeros"
    assert np.all(log.rounds["accuracy"] > 0) and np.all(log.clients["busy_s"] > 0)
    assert log.rows_written == n and log.status == "failed", "rolled back and marked even on a full disk"


def test_log_creation_on_a_full_disk_leaves_no_file(small_disk: Path) -> None:
    fill(small_disk)
    p = small_disk / "never.h5"
    res = in_fresh_process(f"""
        try:
            RoundLogWriter({str(p)!r}, ATTRS, 3, ["acc", "shared"], ["high"])
        except LogWriteError as e:
            print(e)
    """)
    assert res.stdout.strip() == f"creating round log {p} failed: No space left on device", res.stderr
    assert not p.exists(), "a failed start must not leave a log that blocks the rerun"


def test_schema_1_log_is_trimmed_at_its_first_row_of_zeros(tmp_path: Path) -> None:
    p = tmp_path / "old.h5"
    w = RoundLogWriter(p, ATTRS, 3, ["acc", "shared"], ["high"])
    for r in (1, 2):
        w.append(record(r))
    w.close()
    with h5py.File(p, "a") as f:  # what schema 1 left after a failed write: rows that never reached the disk
        del f["n_rounds"], f["status"]
        f["rounds"].resize(4, axis=0)
    log = read_log(p)
    assert list(log.rounds["round"]) == [1, 2] and log.incomplete_rows == 2


def test_report_tells_running_from_ended_and_complete(tmp_path: Path) -> None:
    p = tmp_path / "live.h5"
    w = RoundLogWriter(p, {**ATTRS, "writer_pid": os.getpid(), "writer_host": os.uname().nodename}, 3,
                       ["acc", "shared"], ["high"])
    w.append(record(1))
    assert "status: still running (1 of 40 rounds so far)" in summary_table(read_log(p))
    w.close("interrupted")
    assert "status: stopped early (interrupted) after 1 of 40 rounds" in summary_table(read_log(p))
    q = tmp_path / "dead.h5"
    proc = subprocess.Popen(["true"])  # a pid that has exited
    proc.wait()
    w2 = RoundLogWriter(q, {**ATTRS, "writer_pid": proc.pid, "writer_host": os.uname().nodename}, 3,
                        ["acc", "shared"], ["high"])
    w2.append(record(1))
    w2.f.close()  # as a killed writer leaves it: no end marker
    assert "status: ended without closing the log" in summary_table(read_log(q))


def test_rejected_clients_are_a_warning_and_all_rejected_counts_toward_the_stop() -> None:
    from relief_mpi.server import every_client_rejected, rejected_warning
    from relief_mpi.stops import DIVERGED_ROUNDS

    rec = record(4)
    rec.clients["rejected"] = np.array([0.0, 1.0, 0.0])
    assert not every_client_rejected(rec)
    assert rejected_warning(rec, 0) == ("warning: round 4: 1 of 3 client updates rejected (non-finite), ranks 2; "
                                        "the others were aggregated")
    rec.clients["rejected"] = np.ones(3)
    assert every_client_rejected(rec)
    assert f"(2 of {DIVERGED_ROUNDS} rounds in a row before the run stops" in rejected_warning(rec, 2)
    rec.clients["rejected"] = np.zeros(3)
    assert rejected_warning(rec, 0) is None
    rec.alloc[:] = 0  # nobody trained: nothing was rejected, nothing diverged
    assert not every_client_rejected(rec)
