"""Issue 13, items 6 and 11, as a user sees them under mpiexec: rank 0 prints the start-up phases
(data, model, communicators) before round 1; a rejected client update is one warning line (printed
once, not once per rank), and `report` shows the rejections in its summary and its rejected column."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relief_mpi.log.hdf5 import read_log
from tests.helpers import FAST, run_here, run_mpi


@pytest.mark.mpi
def test_start_up_phases_and_a_rejected_update_are_said_once(tmp_path: Path) -> None:
    log = tmp_path / "n.h5"
    res = run_mpi(3, ["train", "--rounds", "2", *FAST, "--fault", "nan:2:2", "--out", str(log)], timeout=240)
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    first_round = next(i for i, x in enumerate(out) if x.startswith("round "))
    start = [x for x in out[:first_round] if x.startswith("start: ")]
    assert len(start) == 4 and len(start) == first_round, out
    assert start[0] == "start: data (synthetic) and model (paper, cnn) for 2 client(s)"
    assert re.fullmatch(r"start: data and model ready in \d+\.\d s \(\d+ training windows, 15 parameter groups, "
                        r"strategy fedavg\)", start[1]), start[1]
    assert start[2] == "start: connecting 2 client(s) (handshake, communicators)"
    assert re.fullmatch(r"start: ready after \d+\.\d s; rounds 1\.\.2", start[3]), start[3]
    # rank 2 (client 1) sends a NaN update in round 2: one warning line, from rank 0 only
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert err == ["warning: round 2: 1 of 2 client updates rejected (non-finite), ranks 2; the others were "
                   "aggregated"], res.stderr
    assert read_log(log).rounds["rejected"].tolist() == [0, 1]
    rep = run_here(["report", str(log), "--no-plots"])
    assert rep.returncode == 0, rep.stderr
    assert "rejected updates (non-finite): 1 client update(s) in round(s) 2" in rep.stdout
    head = next(x for x in rep.stdout.splitlines() if x.split()[:2] == ["client", "rank"])
    assert head.split()[-1] == "rejected"
    table = {int(x.split()[0]): int(x.split()[-1]) for x in rep.stdout.splitlines()
             if re.match(r"^\s+\d+\s+\d+\s", x)}
    assert table == {0: 0, 1: 1}, rep.stdout
