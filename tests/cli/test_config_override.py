"""Issue 13, item 12: `--config run.toml` for train and bench. The file's options become defaults,
options on the command line override them, tables set the settings that have no option, and a
bench run from the file runs exactly the configuration `train` would."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from relief_mpi.cli.bench import command as bench
from relief_mpi.cli.options import build_config
from relief_mpi.cli.train import train
from relief_mpi.config import RunConfig
from relief_mpi.log.hdf5 import read_log
from tests.helpers import run_here

RUN = """\
rounds = 3
local-epochs = 1
encoder-channels = [8, 16]
alpha = 0.5
clients = 3
lr = 0.02
[data]
test_fraction = 0.3
"""


def parsed(cmd: click.Command, args: list[str]) -> tuple[RunConfig, dict]:
    """The RunConfig `cmd` would run with (click parses, the --config callback runs, nothing trains)."""
    with cmd.make_context(cmd.name or "cmd", list(args)) as ctx:
        kw = dict(ctx.params)
        if cmd is bench:
            kw.update(strategy="fedavg", seed=0)
        return build_config(kw), kw


@pytest.fixture
def run_toml(tmp_path: Path) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(RUN)
    return p


@pytest.mark.parametrize("cmd", [train, bench], ids=["train", "bench"])
def test_config_file_sets_defaults_and_the_command_line_overrides_them(run_toml: Path, cmd: click.Command) -> None:
    cfg, kw = parsed(cmd, ["--config", str(run_toml)])
    assert (cfg.rounds, cfg.data.alpha, cfg.strategy.lr, cfg.strategy.local_epochs) == (3, 0.5, 0.02, 1)
    assert cfg.model.encoder_channels == (8, 16) and kw["clients"] == 3
    assert cfg.data.test_fraction == 0.3, "a [data] table sets a setting that has no option"
    over, kw = parsed(cmd, ["--config", str(run_toml), "--rounds", "1", "--alpha", "2", "--clients", "4"])
    assert (over.rounds, over.data.alpha, kw["clients"]) == (1, 2.0, 4), "options given win over the file"
    assert (over.strategy.lr, over.data.test_fraction) == (0.02, 0.3), "the rest still comes from the file"
    default, _ = parsed(cmd, [])
    assert (default.rounds, default.data.test_fraction) != (3, 0.3)


def test_bench_from_a_config_file_runs_the_configuration_train_would(tmp_path: Path, run_toml: Path) -> None:
    out = tmp_path / "b"
    res = run_here(["bench", "--transport", "inprocess", "--config", str(run_toml), "--rounds", "1",
                    "--strategies", "fedavg", "--seeds", "0", "--quiet", "--no-plots", "--out-dir", str(out)])
    assert res.returncode == 0, res.stderr
    log = read_log(out / "fedavg-seed0.h5")
    want, _ = parsed(train, ["--config", str(run_toml), "--rounds", "1", "--strategy", "fedavg"])
    assert log.config == json.loads(want.to_json())
    assert len(log.rounds) == 1 and len(log.profiles) == 3, "clients = 3 from the file"
