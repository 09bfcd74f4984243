"""`relief-mpi train` as a user runs it: under mpiexec, one line per problem, non-zero exits."""

from pathlib import Path

import numpy as np
import pytest

from relief_mpi.log.hdf5 import read_log
from tests.helpers import run_cli, run_mpi


@pytest.mark.mpi
def test_mpirun_5_train_3_rounds(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    res = run_mpi(5, ["train", "--rounds", "3", "--out", str(out)], timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("round ")]
    assert len(lines) == 3, "only rank 0 prints, one line per round"
    assert res.stdout.strip().splitlines()[-1] == f"log: {out}"
    log = read_log(out)
    assert len(log.rounds) == 3
    assert np.all(np.isfinite(log.rounds["accuracy"])) and np.all(np.isfinite(log.rounds["macro_f1"]))
    assert log.clients["bytes_up"].shape == (3, 4)
    assert log.alloc.shape == (3, 4, len(log.block_names))
    assert np.all(log.alloc == 1), "FedAvg: every client trains every block"


@pytest.mark.mpi
def test_one_rank_is_refused_with_one_line(tmp_path: Path) -> None:
    res = run_mpi(1, ["train", "--out", str(tmp_path / "x.h5")], timeout=120)
    assert res.returncode != 0
    err = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "at least 2 MPI ranks" in err[0], res.stderr
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.mpi
def test_bad_option_printed_once_under_mpi(tmp_path: Path) -> None:
    res = run_mpi(3, ["train", "--rounds", "0", "--out", str(tmp_path / "x.h5")], timeout=120)
    assert res.returncode == 2
    assert res.stderr.count("--rounds") == 1, res.stderr


@pytest.mark.mpi
def test_existing_out_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "keep.h5"
    out.write_bytes(b"precious")
    res = run_mpi(3, ["train", "--rounds", "1", "--out", str(out)], timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: --out {out} exists; pass --overwrite to replace it (or pick another path)"
    assert out.read_bytes() == b"precious"


def test_help_explains_every_option() -> None:
    res = run_cli(["train", "--help"])
    assert res.returncode == 0
    for opt in ("--rounds", "--seed", "--out", "--strategy", "--local-steps", "--batch-size", "--lr", "--mode",
                "--dataset", "--fleet", "--clock", "--deadline", "--transport"):
        assert opt in res.stdout, opt
    top = run_cli(["--help"])
    assert "train" in top.stdout and "report" in top.stdout


def test_inprocess_run_and_report(tmp_path: Path) -> None:
    out = tmp_path / "ip.h5"
    res = run_cli(["train", "--transport", "inprocess", "--clients", "3", "--rounds", "2", "--local-steps", "2",
                   "--strategy", "relief", "--out", str(out)])
    assert res.returncode == 0, res.stderr
    rep = run_cli(["report", str(out), "--out-dir", str(tmp_path / "plots")])
    assert rep.returncode == 0, rep.stderr
    assert "strategy relief" in rep.stdout
    assert (tmp_path / "plots" / "ip-f1.png").stat().st_size > 1000
    assert run_cli(["report", str(tmp_path / "missing.h5")]).returncode == 2
