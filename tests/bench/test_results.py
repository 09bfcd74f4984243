"""One module of run results for both tables: a log file's row label (the same in our table and the
paper's, lr-search/ logs included), time to target through metrics.first_reached, ratio and fmt."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from relief_mpi.bench import paper, summary
from relief_mpi.bench.results import fmt, label_of, ratio, reach, reduction_pct
from relief_mpi.log.hdf5 import read_log
from tests.bench.logs import write_log

NAN = math.nan


def test_label_of_a_run_an_lr_search_log_a_compare_label_and_a_foreign_name(tmp_path: Path) -> None:
    (tmp_path / "lr-search").mkdir()
    run = write_log(tmp_path / "relief-seed3.h5", "relief", 3, [0.5])
    search = write_log(tmp_path / "lr-search" / "relief-lr0.001-seed3.h5", "relief", 3, [0.5], lr=1e-3)
    compare = write_log(tmp_path / "relief+contains-overhead-seed0.h5", "relief", 0, [0.5])
    other = write_log(tmp_path / "mine.h5", "fedprox", 0, [0.5])
    with h5py.File(other, "a") as f:  # a log without the strategy attribute: its config names it
        del f.attrs["strategy"]
    assert label_of(run, read_log(run)) == "relief"
    # An lr-search log is a run of the strategy searched (one row, not one per learning rate), in
    # both tables: the paper table used to name it "relief-lr0.001".
    assert label_of(search, read_log(search)) == "relief"
    assert paper.paper_run(read_log(search), search).label == "relief"
    assert summary.run_result(read_log(search), search, label_of(search, read_log(search))).strategy == "relief"
    # Outside lr-search/ the -lr part is the label's (a --compare label may hold anything).
    assert label_of(tmp_path / "relief-lr0.001-seed3.h5", read_log(search)) == "relief-lr0.001"
    assert label_of(compare, read_log(compare)) == "relief+contains-overhead"
    assert label_of(other, read_log(other)) == "fedprox"
    assert paper.paper_run(read_log(other), other).label == "fedprox"  # was "None"


def test_time_to_target_is_the_first_evaluated_round_at_or_above_it_in_both_tables(tmp_path: Path) -> None:
    p = write_log(tmp_path / "fedavg-seed0.h5", "fedavg", 0, [0.5, NAN, 0.7, 0.9], round_s=10.0, wall_s=2.0,
                  energy=5.0)
    log = read_log(p)
    hit = reach(log, 0.7)
    assert (hit.round, hit.virtual_s, hit.wall_s, hit.energy_j) == (3, 30.0, 6.0, 15.0)
    assert not reach(log, 0.95).reached and not reach(log, NAN).reached
    res = summary.run_result(log, p)
    summary.apply_target(res, log, 0.7)
    assert (res.round_reached, res.time_virtual_s, res.time_wall_s, res.energy_to_target_j) == (3, 30.0, 6.0, 15.0)
    summary.apply_target(res, log, 0.95)
    assert res.round_reached == 0 and math.isnan(res.time_virtual_s)
    assert paper.reach is reach  # the paper table uses the same function


def test_ratio_reduction_and_fmt() -> None:
    assert ratio(6.0, 3.0) == 2.0
    assert all(math.isnan(ratio(a, b)) for a, b in ((1.0, 0.0), (NAN, 1.0), (1.0, NAN), (1.0, -2.0)))
    assert reduction_pct(63.0, 100.0) == 37.0 and math.isnan(reduction_pct(1.0, 0.0))
    assert fmt(0.12345) == "0.123" and fmt(2.5, ".1f") == "2.5" and fmt(-1.0, "+.1f") == "-1.0"
    assert fmt(NAN) == fmt(math.inf) == fmt(None) == "n/a"
    assert fmt(float(np.float64(3.0)), ".0f") == "3"
