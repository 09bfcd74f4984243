"""Bad input: one line naming the problem, exit 2, nothing written."""

from pathlib import Path

import pytest

from tests.helpers import run_here


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
    # the real entry point, in this process: each of these is refused before any work, and no
    # interpreter start-up is needed to see its line and exit code
    res = run_here(["train", "--transport", "inprocess", "--rounds", "1", *args], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.rglob("*.h5"))


def main_in_process(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[
        int, str]:
    """`relief-mpi ARGS` through the real entry point, in this process (these fail before any work)."""
    from relief_mpi.cli import main

    monkeypatch.setattr("sys.argv", ["relief-mpi", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return int(e.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**40)], "--seed"),
    (["--window-s", "inf"], "--window-s"),
    (["--window-s", "nan"], "--window-s"),
    (["--alpha", "nan"], "--alpha"),
    (["--alpha", "inf"], "--alpha"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "1e9"], "--lr"),
    (["--batch-size", "100000"], "--batch-size"),
    (["--round-timeout", "0"], "--round-timeout"),
    (["--round-timeout", "soon"], "--round-timeout"),
    (["--out", "/proc/relief-mpi-test/x.h5"], "cannot write there"),
])
def test_numbers_and_paths_are_checked_where_parsed(tmp_path: Path, args: list[str], needle: str,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = main_in_process(["train", "--transport", "inprocess", "--rounds", "1", *args], capsys, monkeypatch)
    assert code == 2, err
    assert needle in err and "Traceback" not in err, err
    assert not list(tmp_path.rglob("*.h5"))


def test_out_under_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "r.h5"
    code, err = main_in_process(["train", "--transport", "inprocess", "--out", str(out)], capsys, monkeypatch)
    assert code == 2
    assert err.strip() == f"error: --out {out}: cannot write there ({tmp_path / 'file'} is a file, not a folder)"


def test_fleet_file_that_is_not_utf8_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = tmp_path / "f.toml"
    fleet.write_bytes(b'[[tier]]\nname = "caf\xe9"\nprofile = "jetson-nano"\nfraction = 1.0\n')
    code, err = main_in_process(["fleet", "show", "-n", "3", "--fleet", str(fleet)], capsys, monkeypatch)
    assert code == 2
    assert err.strip() == f"error: fleet file {fleet}: not UTF-8 text (byte 20); save it as UTF-8"


@pytest.mark.parametrize("text,needle", [
    ("rounds = 2\nbogus = 1\n", "unknown option 'bogus'"),
    ("rounds = [", "not valid TOML"),
    ("rounds = 0\n", "--rounds"),
    ("[data]\nalpha = 0.5\n", "[data] alpha has a command-line option"),
    ("[data]\nnope = 1\n", "[data] has no setting 'nope'"),
])
def test_bad_config_file_is_one_line(tmp_path: Path, text: str, needle: str, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    code, err = main_in_process(["train", "--transport", "inprocess", "--config", str(cfg)], capsys, monkeypatch)
    assert code == 2, err
    assert needle in err and "Traceback" not in err, err


@pytest.mark.parametrize("text,needle", [
    ("lr = [1, 2]\n", "--lr = [1, 2]: must be a number, not a list"),
    ("rounds = 2.5\n", "--rounds = 2.5: must be an integer, not a number"),
    ("rounds = true\n", "--rounds = True: must be an integer, not a boolean"),
    ("strategy = 3\n", "--strategy = 3: must be a string"),
    ("quiet = 1\n", "--quiet = 1: must be true or false"),
    ("encoder-channels = [8, 1.5]\n", "must be a list of integers"),
    ('[model]\nfusion_dim = "wide"\n', "[model] fusion_dim = 'wide': must be an integer, not a string"),
    ("[model]\nlora_rank = -1\n", "[model] lora_rank = -1: must be in [1, 4096]"),
    ("[model]\nlora_alpha = nan\n", "[model] lora_alpha = nan: must be in"),
    ("[strategy]\nheterofl_widths = [0, -1]\n", "[strategy] heterofl_widths = [0, -1]: each must be in (0.0, 1.0]"),
    ("[strategy]\nheterofl_widths = []\n", "must be a non-empty list of numbers"),
    ("[data]\ntest_fraction = 1.5\n", "[data] test_fraction = 1.5: must be in (0.0, 1.0)"),
    ("[data]\nwindow = 2.0\n", "[data] window = 2.0: must be an integer"),
])
def test_config_file_values_follow_the_flags_rules(tmp_path: Path, text: str, needle: str,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 case 10: a config file's value of the wrong kind or out of range is one `error:` line
    and exit 2 (click would coerce 2.5 to 2 and true to 1, or trace back on a list)."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    # a short run where the value is (wrongly) accepted: --rounds on the command line wins over the file's,
    # but the file's value is checked all the same
    code, err = main_in_process(["train", "--transport", "inprocess", "--config", str(cfg), "--rounds", "1",
                                 "--clients", "2", "--local-epochs", "1", "--encoder-channels", "4,4"],
                                capsys, monkeypatch)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not list(tmp_path.rglob("*.h5"))


def test_config_file_takes_a_number_for_a_deadline(tmp_path: Path) -> None:
    """The strict check keeps what is right: `deadline = 30` (a number for a word-or-number option)
    and a float option given as an integer (`lr = 1`) build the run's config."""
    from relief_mpi.cli.options import build_config
    from relief_mpi.cli.train import train

    cfg = tmp_path / "run.toml"
    cfg.write_text("deadline = 30\nlr = 1\nrounds = 3\n[model]\nlora_rank = 4\n")
    ctx = train.make_context("train", ["--config", str(cfg)])
    built = build_config(ctx.params)
    assert (built.strategy.deadline, built.strategy.lr, built.rounds, built.model.lora_rank) == ("30", 1.0, 3, 4)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0"])
def test_deadline_must_be_finite(tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 case 11: `--deadline nan` / `inf` are refused like `--round-timeout`'s."""
    monkeypatch.chdir(tmp_path)
    code, err = main_in_process(["train", "--transport", "inprocess", "--rounds", "1", "--deadline", value],
                                capsys, monkeypatch)
    assert code == 2, err
    assert "--deadline" in err and "Traceback" not in err, err
    assert not list(tmp_path.rglob("*.h5"))


def test_more_clients_than_memory_holds_is_one_line(tmp_path: Path) -> None:
    """Issue 22 case 7: `--clients 99999999999` is refused before anything is allocated (it grew past
    3 GB in 18 s, allocating a device per client, before the data could refuse it)."""
    res = run_here(["train", "--transport", "inprocess", "--clients", "99999999999", "--out", str(tmp_path / "r.h5")],
                   timeout=60)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --clients 99999999999: needs at least "), res.stderr
    assert "PB of memory" in lines[0] and "this host has free" in lines[0]
    assert not list(tmp_path.rglob("*.h5"))


def test_client_bound_follows_the_memory_free() -> None:
    """The bound is the least a run needs (8 training windows and a device per client, the data): 1000
    clients fit in 4 GB, 100 million do not, and the line says how much is needed."""
    import pytest as _pytest

    from relief_mpi.bounds import CLIENT_BYTES, check_clients_fit, needed_bytes
    from relief_mpi.config import RunConfig
    from relief_mpi.errors import ReliefError

    cfg = RunConfig()
    check_clients_fit(cfg, 1000, free=4 * 10**9)
    assert needed_bytes(cfg, 10**8) >= 10**8 * CLIENT_BYTES
    with _pytest.raises(ReliefError, match=r"--clients 100000000: needs at least .* more than half of the 4 GB"):
        check_clients_fit(cfg, 10**8, free=4 * 10**9)
