"""`relief-mpi train` as a user runs it: under mpiexec, one line per problem, non-zero exits."""

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from relief_mpi.log.hdf5 import read_log
from tests.helpers import FAST, run_cli, run_here, run_mpi


@pytest.fixture(scope="module")
def mpi_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One job under mpiexec for the three tests below: 4 clients round robin on 2 client ranks
    (the same numbers as one client per rank, without a process per client), 3 rounds, and the
    first client of rank 2 (client 1) sends a NaN update in round 2."""
    log = tmp_path_factory.mktemp("mpi-run") / "r.h5"
    res = run_mpi(3, ["train", "--rounds", "3", "--clients", "4", *FAST, "--fault", "nan:2:2", "--out", str(log)],
                  timeout=300)
    return {"log": log, "res": res}


@pytest.mark.mpi
def test_mpirun_train_3_rounds_4_clients_on_2_client_ranks(mpi_run: dict[str, Any]) -> None:
    out, res = mpi_run["log"], mpi_run["res"]
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
def test_nan_update_is_rejected_and_the_run_goes_on(mpi_run: dict[str, Any]) -> None:
    """Rank 2's first client (client 1 of 4: rank 2 hosts clients 1 and 3) sends NaN in round 2 of
    3: that one update is rejected, the client is logged with 0 samples, the run goes on and ends
    finite. (Was tests/comm/test_crash.py, on a 3-rank job of its own.)"""
    log, res = mpi_run["log"], mpi_run["res"]
    assert res.returncode == 0, res.stderr
    run = read_log(log)
    rejected = run.clients["rejected"]
    assert rejected[1, 1] == 1 and rejected.sum() == 1
    assert run.clients["samples"][1, 1] == 0
    assert run.rounds["rejected"].tolist() == [0, 1, 0]
    assert np.all(np.isfinite(run.rounds["macro_f1"]))


@pytest.mark.mpi
def test_start_up_phases_and_a_rejected_update_are_said_once(mpi_run: dict[str, Any]) -> None:
    """Issue 13, items 6 and 11, as a user sees them under mpiexec: rank 0 prints the start-up phases
    (data, model, communicators) before round 1; a rejected client update is one warning line
    (printed once, not once per rank), and `report` shows the rejections in its summary and its
    rejected column. (Was tests/cli/test_feedback.py, on a 3-rank job of its own.)"""
    log, res = mpi_run["log"], mpi_run["res"]
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    first_round = next(i for i, x in enumerate(out) if x.startswith("round "))
    start = [x for x in out[:first_round] if x.startswith("start: ")]
    assert len(start) == 5 and len(start) == first_round, out
    assert start.pop(0) == "start: loading torch, MPI and the run's code on 3 ranks (then the data and model)"
    assert start[0] == "start: data (synthetic) and model (paper, cnn) for 4 client(s) on 2 client ranks"
    assert re.fullmatch(r"start: data and model ready in \d+\.\d s \(\d+ training windows, 15 parameter groups, "
                        r"strategy fedavg\)", start[1]), start[1]
    assert start[2] == "start: connecting 4 client(s) (handshake, communicators)"
    assert re.fullmatch(r"start: ready after \d+\.\d s; rounds 1\.\.3", start[3]), start[3]
    # rank 2's first client (client 1) sends a NaN update in round 2: one warning line, from rank 0 only
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert err == ["warning: round 2: 1 of 4 client updates rejected (non-finite), ranks 2; the others were "
                   "aggregated"], res.stderr
    assert read_log(log).rounds["rejected"].tolist() == [0, 1, 0]
    rep = run_here(["report", str(log), "--no-plots"])
    assert rep.returncode == 0, rep.stderr
    assert "rejected updates (non-finite): 1 client update(s) in round(s) 2" in rep.stdout
    head = next(x for x in rep.stdout.splitlines() if x.split()[:2] == ["client", "rank"])
    assert head.split()[-1] == "rejected"
    table = {int(x.split()[0]): int(x.split()[-1]) for x in rep.stdout.splitlines()
             if re.match(r"^\s+\d+\s+\d+\s", x)}
    assert table == {0: 0, 1: 1, 2: 0, 3: 0}, rep.stdout


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
    # 2 ranks: a client that must stay silent (one line in all) and leave with exit 2 as well
    res = run_mpi(2, ["train", "--rounds", "1", *FAST, "--out", str(out)], timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: --out {out} exists; pass --overwrite to replace it (or pick another path)"
    assert out.read_bytes() == b"precious"


def test_help_explains_every_option() -> None:
    res = run_here(["train", "--help"])
    assert res.returncode == 0
    for opt in ("--rounds", "--seed", "--out", "--strategy", "--local-steps", "--batch-size", "--lr", "--mode",
                "--dataset", "--fleet", "--clock", "--deadline", "--transport"):
        assert opt in res.stdout, opt
    top = run_here(["--help"])
    assert "train" in top.stdout and "report" in top.stdout


def test_inprocess_run_and_report(tmp_path: Path) -> None:
    out = tmp_path / "ip.h5"
    res = run_here(["train", "--transport", "inprocess", "--clients", "3", "--rounds", "2", *FAST,
                    "--strategy", "relief", "--out", str(out)])
    assert res.returncode == 0, res.stderr
    rep = run_here(["report", str(out), "--out-dir", str(tmp_path / "plots")])
    assert rep.returncode == 0, rep.stderr
    assert "strategy relief" in rep.stdout
    assert (tmp_path / "plots" / "ip-f1.png").stat().st_size > 1000
    assert run_here(["report", str(tmp_path / "missing.h5")]).returncode == 2


def test_out_that_cannot_be_written_is_one_line_before_any_round(tmp_path: Path) -> None:
    # The same check_out as --out that exists, on the same path to the user: under MPI rank 0
    # resolves the run alone and every rank exits 2 with its one line (test_existing_out_... runs
    # that under mpiexec); here the entry point in this process.
    out = "/proc/relief-mpi-test/r.h5"
    res = run_here(["train", "--transport", "inprocess", "--rounds", "1", *FAST, "--out", out])
    assert res.returncode == 2, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: --out {out}: cannot write there"), res.stderr
    assert "round" not in res.stdout


QUICK = ["train", "--transport", "inprocess", "--clients", "3", *FAST]
SAME = ("round", "virtual_time_s", "virtual_elapsed_s", "accuracy", "macro_f1", "rare_f1", "bytes_up", "bytes_down",
        "energy_j", "train_loss", "rejected")


def test_config_show_then_train_config_repeats_the_run(tmp_path: Path) -> None:
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    res = run_here([*QUICK, "--rounds", "2", "--seed", "3", "--alpha", "0.5", "--quiet", "--out", str(a)])
    assert res.returncode == 0, res.stderr
    shown = run_here(["config", "show", str(a)])
    assert shown.returncode == 0, shown.stderr
    toml = tmp_path / "run.toml"
    toml.write_text(shown.stdout)
    assert "local-epochs = 1" in shown.stdout and "alpha = 0.5" in shown.stdout and "clients = 3" in shown.stdout
    b.write_bytes(b"")  # a 0-byte log, as a start killed before it wrote anything leaves: it must not block
    res = run_here(["train", "--transport", "inprocess", "--config", str(toml), "--out", str(b)])
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1].startswith("start: data (synthetic) and model"), "start-up phases are printed"
    ra, rb = read_log(a), read_log(b)
    assert ra.config == rb.config
    for f in SAME:
        np.testing.assert_array_equal(ra.rounds[f], rb.rounds[f], err_msg=f)
    np.testing.assert_array_equal(ra.clients["flops"], rb.clients["flops"])


def test_ctrl_c_in_process_is_one_line_and_exit_130(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import mpi_env

    log = tmp_path / "i.h5"
    proc = subprocess.Popen([sys.executable, "-m", "relief_mpi", *QUICK, "--strategy", "fedavg-sgd", "--local-steps",
                             "1", "--rounds", "500", "--eval-every", "1000", "--quiet", "--out", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mpi_env())
    try:
        end = time.monotonic() + 150
        while time.monotonic() < end and proc.poll() is None:
            try:
                if log.exists() and len(read_log(log).rounds) >= 1:
                    break
            except (OSError, KeyError):
                pass
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = [x for x in err.splitlines() if x.strip()]
    run = read_log(log)
    k = len(run.rounds)
    assert lines == [f"interrupted by SIGINT after round {k}; the log {log} keeps rounds 1..{k}"], err
    assert run.status == "interrupted" and run.incomplete_rows == 0


def test_diverging_run_warns_and_stops_with_exit_3(tmp_path: Path) -> None:
    log = tmp_path / "d.h5"
    res = run_here([*QUICK, "--strategy", "fedavg-sgd", "--lr", "10", "--local-steps", "3", "--rounds", "6",
                    "--quiet", "--out", str(log)])
    assert res.returncode == 3, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stopped at round ") and "diverged" in last and "lower --lr" in last, res.stderr
    assert len(read_log(log).rounds) < 6, "the run stopped early"
    assert "Traceback" not in res.stderr


def test_failed_log_write_is_one_line_and_report_flags_it(tmp_path: Path) -> None:
    log = tmp_path / "f.h5"
    res = run_cli([*QUICK, "--strategy", "fedavg-sgd", "--local-steps", "1", "--rounds", "4", "--quiet",
                   "--out", str(log), "--fault", "logfull:0:3"])
    assert res.returncode == 1
    assert res.stderr.strip() == (f"error: writing round log {log} failed: No space left on device; the log {log} "
                                  "keeps rounds 1..2")
    rep = run_here(["report", str(log), "--no-plots"])
    assert rep.returncode == 0, rep.stderr
    assert "rounds 2" in rep.stdout and "not completely written" not in rep.stdout
    assert "status: stopped early (failed) after 2 of 4 rounds" in rep.stdout
    with h5py.File(log, "r") as f:  # raw /rounds (the README's pandas example) holds only complete rounds
        assert f["rounds"].shape == (2,) and f["status"][()] == b"failed"
