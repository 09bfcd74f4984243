"""Under --protocol paper, --rounds R is the published R (round 0, the seeding round, then 1..R:
R + 1 rounds), the progress lines and the log carry the published round number beside ours, and
the per-round line names its metrics (macro-F1 is the paper's, the cohort F1 ours)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from relief_mpi.cli.output import format_round
from relief_mpi.log.hdf5 import read_log
from tests.helpers import run_here

PAPER = ["train", "--transport", "inprocess", "--clients", "10", "--protocol", "paper", "--local-epochs", "1",
         "--encoder-channels", "8,16", "--strategy", "fedavg"]
LINE = re.compile(r"^round +(\d+)/(\d+) \(published (\d+)/(\d+)\)  acc [0-9.]+  macro-F1 [0-9.]+ \(the paper's "
                  r"metric\)  rare-cohort-F1 [0-9.]+ \(ours\)  round")


def test_paper_rounds_are_the_published_r(tmp_path: Path) -> None:
    log = tmp_path / "p.h5"
    res = run_here([*PAPER, "--rounds", "1", "--checkpoint-every", "1", "--out", str(log)])
    assert res.returncode == 0, res.stderr
    assert "; rounds 1..2 (published 0..1)" in res.stdout
    rows = [LINE.match(x) for x in res.stdout.splitlines() if x.startswith("round ")]
    assert all(rows) and [m.groups() for m in rows if m] == [("1", "2", "0", "1"), ("2", "2", "1", "1")], res.stdout
    run = read_log(log)
    assert run.rounds["round"].tolist() == [1, 2] and run.rounds["published_round"].tolist() == [0.0, 1.0]
    assert run.config["rounds"] == 2  # the frozen config holds every round the run makes
    # config show writes the published R back, so `train --config` repeats the run
    shown = run_here(["config", "show", str(log)])
    assert shown.returncode == 0 and "\nrounds = 1\n" in shown.stdout, shown.stdout
    # --resume --rounds 2 extends to the published R = 2: one more round, published round 2
    res = run_here(["train", "--transport", "inprocess", "--resume", str(log), "--rounds", "2"])
    assert res.returncode == 0, res.stderr
    run = read_log(log)
    assert run.rounds["round"].tolist() == [1, 2, 3] and np.array_equal(run.rounds["published_round"], [0, 1, 2])
    assert any(x.startswith("round   3/3 (published 2/2)") for x in res.stdout.splitlines()), res.stdout


def test_our_protocol_line_names_the_cohort_metric() -> None:
    from relief_mpi.log.hdf5 import RoundRecord

    row = {"round": 4, "accuracy": 0.5, "macro_f1": 0.25, "rare_f1": 0.125, "wall_time_s": 1.0,
           "virtual_time_s": 2.0}
    rec = RoundRecord(row, {}, np.zeros(0), np.zeros((0, 0), np.uint8), np.zeros(0))
    ours = format_round(rec, 20)
    assert ours.startswith("round   4/20  acc 0.500  macro-F1 0.250  rare-cohort-F1 0.125  round 1.00 s wall")
    assert "published" not in ours and "rare-F1" not in ours
    paper = format_round(rec, 21, paper=True)
    assert paper.startswith("round   4/21 (published 3/20)") and "macro-F1 0.250 (the paper's metric)" in paper
