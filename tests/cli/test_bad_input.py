"""Bad input: one line naming the problem, exit 2, nothing written."""

from pathlib import Path

import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize("args,needle", [
    (["--strategy", "bogus"], "--strategy"),
    (["--rounds", "0"], "--rounds"),
    (["--rounds", "-3"], "--rounds"),
    (["--lr", "-1"], "--lr"),
    (["--deadline", "soon"], "--deadline"),
    (["--clock", "fast"], "--clock"),
    (["--dataset", "spar"], "--data-dir"),
    (["--base", "x.pt"], "--base is only used with --mode lora"),
    (["--mode", "lora", "--base", "/nonexistent.pt"], "no such file"),
    (["--fleet", "/nonexistent.toml"], "/nonexistent.toml"),
    (["--out", "log.txt"], "ending in .h5"),
])
def test_bad_option_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    res = run_cli(["train", "--transport", "inprocess", "--rounds", "1", *args], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.rglob("*.h5"))
