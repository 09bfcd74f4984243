"""The round log: documented layout, readable while growing and after the writer is killed."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np

from relief_mpi.log.hdf5 import CLIENT_METRICS, ROUND_FIELDS, RoundLogWriter, RoundRecord, read_log


def record(rnd: int, k: int = 3, b: int = 2) -> RoundRecord:
    row = {name: float(rnd) for name, _ in ROUND_FIELDS}
    row["round"] = rnd
    return RoundRecord(row, {m: np.full(k, rnd, float) for m in CLIENT_METRICS}, np.full(b, 0.5),
                       np.ones((k, b), np.uint8), np.array([0.1 * rnd]))


def test_layout_names_and_attrs(tmp_path: Path) -> None:
    p = tmp_path / "l.h5"
    w = RoundLogWriter(p, {"config": json.dumps({"a": 1}), "profiles": "[]", "hosts": "[]"}, 3, ["acc", "shared"],
                       ["high"])
    for r in (1, 2):
        w.append(record(r))
    w.close()
    with h5py.File(p, "r") as f:
        assert f.attrs["schema_version"] == 2
        assert f["n_rounds"][()] == 2 and f["status"][()] == b"complete"
        assert set(dict(ROUND_FIELDS)) <= set(f["rounds"].dtype.names)
        for m in ("busy_s", "idle_s", "bytes_up", "bytes_down", "energy_j", "steps"):
            assert f["clients"][m].shape == (2, 3) and f["clients"][m].dtype == np.float64
        assert [s.decode() for s in f["blocks/names"][:]] == ["acc", "shared"]
        assert f["blocks/divergence"].shape == (2, 2) and f["alloc"].shape == (2, 3, 2) and f["alloc"].dtype == np.uint8
    log = read_log(p)
    assert list(log.rounds["round"]) == [1, 2]


def test_readable_while_growing_and_after_kill(tmp_path: Path) -> None:
    p = tmp_path / "killed.h5"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.log.test_hdf5 import record
        from relief_mpi.log.hdf5 import RoundLogWriter, read_log
        w = RoundLogWriter({str(p)!r}, {{"profiles": "[]", "config": "{{}}"}}, 3, ["acc", "shared"], ["high"])
        for r in (1, 2, 3):
            w.append(record(r))
        assert len(read_log({str(p)!r}).rounds) == 3  # a reader while the writer holds the file
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    res = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True, text=True)
    assert res.returncode == -9, res.stderr
    log = read_log(p)
    assert list(log.rounds["round"]) == [1, 2, 3]
    assert log.clients["busy_s"].shape == (3, 3)
    assert log.records()[2].row["round"] == 3


def test_one_wait_column_and_old_logs_with_both_still_read(tmp_path: Path) -> None:
    """idle_s is the wait for the round to close; logs before issue 25 held it twice (wait_s too)."""
    p = tmp_path / "old.h5"
    w = RoundLogWriter(p, {"config": "{}", "profiles": "[]", "hosts": "[]"}, 3, ["acc", "shared"], ["high"])
    w.append(record(1))
    w.close()
    with h5py.File(p, "r") as f:
        assert "idle_s" in f["clients"] and "wait_s" not in f["clients"]
    with h5py.File(p, "a") as f:  # what an old writer left: the same array under both names
        f["clients"].create_dataset("wait_s", data=f["clients/idle_s"][:], maxshape=(None, 3))
    log = read_log(p)
    assert set(log.clients) == set(CLIENT_METRICS) and "wait_s" not in log.clients
    assert log.clients["idle_s"].tolist() == [[1.0, 1.0, 1.0]]
    assert log.records()[0].clients["idle_s"].tolist() == [1.0, 1.0, 1.0]
