"""`relief-mpi bench` end to end: one small MPI job, the in-process transport, and its refusals."""

from __future__ import annotations

import csv
import json

import pytest

from relief_mpi.log.hdf5 import read_log
from tests.bench.logs import write_log
from tests.data.layouts import mhealth_table, write_mhealth
from tests.helpers import FAST, run_here, run_mpi

FIGURES = ("f1_vs_time.png", "energy_per_tier.png", "bytes_per_round.png")


@pytest.mark.mpi
def test_mpi_paper_bench_lr_chosen_on_validation(tmp_path):
    """The paper's protocol under mpiexec: 3 subjects = 3 clients, the lr search on the validation
    split, the paper's table and its figures, progress lines, and a refused second bench."""
    write_mhealth(tmp_path / "mh", (1, 2, 3))
    out = tmp_path / "bench"
    args = ["bench", "--protocol", "paper", "--dataset", "mhealth", "--data-dir", str(tmp_path / "mh"),
            "--strategies", "fedavg,relief", "--rounds", "2", "--local-epochs", "1", "--seeds", "0",
            "--lr-grid", "0.0001,0.01", "--quiet", "--out-dir", str(out)]
    res = run_mpi(4, args, timeout=400)
    assert res.returncode == 0, res.stderr
    assert "run 1 of 6" in res.stdout and "run 6 of 6" in res.stdout and "ETA" in res.stdout
    chosen = json.loads((out / "bench.json").read_text())["chosen_lr"]
    for s in ("fedavg", "relief"):
        # every lr was scored on the validation split, never on the test set the table reports
        f1 = {}
        for lr in (0.0001, 0.01):
            search = read_log(out / "lr-search" / f"{s}-lr{lr:g}-seed0.h5")
            assert search.config["data"]["validation"] == pytest.approx(0.2)
            f1[lr] = search.rounds["macro_f1"][-1]
        assert chosen[s] == max(sorted(f1), key=lambda lr: (f1[lr], -lr))
        log = read_log(out / f"{s}-seed0.h5")
        assert log.config["strategy"]["lr"] == chosen[s]
        assert log.config["data"]["validation"] == 0 and log.config["data"]["protocol"] == "paper"
        # --rounds 2 under the paper protocol is the published R = 2: round 0, then 1..2
        assert len(log.rounds) == 3 and len(log.profiles) == 3
        assert log.class_f1.shape == (3, 12)
    md = (out / "summary.md").read_text()
    assert md.startswith("# relief-mpi bench: the paper's table")
    assert "final macro-F1 on the validation split" in md
    for name in ("paper.csv", "paper.json", "paper_f1.png", "energy_cumulative.png", "allocation.png",
                 "summary.csv", *FIGURES):
        assert (out / name).stat().st_size > 0, name
    assert res.stdout.count("# relief-mpi bench: the paper's table") == 1  # rank 0 printed the summary once
    # A second bench into the same folder is refused on every rank before any run (exit 2, no hang).
    # The folder is refused before any run, whatever the rank count: 2 ranks (the server and a
    # client that must leave as well) show it as 4 would.
    again = run_mpi(2, args, timeout=120)
    assert again.returncode == 2
    assert "--overwrite" in again.stderr


@pytest.mark.mpi
def test_mpi_system_clients_spread_over_client_ranks(tmp_path):
    """bench --system --clients 4 on 3 ranks: the training job has 4 clients, 2 on each client rank."""
    out = tmp_path / "system.json"
    res = run_mpi(3, ["bench", "--system", "--clients", "4", "--strategies", "fedavg-sgd", "--rounds", "2",
                      "--local-steps", "1", "--encoder-channels", "8,16", "--max-mb", "0", "--json-out", str(out)])
    assert res.returncode == 0, res.stderr
    ov = json.loads(out.read_text())["overhead"]
    assert ov["clients"] == 4 and ov["client_ranks"] == 2 and ov["clients_per_rank"] == [2, 2]


@pytest.mark.parametrize("args, n_clients", [([], None), (["--clients", "6"], 6)])
def test_system_passes_clients_only_when_given(monkeypatch, args, n_clients):
    """--clients' default (4, for --transport inprocess) must not reach --system: there it means one per rank."""
    from click.testing import CliRunner

    from relief_mpi.cli.bench import command

    seen = []

    def run_system(cfg, max_mb, json_out, say, n_clients=None):  # raising here would MPI_Abort pytest (_guarded)
        seen.append(n_clients)

    monkeypatch.setattr("relief_mpi.bench.system.run_system", run_system)
    res = CliRunner().invoke(command, ["--system", "--max-mb", "0", *args])
    assert res.exit_code == 0, res.output
    assert seen == [n_clients]


def _long_mhealth(root, subjects=(1, 2, 3)):
    """MHEALTH files whose label runs are long enough for the time split's 256-sample test windows."""
    d = root / "MHEALTHDATASET"
    d.mkdir(parents=True)
    for s in subjects:
        t = mhealth_table(s, [1] * 1400 + [4] * 1400 + [12] * 1400)
        lines = ["\t".join(str(float(v)) for v in row[:23]) + f"\t{int(row[23])}" for row in t]
        (d / f"mHealth_subject{s}.log").write_text("\n".join(lines) + "\n")


def test_inprocess_compare_corrected_rows(tmp_path):
    _long_mhealth(tmp_path / "mh")
    out = tmp_path / "c"
    res = run_here(["bench", "--protocol", "paper", "--dataset", "mhealth", "--data-dir", str(tmp_path / "mh"),
                    "--compare", "corrected", "--transport", "inprocess", "--clients", "3", "--rounds", "1",
                    "--local-epochs", "1", "--encoder-channels", "8,16", "--seeds", "0", "--quiet", "--no-plots",
                    "--out-dir", str(out)], timeout=600)
    # what is checked is which rows --compare corrected runs and how each is configured: narrow
    # encoders (the FAST model) run the same rows at a fraction of the compute
    assert res.returncode == 0, res.stderr
    cfg = {p.name.rsplit("-seed", 1)[0]: read_log(p).config for p in out.glob("*-seed0.h5")}
    assert set(cfg) == {"fedavg", "relief", "fedavg-fair", "relief+tstar", "fedavg+flops", "relief+flops",
                        "fedavg+time", "relief+time", "relief+all", "fedavg-fair+all"}
    assert cfg["relief+tstar"]["strategy"]["t_star_bracket"] == "contains-overhead"
    assert cfg["relief"]["strategy"]["t_star_bracket"] == "published"
    assert cfg["fedavg+flops"]["strategy"]["cost_model"] == "flops"
    assert (cfg["relief+time"]["data"]["split"], cfg["relief+time"]["data"]["protocol"]) == ("time", "ours")
    assert cfg["relief+time"]["data"]["window"] == 256  # the paper's windows kept
    everything = cfg["relief+all"]
    assert (everything["strategy"]["t_star_bracket"], everything["strategy"]["cost_model"],
            everything["data"]["split"]) == ("contains-overhead", "flops", "time")
    assert cfg["fedavg-fair+all"]["strategy"]["name"] == "fedavg-fair"
    md = (out / "summary.md").read_text()
    assert "How much of RELIEF's gain remains under each correction" in md
    for title in ("fair baseline: fedavg-fair", "T* bracket contains T_o", "leak-free split (time)",
                  "every correction together"):
        assert title in md


def test_inprocess_bench_and_summary_only(tmp_path):
    out = tmp_path / "b"
    res = run_here(["bench", "--transport", "inprocess", "--clients", "3", "--strategies", "fedavg",
                    "--seeds", "3", "--rounds", "1", "--local-steps", "1", *FAST, "--quiet", "--no-plots",
                    "--out-dir", str(out)], timeout=200)
    assert res.returncode == 0, res.stderr
    assert read_log(out / "fedavg-seed3.h5").config["seed"] == 3
    assert (out / "summary.md").exists() and not (out / FIGURES[0]).exists()
    # --summary-only redraws from the logs alone, here with a hand-made second strategy added.
    write_log(out / "relief-seed3.h5", "relief", 3, [1.0])
    res = run_here(["bench", "--summary-only", "--strategies", "relief,fedavg", "--out-dir", str(out)])
    assert res.returncode == 0, res.stderr
    rows = [r["strategy"] for r in csv.DictReader(open(out / "summary.csv"))]
    assert rows == ["relief", "fedavg"]
    assert all((out / f).exists() for f in FIGURES)
    # Without --strategies: the order bench.json planned (fedavg), unplanned logs after it, and its meta.
    write_log(out / "b-uniform-seed3.h5", "b-uniform", 3, [1.0])
    res = run_here(["bench", "--summary-only", "--no-plots", "--out-dir", str(out)])
    assert res.returncode == 0, res.stderr
    assert [r["strategy"] for r in csv.DictReader(open(out / "summary.csv"))] == ["fedavg", "b-uniform", "relief"]
    assert "bench wall time (s)" in (out / "summary.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--strategies", "fedavg,nope"], "'nope' is not available"),
    (["--strategy", "relief"], "bench takes --strategies"),
    (["--seeds", "0,x"], "--seeds"),
    (["--lr-grid", "0.1,0.1"], "repeated"),
    (["--budget", "quick"], "--budget applies to --protocol paper"),
    (["--protocol", "paper", "--compare", "corrected", "--strategies", "relief"], "give --compare or --strategies"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, args, message):
    res = run_here(["bench", "--transport", "inprocess", "--out-dir", str(tmp_path), *args])
    assert res.returncode == 2
    assert message in res.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--seeds", "-1"], "error: --seeds: -1 is not a seed (0..4294967295, as --seed)"),
    (["--seeds", "0,99999999999"], "error: --seeds: 99999999999 is not a seed (0..4294967295, as --seed)"),
    (["--strategies", ""], "error: --strategies: give a comma-separated list"),
    (["--strategies", " , "], "error: --strategies: give a comma-separated list"),
    (["--lr-grid", "nan"], "error: --lr-grid: learning rates must be in (0, 10], as --lr"),
    (["--lr-grid", ""], "error: --lr-grid: give a comma-separated list"),
    (["--clients", "99999999999"], "error: --clients 99999999999: needs at least "),
])
def test_bad_seeds_and_strategies_are_one_line(tmp_path, args, message):
    """Issue 22 case 15: a seed outside --seed's range and an empty --strategies (which ran the default
    set) are one `error:` line, exit 2, before any run."""
    res = run_here(["bench", "--transport", "inprocess", "--out-dir", str(tmp_path / "b"), *args])
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().startswith(message) and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "b").exists()


def test_resume_keeps_complete_logs_and_summary_ignores_unplanned_ones(tmp_path):
    out = tmp_path / "b"
    base = ["bench", "--transport", "inprocess", "--clients", "3", "--strategies", "fedavg", "--rounds", "1",
            "--local-steps", "1", *FAST, "--quiet", "--no-plots", "--out-dir", str(out)]
    assert run_here([*base, "--seeds", "3"], timeout=200).returncode == 0
    first = (out / "fedavg-seed3.h5").stat().st_mtime_ns
    res = run_here([*base, "--seeds", "3,4", "--resume"], timeout=200)
    assert res.returncode == 0, res.stderr
    assert "fedavg seed 3 lr 0.001: complete log" in res.stdout
    assert (out / "fedavg-seed3.h5").stat().st_mtime_ns == first  # kept, not rerun
    assert read_log(out / "fedavg-seed4.h5").config["seed"] == 4
    # A new bench with other seeds: the seed-3 and seed-4 logs stay on disk but are not its runs.
    res = run_here([*base, "--seeds", "5", "--overwrite"], timeout=200)
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


def test_inprocess_lora_bench_shares_one_base_per_seed(tmp_path):
    write_mhealth(tmp_path / "mh", (1, 2, 3))
    out = tmp_path / "l"
    res = run_here(["bench", "--dataset", "mhealth", "--data-dir", str(tmp_path / "mh"), "--window-s", "1",
                    "--mode", "lora", "--pretrain-epochs", "1", "--strategies", "fedavg,relief-ucb", "--seeds", "0,1",
                    "--rounds", "1", "--local-steps", "1", "--encoder-channels", "8,16", "--transport", "inprocess",
                    "--clients", "3", "--quiet", "--no-plots", "--out-dir", str(out)], timeout=600)
    assert res.returncode == 0, res.stderr
    for seed in (0, 1):
        assert res.stdout.count(f"pretraining the LoRA base of seed {seed} ") == 1  # once, for every strategy
        bases = {read_log(out / f"{s}-seed{seed}.h5").config["model"]["base"] for s in ("fedavg", "relief-ucb")}
        assert bases == {str(out / f"base-seed{seed}.pt")}
        assert (out / f"base-seed{seed}.pt").stat().st_size > 0
