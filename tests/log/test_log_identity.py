"""benchmarks/log_identity.py: two logs of the same run compare equal although their time stamps,
versions, hosts and wall-clock columns differ; any other attribute or value that differs is named."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np

from tests.helpers import REPO

_spec = importlib.util.spec_from_file_location("log_identity", REPO / "benchmarks" / "log_identity.py")
assert _spec is not None and _spec.loader is not None
log_identity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(log_identity)

ROW = np.dtype([("round", "i8"), ("accuracy", "f8"), ("wall_time_s", "f8")])


def _log(path: Path, started: str = "2026-12-07T10:00:00", acc: float = 0.5, wall: float = 1.0,
         busy: float = 2.0, strategy: str = "relief") -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["started_at"] = started
        f.attrs["writer_pid"] = 123 if started.endswith("00") else 456
        f.attrs["strategy"] = strategy
        f.attrs["config"] = '{"seed": 1}'
        f.create_dataset("rounds", data=np.array([(1, acc, wall), (2, np.nan, wall)], ROW))
        g = f.create_group("clients")
        g.create_dataset("busy_s", data=np.array([[busy, 1.0]]))
        g.create_dataset("compute_wall_s", data=np.array([[wall, wall]]))
    return path


def test_same_run_other_clock_is_equal(tmp_path: Path) -> None:
    a = _log(tmp_path / "a.h5")
    b = _log(tmp_path / "b.h5", started="2026-12-07T11:11:11", wall=9.0)
    assert log_identity.differences(a, b) == []
    assert log_identity.main(["x", str(a), str(b)]) == 0


def test_differences_are_named(tmp_path: Path) -> None:
    a = _log(tmp_path / "a.h5")
    assert log_identity.differences(a, _log(tmp_path / "b.h5", acc=0.5000001)) == ["dataset rounds differs"]
    assert log_identity.differences(a, _log(tmp_path / "c.h5", busy=2.5)) == ["dataset clients/busy_s differs"]
    assert log_identity.differences(a, _log(tmp_path / "d.h5", strategy="fedavg")) == ["attr strategy differs"]
    assert log_identity.differences(a, _log(tmp_path / "d.h5", strategy="fedavg"), ignore=["strategy"]) == []
