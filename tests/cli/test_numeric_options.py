"""Issue 13, "What to build": numbers are validated once, where options are parsed, with ranges a
user would accept and said in --help. Every numeric option of train, bench and pretrain has a
click range (shown in --help by click); pretrain's --seed takes the run's range, so `pretrain
--seed -1` is one error line, not a numpy traceback (item 9)."""

from __future__ import annotations

import click
import pytest

from relief_mpi.cli.bench import command as bench
from relief_mpi.cli.pretrain import command as pretrain
from relief_mpi.cli.train import train
from tests.cli.test_bad_input import main_in_process

# Options whose values are text on purpose: parsed (and range-checked) by their own code.
TEXT_NUMBERS = {"deadline", "round_timeout"}


@pytest.mark.parametrize("cmd", [train, bench, pretrain], ids=["train", "bench", "pretrain"])
def test_every_numeric_option_has_a_range_shown_in_help(cmd: click.Command) -> None:
    ctx = click.Context(cmd)
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.name in TEXT_NUMBERS:
            continue
        assert p.type not in (click.INT, click.FLOAT), f"{cmd.name} --{p.name}: a number without a range"
        if isinstance(p.type, (click.IntRange, click.FloatRange)):
            record = p.get_help_record(ctx)
            assert record and p.type._describe_range() in record[1], f"{cmd.name} --{p.name}: range not in --help"


def test_pretrain_seed_range_is_the_runs() -> None:
    def seed_type(cmd: click.Command) -> click.ParamType:
        return next(p.type for p in cmd.params if p.name == "seed")

    t, p = seed_type(train), seed_type(pretrain)
    assert isinstance(p, click.IntRange) and (p.min, p.max) == (t.min, t.max)  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", ["-1", str(2**40)])
def test_pretrain_bad_seed_is_one_line_and_exit_2(tmp_path, seed, capsys, monkeypatch) -> None:  # noqa: ANN001
    code, err = main_in_process(["pretrain", "--out", str(tmp_path / "b.pt"), "--seed", seed], capsys, monkeypatch)
    assert code == 2, err
    assert "--seed" in err and "Traceback" not in err, err
    assert not (tmp_path / "b.pt").exists()
