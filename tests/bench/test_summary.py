"""The bench's summary math on hand-made logs (no training, no MPI)."""

from __future__ import annotations

import csv
import math

import pytest

from relief_mpi.bench import summary as sm
from relief_mpi.bench.runner import write_outputs
from relief_mpi.log.hdf5 import read_log
from tests.bench.logs import write_log


def _summarize(paths, target=None):
    return sm.summarize([(read_log(p), str(p)) for p in paths], target)


def test_default_target_speedup_energy_and_pp_gain(tmp_path):
    # FedAvg: final 0.80 -> target 0.76, first reached at round 4 (virtual 4 x 10 s, wall 4 x 1 s).
    fa = write_log(tmp_path / "fedavg-seed0.h5", "fedavg", 0, [0.2, 0.5, 0.7, 0.77, 0.8],
                   rare=[0.1, 0.2, 0.3, 0.4, 0.5], energy=10.0)
    # Other: reaches 0.76 at round 2, rounds last 5 s; energy 4 J/round; rare-F1 0.62 at the end.
    re_ = write_log(tmp_path / "relief-seed0.h5", "relief", 0, [0.3, 0.76, 0.7, 0.9, 0.85],
                    rare=[0.1, 0.2, 0.3, 0.4, 0.62], round_s=5.0, wall_s=2.0, energy=4.0)
    s = _summarize([fa, re_])
    assert s.targets[0] == pytest.approx(0.95 * 0.8)
    fed, rel = s.get("fedavg"), s.get("relief")
    assert fed.runs[0].round_reached == 4
    assert fed.runs[0].time_virtual_s == pytest.approx(40.0)
    assert fed.runs[0].time_wall_s == pytest.approx(4.0)
    assert rel.runs[0].round_reached == 2
    assert rel.runs[0].time_virtual_s == pytest.approx(10.0)
    assert rel.stats["speedup_virtual"].mean == pytest.approx(4.0)
    assert rel.stats["speedup_wall"].mean == pytest.approx(1.0)
    assert rel.stats["energy_j"].mean == pytest.approx(20.0)
    assert rel.stats["energy_reduction_pct"].mean == pytest.approx(60.0)  # 1 - 20 / 50
    assert rel.runs[0].energy_to_target_j == pytest.approx(8.0)
    assert rel.stats["energy_to_target_reduction_pct"].mean == pytest.approx(80.0)  # 1 - 8 / 40
    assert rel.stats["rare_gain_pp"].mean == pytest.approx(12.0)
    assert rel.stats["final_macro_f1"].mean == pytest.approx(0.85)
    assert rel.stats["mb_up"].mean == pytest.approx(5.0)
    assert rel.stats["mb_down"].mean == pytest.approx(10.0)
    assert fed.stats["speedup_virtual"].mean == pytest.approx(1.0)


def test_not_reached_has_no_time_and_no_speedup(tmp_path):
    fa = write_log(tmp_path / "fedavg-seed0.h5", "fedavg", 0, [0.5, 0.9])
    slow = write_log(tmp_path / "fedprox-seed0.h5", "fedprox", 0, [0.3, 0.6])
    s = _summarize([fa, slow])
    run = s.get("fedprox").runs[0]
    assert not run.reached
    assert math.isnan(run.time_virtual_s) and math.isnan(run.time_wall_s)
    assert s.get("fedprox").stats["speedup_virtual"].count == 0
    md = sm.markdown(s)
    row = next(line for line in md.splitlines() if line.startswith("| fedprox |") and "speedup" not in line
               and "not reached" in line)
    assert "n/a (target not reached)" in row


def test_partial_reach_over_seeds_and_nan_rounds(tmp_path):
    paths = [write_log(tmp_path / "fedavg-seed0.h5", "fedavg", 0, [0.4, 0.8]),
             write_log(tmp_path / "fedavg-seed1.h5", "fedavg", 1, [0.4, 0.6]),
             # seed 0: round 1 not evaluated (NaN), reaches 0.76 at round 2; seed 1: never reaches 0.57
             write_log(tmp_path / "relief-seed0.h5", "relief", 0, [math.nan, 0.8]),
             write_log(tmp_path / "relief-seed1.h5", "relief", 1, [0.3, 0.5])]
    s = _summarize(paths)
    rel = s.get("relief")
    assert [r.round_reached for r in rel.runs] == [2, 0]
    assert rel.stats["time_virtual_s"].count == 1
    assert rel.stats["speedup_virtual"].values[0] == pytest.approx(1.0)
    assert math.isnan(rel.stats["speedup_virtual"].values[1])
    assert "(1/2 reached)" in sm.markdown(s)
    assert rel.stats["final_macro_f1"].mean == pytest.approx(0.65)
    assert rel.stats["final_macro_f1"].std == pytest.approx(math.sqrt(2 * 0.15 ** 2))


def test_explicit_target_and_missing_baseline(tmp_path):
    p = write_log(tmp_path / "relief-seed0.h5", "relief", 0, [0.3, 0.5, 0.7])
    s = _summarize([p], target=0.5)
    assert s.get("relief").runs[0].round_reached == 2
    assert s.get("relief").runs[0].time_virtual_s == pytest.approx(20.0)
    s2 = _summarize([p])
    assert math.isnan(s2.targets[0])
    md = sm.markdown(s2)
    assert "n/a (no target)" in md and "n/a (no fedavg)" in md


def test_best_lr_prefers_highest_f1_then_smaller_lr_and_skips_nan():
    assert sm.best_lr({0.02: 0.5, 0.05: 0.7, 0.1: 0.6}) == 0.05
    assert sm.best_lr({0.1: 0.7, 0.02: 0.7}) == 0.02
    assert sm.best_lr({0.1: math.nan, 0.05: 0.1}) == 0.05


def test_write_outputs_files_and_csv(tmp_path):
    write_log(tmp_path / "fedavg-seed0.h5", "fedavg", 0, [0.5, 0.8], lr=0.1)
    write_log(tmp_path / "relief-seed0.h5", "relief", 0, [0.78, 0.9], round_s=2.0)
    (tmp_path / "lr-search").mkdir()
    write_log(tmp_path / "lr-search" / "fedavg-lr0.1-seed0.h5", "fedavg", 0, [0.5, 0.8], lr=0.1)
    write_log(tmp_path / "lr-search" / "fedavg-lr0.05-seed0.h5", "fedavg", 0, [0.5, 0.6], lr=0.05)
    files = write_outputs(tmp_path, None, ("relief", "fedavg"))
    names = {p.name for p in files}
    assert {"summary.md", "summary.csv", "runs.csv", "f1_vs_time.png", "energy_per_tier.png",
            "bytes_per_round.png"} <= names
    for p in files:
        assert p.stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [r["strategy"] for r in rows] == ["relief", "fedavg"]  # the order asked for
    rel = rows[0]
    assert float(rel["speedup_virtual_mean"]) == pytest.approx(10.0)  # fedavg 20 s (round 2) / relief 2 s
    assert rows[1]["lr"] == "0.1"
    md = (tmp_path / "summary.md").read_text()
    assert "| fedavg | 0.600 | 0.800* |" in md  # lr search table, chosen lr starred
    runs = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert len(runs) == 2  # the lr-search logs are not bench runs


def test_overhead_from_log(tmp_path):
    from relief_mpi.bench.system import overhead_from_log

    p = write_log(tmp_path / "fedavg-seed0.h5", "fedavg", 0, [0.1, 0.2, 0.3], wall_s=0.5, compute=(0.1, 0.4))
    ov = overhead_from_log(p, cores=2)
    assert ov["overhead_s"] == pytest.approx(0.1)
    assert ov["overhead_frac"] == pytest.approx(0.2)
    assert ov["clients"] == 2
