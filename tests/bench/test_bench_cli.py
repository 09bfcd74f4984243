"""`relief-mpi bench` end to end: one small MPI job, the in-process transport, and its refusals."""

from __future__ import annotations

import csv
import json

import pytest

from relief_mpi.log.hdf5 import read_log
from tests.bench.logs import write_log
from tests.helpers import run_cli, run_mpi

FIGURES = ("f1_vs_time.png", "energy_per_tier.png", "bytes_per_round.png")


@pytest.mark.mpi
def test_mpi_bench_two_strategies_two_seeds(tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--strategies", "fedavg,fedprox", "--rounds", "2", "--seeds", "0,1", "--local-steps", "2",
            "--lr-grid", "0.01,0.3", "--quiet", "--out-dir", str(out)]
    res = run_mpi(4, args, timeout=300)
    assert res.returncode == 0, res.stderr
    for s in ("fedavg", "fedprox"):
        for seed in (0, 1):
            log = read_log(out / f"{s}-seed{seed}.h5")
            assert log.attrs["strategy"] == s
            assert log.config["seed"] == seed
            assert len(log.rounds) == 2
            assert len(log.profiles) == 3  # 4 ranks = server + 3 clients
    # The lr search: each strategy ran seed 0 with both lrs; the best final macro-F1 was chosen on
    # rank 0, reached every rank (seed 1 ran with it) and its seed-0 log is the bench's seed-0 run.
    chosen = json.loads((out / "bench.json").read_text())["chosen_lr"]
    for s in ("fedavg", "fedprox"):
        f1 = {lr: read_log(out / "lr-search" / f"{s}-lr{lr:g}-seed0.h5").rounds["macro_f1"][-1] for lr in (0.01, 0.3)}
        best = max(sorted(f1), key=lambda lr: (f1[lr], -lr))
        assert chosen[s] == best
        assert read_log(out / f"{s}-seed0.h5").config["strategy"]["lr"] == best
        assert read_log(out / f"{s}-seed1.h5").config["strategy"]["lr"] == best
    for name in ("summary.md", "summary.csv", "runs.csv", *FIGURES):
        assert (out / name).stat().st_size > 0, name
    rows = {r["strategy"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert set(rows) == {"fedavg", "fedprox"}
    assert rows["fedavg"]["seeds"] == "2"
    # FedAvg always reaches 95% of its own final macro-F1: its time is defined on both seeds.
    assert rows["fedavg"]["time_virtual_s_n"] == "2"
    assert float(rows["fedavg"]["speedup_virtual_mean"]) == pytest.approx(1.0)
    assert "## Time to target" in res.stdout  # rank 0 printed the summary once
    assert res.stdout.count("# relief-mpi bench summary") == 1
    # A second bench into the same folder is refused on every rank before any run (exit 2, no hang).
    again = run_mpi(4, args, timeout=120)
    assert again.returncode == 2
    assert "--overwrite" in again.stderr


def test_inprocess_bench_and_summary_only(tmp_path):
    out = tmp_path / "b"
    res = run_cli(["bench", "--transport", "inprocess", "--clients", "3", "--strategies", "fedavg",
                   "--seeds", "3", "--rounds", "1", "--local-steps", "1", "--quiet", "--no-plots",
                   "--out-dir", str(out)], timeout=200)
    assert res.returncode == 0, res.stderr
    assert read_log(out / "fedavg-seed3.h5").config["seed"] == 3
    assert (out / "summary.md").exists() and not (out / FIGURES[0]).exists()
    # --summary-only redraws from the logs alone, here with a hand-made second strategy added.
    write_log(out / "relief-seed3.h5", "relief", 3, [1.0])
    res = run_cli(["bench", "--summary-only", "--strategies", "relief,fedavg", "--out-dir", str(out)])
    assert res.returncode == 0, res.stderr
    rows = [r["strategy"] for r in csv.DictReader(open(out / "summary.csv"))]
    assert rows == ["relief", "fedavg"]
    assert all((out / f).exists() for f in FIGURES)


@pytest.mark.parametrize("args, message", [
    (["--strategies", "fedavg,nope"], "'nope' is not available"),
    (["--strategy", "relief"], "bench takes --strategies"),
    (["--seeds", "0,x"], "--seeds"),
    (["--lr-grid", "0.1,0.1"], "repeated"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, args, message):
    res = run_cli(["bench", "--transport", "inprocess", "--out-dir", str(tmp_path), *args])
    assert res.returncode == 2
    assert message in res.stderr
    assert not list(tmp_path.iterdir())


def test_resume_keeps_complete_logs_and_summary_ignores_unplanned_ones(tmp_path):
    out = tmp_path / "b"
    base = ["bench", "--transport", "inprocess", "--clients", "3", "--strategies", "fedavg", "--rounds", "1",
            "--local-steps", "1", "--quiet", "--no-plots", "--out-dir", str(out)]
    assert run_cli([*base, "--seeds", "3"], timeout=200).returncode == 0
    first = (out / "fedavg-seed3.h5").stat().st_mtime_ns
    res = run_cli([*base, "--seeds", "3,4", "--resume"], timeout=200)
    assert res.returncode == 0, res.stderr
    assert "fedavg seed 3 lr 0.001: complete log" in res.stdout
    assert (out / "fedavg-seed3.h5").stat().st_mtime_ns == first  # kept, not rerun
    assert read_log(out / "fedavg-seed4.h5").config["seed"] == 4
    # A new bench with other seeds: the seed-3 and seed-4 logs stay on disk but are not its runs.
    res = run_cli([*base, "--seeds", "5", "--overwrite"], timeout=200)
    assert res.returncode == 0, res.stderr
    assert [r["seed"] for r in csv.DictReader(open(out / "runs.csv"))] == ["5"]


def test_complete_needs_every_round_and_the_same_config(tmp_path):
    from relief_mpi.bench.runner import complete
    from relief_mpi.config import RunConfig, StrategyConfig

    p = write_log(tmp_path / "fedavg-seed0.h5", "fedavg", 0, [0.1, 0.2], lr=0.1)
    cfg = RunConfig(rounds=2, seed=0, strategy=StrategyConfig(name="fedavg", lr=0.1))
    assert complete(cfg, p)
    assert not complete(RunConfig(rounds=3, seed=0, strategy=StrategyConfig(name="fedavg", lr=0.1)), p)
    assert not complete(RunConfig(rounds=2, seed=0, strategy=StrategyConfig(name="fedavg", lr=0.2)), p)
    assert not complete(cfg, tmp_path / "missing.h5")
