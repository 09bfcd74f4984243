"""Damaged, truncated, foreign and newer logs: one line from every reader, never a hang or a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from relief_mpi.log.hdf5 import read_log
from relief_mpi.log.lock import lock_path
from tests.helpers import FAST, run_cli, run_here, run_mpi, small_tmpfs

QUICK = ["train", "--transport", "inprocess", "--clients", "2", *FAST]
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


def assert_one_line(res: subprocess.CompletedProcess[str], expected_start: str) -> None:
    code, err = res.returncode, res.stderr
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



# -- disk full and failed writes -------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs the test fills to a given number of free bytes, or skip where mounting is not allowed."""
    with small_tmpfs(tmp_path, "1m", "test_failed_write_in_round_1_leaves_no_file covers the write path by "
                     "fault injection") as mnt:
        yield mnt


def leave_free(disk: Path, n_bytes: int) -> None:
    st = os.statvfs(disk)
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - n_bytes))


@pytest.mark.parametrize("free_kb", [10, 30, 40])
def test_resume_onto_a_nearly_full_disk_is_one_line_and_keeps_the_log(good_log: Path, tiny_disk: Path,
                                                                      free_kb: int) -> None:
    # Before: 30-45 KB free gave a Segmentation fault (exit 139) and left LOG.resume.tmp behind.
    log = copy_of(good_log, tiny_disk, "run.h5")
    leave_free(tiny_disk, free_kb * 1024)
    res = run_cli(["train", "--transport", "inprocess", "--resume", str(log), "--rounds", "6", "--quiet"], timeout=120)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 1 and len(lines) == 1, (res.returncode, res.stderr[-3000:])
    assert lines[0].startswith("error: ") and "No space left on device" in lines[0], lines
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "run.ckpt.pt", "run.h5"], "no temp or lock file"
    kept = read_log(log)
    assert list(kept.rounds["round"]) == [1, 2] and kept.status == "complete", "the log is as it was"


def test_failed_write_in_round_1_leaves_no_file_and_the_rerun_is_not_blocked(tmp_path: Path) -> None:
    log = tmp_path / "r1.h5"
    res = run_cli([*QUICK, "--rounds", "2", "--quiet", "--out", str(log), "--fault", "logfull:0:1"], timeout=120)
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        f"error: writing round log {log} failed: No space left on device; no log was kept (no complete round)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no log (it would block the rerun), no lock file"
    again = run_here([*QUICK, "--rounds", "1", "--quiet", "--out", str(log)], timeout=120)
    assert again.returncode == 0, again.stderr


def test_failed_write_mid_run_rolls_back_the_unfinished_round_and_says_failed(tmp_path: Path) -> None:
    log = tmp_path / "mid.h5"
    res = run_cli([*QUICK, "--rounds", "4", "--quiet", "--out", str(log), "--fault", "logfull:0:3"], timeout=120)
    assert res.returncode == 1, res.stderr
    with h5py.File(log, "r") as f:  # raw, as the README's pandas example reads it: no row beyond /n_rounds
        assert int(f["n_rounds"][()]) == 2 and f["rounds"].shape == (2,) and f["status"][()] == b"failed"
        assert list(f["rounds"]["round"]) == [1, 2] and f["alloc"].shape[0] == 2 and f["clients/loss"].shape[0] == 2
    assert not lock_path(log).exists()


def test_failed_write_in_round_1_under_mpiexec_ends_cleanly(tmp_path: Path) -> None:
    """Every rank exits with rank 0's code and no MPICH BAD TERMINATION banner (before: the banner,
    exit 9: rank 0 left by os._exit right after MPI_Finalize and the launcher killed the clients
    still leaving), and no file blocks the rerun."""
    log = tmp_path / "m.h5"
    res = run_mpi(3, ["train", *FAST, "--rounds", "2", "--quiet", "--out", str(log), "--fault", "logfull:0:1"],
                  timeout=240)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "BAD TERMINATION" not in res.stdout + res.stderr
    assert [x for x in res.stderr.splitlines() if x.strip()] == [
        f"error: writing round log {log} failed: No space left on device; no log was kept (no complete round)"]
    assert not log.exists()


# -- outputs beside the log: plots, pretrain --out, bench --out-dir ---------------------------------------------


@pytest.fixture
def read_only(tmp_path: Path, good_log: Path) -> Iterator[Path]:
    """A read-only folder holding a copy of the log (a tmpfs remounted ro: as root, chmod would not stop us)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'mount failed'})")
    try:
        shutil.copy(good_log, mnt / "run.h5")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def only_line(res: subprocess.CompletedProcess[str]) -> str:
    err = res.stderr
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_report_in_a_read_only_folder_is_one_line(read_only: Path) -> None:
    res = run_here(["report", str(read_only / "run.h5")], timeout=120)
    assert res.returncode == 1 and "status: complete" in res.stdout, res.stderr[-3000:]
    assert only_line(res) == f"error: writing plot {read_only / 'run-f1.png'} failed: Read-only file system"


def test_plots_on_a_full_disk_are_one_line_and_leave_no_partial_png(good_log: Path, tiny_disk: Path) -> None:
    log = copy_of(good_log, tiny_disk, "run.h5")
    leave_free(tiny_disk, 4096)
    res = run_here(["report", str(log)], timeout=120)
    assert res.returncode == 1
    assert only_line(res).endswith("failed: No space left on device")
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "run.ckpt.pt", "run.h5"], "no half-written PNG"


@pytest.mark.parametrize("where", ["read-only", "under-a-file"])
def test_pretrain_out_that_cannot_be_written_is_one_line_before_training(read_only: Path, tmp_path: Path,
                                                                        where: str) -> None:
    if where == "read-only":
        out, cause = read_only / "base.pt", "Read-only file system"
    else:
        (tmp_path / "afile").write_text("x")
        out, cause = tmp_path / "afile" / "base.pt", f"{tmp_path / 'afile'} is a file, not a folder"
    res = run_here(["pretrain", "--out", str(out), "--pretrain-epochs", "1"], timeout=120)
    assert res.returncode == 2 and only_line(res) == f"error: --out {out}: cannot write there ({cause})"
    assert "pretrained on" not in res.stdout, "refused before the training"


def test_bench_out_dir_read_only_is_one_line_before_any_run(read_only: Path) -> None:
    res = run_here(["bench", "--transport", "inprocess", "--clients", "2", "--rounds", "1", *FAST,
                    "--out-dir", str(read_only / "b")], timeout=120)
    assert res.returncode == 2
    first = read_only / "b" / "summary.md"
    assert only_line(res) == f"error: --out-dir {first}: cannot write there (Read-only file system)"


def test_base_written_whole_or_not_at_all(tiny_disk: Path) -> None:
    """save_base on a full disk: one WriteFailed line and no file (before: torch's iostream error, a temp left)."""
    from relief_mpi.errors import WriteFailed
    from relief_mpi.model.pretrain import save_base
    from relief_mpi.run_setup import build_setup
    from tests.helpers import fast_config

    setup = build_setup(fast_config(1), 2)
    leave_free(tiny_disk, 2048)
    with pytest.raises(WriteFailed, match="No space left on device"):
        save_base(setup.make_model(), setup.data.spec, tiny_disk / "base.pt")
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


def test_bench_outputs_on_a_full_disk_are_one_error_and_none_half_written(tmp_path: Path, tiny_disk: Path) -> None:
    from relief_mpi.bench.runner import write_outputs
    from relief_mpi.errors import WriteFailed
    from tests.bench.logs import write_log

    for d in (tmp_path / "ref", tiny_disk):
        d.mkdir(exist_ok=True)
        write_log(d / "fedavg-seed0.h5", "fedavg", 0, [0.5, 0.8], lr=0.1)
        write_log(d / "relief-seed0.h5", "relief", 0, [0.78, 0.9], round_s=2.0)
    ref = {p.name: p.read_bytes() for p in write_outputs(tmp_path / "ref", None, ("relief", "fedavg"))}
    leave_free(tiny_disk, 6 * 1024)  # room for the tables, not for every figure
    with pytest.raises(WriteFailed, match="No space left on device"):
        write_outputs(tiny_disk, None, ("relief", "fedavg"))
    left = {p.name: p.read_bytes() for p in tiny_disk.iterdir() if p.suffix != ".h5" and p.name != "filler"}
    assert not [n for n in left if n.startswith(".")], "no temp file left"
    for name, data in left.items():  # what is there was written whole
        if name.endswith(".png"):
            assert data.endswith(b"IEND\xaeB`\x82"), name
        else:
            assert data == ref[name], name


def test_rollback_keeps_the_warnings_of_complete_rounds(tmp_path: Path) -> None:
    """/warnings is a list of lines, not one row per round: the rollback of an unfinished round
    must not shrink it to /n_rounds."""
    from tests.log.test_stops import in_fresh_process

    p = tmp_path / "w.h5"
    res = in_fresh_process(f"""
        w = RoundLogWriter({str(p)!r}, ATTRS, 3, ["acc", "shared"], ["high"])
        w.append(record(1))
        for i in range(3):
            w.add_warning(1, "loss", f"warning {{i}}")
        w.fail_after = 1
        try:
            w.append(record(2))
        except LogWriteError as e:
            print(e)
    """)
    assert "No space left on device" in res.stdout, res.stderr
    with h5py.File(p, "r") as f:
        assert f["rounds"].shape == (1,) and f["status"][()] == b"failed"
        assert [r.decode() for r in f["warnings"]["text"]] == ["warning 0", "warning 1", "warning 2"]
