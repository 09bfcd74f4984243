"""Damaged, truncated, foreign and newer logs: one line from every reader, never a hang or a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.helpers import FAST, run_cli, run_here

READERS = (["report", "--no-plots"], ["config", "show"], ["train", "--transport", "inprocess", "--resume"])


@pytest.fixture(scope="module")
def good_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 2-round log with a checkpoint, made once for the module."""
    log = tmp_path_factory.mktemp("good") / "run.h5"
    res = run_here(["train", "--transport", "inprocess", "--clients", "3", "--rounds", "2", *FAST, "--quiet",
                    "--checkpoint-every", "1", "--out", str(log)])
    assert res.returncode == 0, res.stderr
    return log


def copy_of(log: Path, dest: Path, name: str = "bad.h5") -> Path:
    """A copy of the log (and its checkpoint) under another name."""
    out = dest / name
    shutil.copy(log, out)
    shutil.copy(log.with_name(log.stem + ".ckpt.pt"), out.with_name(out.stem + ".ckpt.pt"))
    return out


def assert_one_line(res: object, expected_start: str) -> None:
    code, err = res.returncode, res.stderr  # type: ignore[attr-defined]
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(expected_start), err[-3000:]


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
def test_truncated_log_is_one_line_in_every_reader_not_a_hang(good_log: Path, tmp_path: Path, fraction: float) -> None:
    # Before: a plain open fails ("truncated file"), the SWMR fallback then waits in HDF5's retry loop (15 min).
    bad = copy_of(good_log, tmp_path)
    data = bad.read_bytes()
    bad.write_bytes(data[:int(len(data) * fraction)])
    for cmd in READERS:
        res = run_cli([*cmd, str(bad)], timeout=60)  # a subprocess: a hang in HDF5's C loop is killed, not waited on
        assert_one_line(res, f"error: {bad}: truncated or not a relief-mpi log (")
        assert "superblock says" in res.stderr


def test_stub_and_foreign_files_are_one_line(good_log: Path, tmp_path: Path) -> None:
    stub = tmp_path / "stub.h5"
    stub.write_bytes(good_log.read_bytes()[:1024])  # a 1 KB stub of a real log
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:  # an HDF5 file, but not ours
        f["x"] = np.arange(3)
    noise = tmp_path / "noise.h5"
    noise.write_bytes(bytes(range(256)) * 4)
    for path in (stub, foreign, noise):
        for cmd in READERS[:2]:
            res = run_here([*cmd, str(path)], timeout=60)
            assert_one_line(res, f"error: {path}: truncated or not a relief-mpi log (")


def _edit(log: Path, how: str) -> None:
    with h5py.File(log, "a") as f:
        if how == "config-garbled":
            f.attrs["config"] = "{not json"
        elif how == "config-missing":
            del f.attrs["config"]
        elif how == "config-wrong-values":
            f.attrs["config"] = '{"rounds": "many", "strategy": 7}'
        elif how == "profiles-garbled":
            f.attrs["profiles"] = "[{]"
        elif how == "profiles-missing":
            del f.attrs["profiles"]
        elif how == "profiles-wrong-shape":
            f.attrs["profiles"] = '[{"client": 0}]'
        elif how == "rounds-wrong-type":
            del f["rounds"]
            f["rounds"] = np.arange(4.0)
        elif how == "clients-short":
            del f["clients/busy_s"]
            f["clients/busy_s"] = np.zeros((2, 1))


@pytest.mark.parametrize("how", ["config-garbled", "config-missing", "config-wrong-values", "profiles-garbled",
                                 "profiles-missing", "profiles-wrong-shape", "rounds-wrong-type", "clients-short"])
def test_damaged_attributes_and_datasets_are_one_line(good_log: Path, tmp_path: Path, how: str) -> None:
    bad = copy_of(good_log, tmp_path)
    _edit(bad, how)
    readers = READERS if how != "config-wrong-values" else READERS[1:]  # report does not use the config's values
    for cmd in readers:
        res = run_here([*cmd, str(bad)], timeout=60)
        assert_one_line(res, f"error: {bad}: truncated or not a relief-mpi log (")
        assert "Traceback" not in res.stderr


def test_newer_schema_is_refused_by_name(good_log: Path, tmp_path: Path) -> None:
    bad = copy_of(good_log, tmp_path)
    with h5py.File(bad, "a") as f:
        f.attrs["schema_version"] = 99
    for cmd in READERS:
        res = run_here([*cmd, str(bad)], timeout=60)
        assert_one_line(res, f"error: {bad}: written by a newer relief-mpi (log schema_version 99; this relief-mpi "
                             "reads up to 2)")

