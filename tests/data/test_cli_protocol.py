"""--protocol / --partition / --split / --test-subjects as the commands parse them: what --protocol
paper sets, that options the user gives win, and one `error:` line (exit 2) for combinations
that make no sense."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from relief_mpi.cli.bench import command as bench
from relief_mpi.cli.options import build_config
from relief_mpi.cli.train import train
from relief_mpi.config import RunConfig, StrategyConfig
from relief_mpi.data.registry import build_federated, load_raw
from relief_mpi.errors import ReliefError
from relief_mpi.log.hdf5 import read_log
from relief_mpi.run import run_inprocess
from tests.helpers import run_cli


def parsed(args: list[str], cmd: click.Command = train) -> RunConfig:
    """The RunConfig `cmd` would run with for these arguments (parsed by click, nothing run)."""
    with cmd.make_context(cmd.name or "cmd", list(args)) as ctx:
        kw = dict(ctx.params)
        if cmd is bench:
            kw.update(strategy="fedavg", seed=0)
        return build_config(kw)


def test_protocol_paper_sets_the_published_protocol() -> None:
    for cmd in (train, bench):
        cfg = parsed(["--protocol", "paper"], cmd)
        d = cfg.data
        assert (d.protocol, d.window, d.stride, d.partition, d.split, d.test_fraction) == \
            ("paper", 256, 50, "subject", "paper", 0.2)
        assert (d.modality_by, d.downsample, d.server_fraction) == ("type", 1, 0.0)
        assert (cfg.device.fleet, cfg.rounds, cfg.strategy.local_epochs, cfg.strategy.batch_size) == \
            ("paper", 201, 5, 32)  # --rounds 200 is the published R: round 0 then 1..200
        assert cfg.strategy.lr == 1e-3  # fedavg, a published preset: Adam 1e-3
    pa = parsed(["--protocol", "paper", "--dataset", "pamap2", "--data-dir", "x"]).data
    assert pa.downsample == 2  # 100 -> 50 Hz
    ours = parsed([])
    assert (ours.data.protocol, ours.data.partition, ours.data.split, ours.rounds, ours.device.fleet) == \
        ("ours", "dirichlet", "time", 20, None)


def test_options_given_win_over_the_protocol() -> None:
    cfg = parsed(["--protocol", "paper", "--rounds", "3", "--local-epochs", "1", "--batch-size", "8",
                  "--fleet", "my.toml", "--split", "time"])
    # --rounds 3 under the paper protocol is the published R = 3: round 0, then 1..3
    assert (cfg.rounds, cfg.strategy.local_epochs, cfg.strategy.batch_size, cfg.device.fleet) == (4, 1, 8, "my.toml")
    assert (cfg.data.split, cfg.data.partition, cfg.data.window) == ("time", "subject", 256)
    cfg = parsed(["--protocol", "paper", "--split", "subject", "--test-subjects", "2"])
    assert (cfg.data.split, cfg.data.test_subjects) == ("subject", 2)
    cfg = parsed(["--protocol", "paper", "--partition", "dirichlet"])  # paper preprocessing, Dirichlet shards
    assert (cfg.data.partition, cfg.data.split, cfg.data.window) == ("dirichlet", "time", 256)
    cfg = parsed(["--protocol", "paper", "--dataset", "pamap2", "--data-dir", "x", "--downsample", "1"])
    assert cfg.data.downsample == 1
    cfg = parsed(["--partition", "subject", "--split", "paper"])  # our preprocessing, the authors' split
    assert (cfg.data.protocol, cfg.data.partition, cfg.data.split, cfg.data.window, cfg.rounds) == \
        ("ours", "subject", "paper", 0, 20)
    # a caller that sets a value itself says so, and the protocol leaves it alone
    with train.make_context("train", ["--protocol", "paper"]) as ctx:
        assert build_config({**ctx.params, "rounds": 7}, {"rounds"}).rounds == 8  # published R = 7


BAD = [
    (["--split", "paper"], "--split paper needs --partition subject"),
    (["--partition", "dirichlet", "--split", "subject"], "--split subject needs --partition subject"),
    (["--protocol", "paper", "--partition", "dirichlet", "--split", "paper"], "--split paper needs --partition"),
    (["--protocol", "paper", "--test-subjects", "2"], "--test-subjects only applies to --split subject"),
    (["--partition", "subject", "--alpha", "0.5"], "--alpha sets the Dirichlet label skew"),
    (["--protocol", "paper", "--window-s", "5"], "--window-s does not apply under --protocol paper"),
    (["--protocol", "paper", "--mode", "lora"], "keeps no server split"),
    (["--protocol", "paper", "--modality-by", "position"], "--fleet paper gives devices sensor types"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_combinations_that_make_no_sense(args: list[str], message: str) -> None:
    with pytest.raises(ReliefError, match=message.replace("-", r"\-")) as e:
        parsed(args)
    assert "\n" not in str(e.value)


SPLIT_ERROR = "error: --split paper needs --partition subject (the Dirichlet partition cuts every label run on time: " \
              "--split time)"


def test_bad_combination_is_one_error_line_and_exit_2(tmp_path: Path, relief) -> None:  # noqa: ANN001
    r = run_cli(["train", "--transport", "inprocess", "--split", "paper"], timeout=120)  # the installed command
    assert (r.returncode, r.stderr.strip().splitlines()) == (2, [SPLIT_ERROR]), r.stderr
    for cmd in (["bench", "--transport", "inprocess"], ["pretrain", "--out", str(tmp_path / "b.pt")],
                ["data", "info"]):
        code, _, err = relief([*cmd, "--split", "paper"])
        assert (code, err.strip().splitlines()) == (2, [SPLIT_ERROR]), cmd
    code, _, err = relief(["pretrain", "--out", str(tmp_path / "b.pt"), "--protocol", "paper"])
    assert code == 2 and err.startswith("error: --protocol paper keeps no server split") and err.count("\n") == 1


def test_help_explains_the_new_options(relief) -> None:  # noqa: ANN001
    for cmd in (["train"], ["bench"], ["pretrain"], ["data", "info"]):
        code, out, _ = relief([*cmd, "--help"])
        assert code == 0
        for text in ("--protocol [ours|paper]", "--partition [dirichlet|subject]",
                     "--split [time|paper|paper-streams|subject|file]", "--split-file", "--test-subjects", "it leaks",
                     "one client per subject", "held-out subjects"):
            assert text in " ".join(out.split()), (cmd, text)


def test_resume_refuses_a_changed_protocol_option(tmp_path: Path, relief) -> None:  # noqa: ANN001
    log = tmp_path / "r.h5"
    run_inprocess(RunConfig(rounds=1, checkpoint_every=1, strategy=StrategyConfig(name="fedavg-sgd", local_steps=1)),
                  2, log)
    code, _, err = relief(["train", "--transport", "inprocess", "--resume", str(log), "--rounds", "2",
                           "--partition", "subject"])
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: --resume {log}: the checkpoint was made with another config: data.partition (checkpoint "
        "'dirichlet', given 'subject'); drop those options to resume"]
    assert len(read_log(log).rounds) == 1


def test_pretrain_with_one_client_per_subject_holds_out_the_runs_server_split(tmp_path: Path,
                                                                              relief) -> None:  # noqa: ANN001
    code, out, err = relief(["pretrain", "--out", str(tmp_path / "b.pt"), "--partition", "subject", "--split",
                             "subject", "--pretrain-epochs", "1"])
    assert code == 0, err
    cfg = parsed(["--partition", "subject", "--split", "subject"])
    fd = build_federated(cfg.data, 0, [("acc", "gyro", "mag", "ecg")] * 8, load_raw(cfg.data, 0))  # 2 held out
    assert f"pretrained on {len(fd.server_train)} server windows" in out and len(fd.server_train) > 0
