"""Checkpoints and resume: exact continuation, refusals that name what differs."""

from pathlib import Path

import numpy as np
import pytest

from relief_mpi.checkpoint import checkpoint_path, load_checkpoint
from relief_mpi.config import RunConfig
from relief_mpi.errors import ReliefError
from relief_mpi.log.hdf5 import read_log
from relief_mpi.run import run_inprocess
from tests.helpers import FAST, fast_config, run_cli, run_here
from tests.log.test_stops import small_disk  # noqa: F401, F811 - a fixture

DETERMINISTIC = ("round", "virtual_time_s", "virtual_elapsed_s", "accuracy", "macro_f1", "rare_f1", "bytes_up",
                 "bytes_down", "energy_j", "train_loss", "deadline_s", "rejected")


def cfg(rounds: int, every: int = 0, seed: int = 5, strategy: str = "relief") -> RunConfig:
    return fast_config(rounds, strategy, seed, checkpoint_every=every)


def test_resumed_run_equals_uninterrupted_run_exactly(tmp_path: Path) -> None:
    # Every leg runs through the CLI with the same thread settings (in this process or, for the leg
    # that is killed, in its own; both set torch to OMP_NUM_THREADS or 1 thread), so float
    # reductions happen in the same order and "exactly" can mean bit for bit.
    common = ["train", "--transport", "inprocess", "--clients", "3", "--strategy", "relief", "--seed", "5",
              *FAST, "--quiet"]
    full = tmp_path / "full.h5"
    assert run_here([*common, "--rounds", "4", "--out", str(full)]).returncode == 0
    part = tmp_path / "part.h5"
    # Killed after round 3: the log has 3 rounds, the last checkpoint is round 2.
    res = run_cli([*common, "--rounds", "4", "--checkpoint-every", "2", "--out", str(part), "--fault", "kill:0:3"])
    assert res.returncode == -9
    assert len(read_log(part).rounds) == 3
    assert load_checkpoint(checkpoint_path(part)).round == 2
    res = run_here(["train", "--transport", "inprocess", "--resume", str(part), "--quiet"])
    assert res.returncode == 0, res.stderr
    a, b = read_log(full), read_log(part)
    assert list(b.rounds["round"]) == [1, 2, 3, 4]
    for f in DETERMINISTIC:
        np.testing.assert_array_equal(a.rounds[f], b.rounds[f], err_msg=f)
    np.testing.assert_array_equal(a.alloc, b.alloc)
    np.testing.assert_array_equal(a.divergence, b.divergence)


def test_resume_refuses_changed_config_naming_the_key(tmp_path: Path) -> None:
    log = tmp_path / "r.h5"
    run_inprocess(cfg(2, every=1), 3, log)
    res = run_here(["train", "--transport", "inprocess", "--resume", str(log), "--rounds", "3", "--lr", "0.2"])
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: --resume {log}: the checkpoint was made with another config: strategy.lr (checkpoint 0.001, "
        "given 0.2); drop those options to resume"]
    assert len(read_log(log).rounds) == 2, "a refused resume must not touch the log"


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path: Path) -> None:
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    run_inprocess(cfg(2, every=1), 3, a)
    run_inprocess(cfg(2, every=1, seed=9, strategy="fedavg"), 3, b)
    checkpoint_path(b).replace(checkpoint_path(a))
    res = run_here(["train", "--transport", "inprocess", "--resume", str(a), "--rounds", "3"])
    assert res.returncode == 2
    assert "belongs to another config" in res.stderr and "seed" in res.stderr and "strategy.name" in res.stderr


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "r.h5"
    run_inprocess(cfg(1), 3, log)
    res = run_here(["train", "--transport", "inprocess", "--resume", str(log), "--rounds", "2"])
    assert res.returncode == 2 and "no checkpoint at" in res.stderr


def test_checkpoint_loads_with_weights_only_and_rejects_garbage(tmp_path: Path) -> None:
    p = tmp_path / "x.ckpt.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(ReliefError, match="unreadable"):
        load_checkpoint(p)


def test_an_extended_resume_that_dies_can_be_resumed_again(tmp_path: Path) -> None:
    log = tmp_path / "x.h5"
    common = ["train", "--transport", "inprocess", "--clients", "3", *FAST, "--quiet"]
    assert run_here([*common, "--rounds", "2", "--checkpoint-every", "1", "--out", str(log)]).returncode == 0
    res = run_cli([*common, "--resume", str(log), "--rounds", "4", "--fault", "kill:0:3"])
    assert res.returncode == -9
    res = run_here(["train", "--transport", "inprocess", "--resume", str(log), "--quiet"])
    assert res.returncode == 0, res.stderr
    assert list(read_log(log).rounds["round"]) == [1, 2, 3, 4]


def test_checkpoint_on_a_full_disk_says_so_and_leaves_no_temp(small_disk: Path) -> None:  # noqa: F811
    from relief_mpi.checkpoint import Checkpoint, save_checkpoint
    from relief_mpi.stops import CheckpointWriteError
    from tests.log.test_stops import fill

    path = small_disk / "r.ckpt.pt"

    def ck(rnd: int) -> Checkpoint:
        return Checkpoint(rnd, "{}", "0", "fp", [np.full(20_000, rnd, np.float32)], np.zeros(0, np.float32), {},
                          1.0, 2.0)

    save_checkpoint(ck(1), path)
    fill(small_disk)
    with pytest.raises(CheckpointWriteError) as e:
        save_checkpoint(ck(2), path)
    assert str(e.value) == f"writing checkpoint {path} failed: No space left on device; the previous checkpoint is kept"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "r.ckpt.pt"], "the temp file must be removed"
    kept = load_checkpoint(path)
    assert kept.round == 1 and float(kept.blocks[0][0]) == 1.0


@pytest.fixture(scope="module")
def relief_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-round RELIEF run (it checkpoints an RNG state) with a checkpoint after each round."""
    log = tmp_path_factory.mktemp("ck") / "r.h5"
    res = run_here(["train", "--transport", "inprocess", "--clients", "3", "--strategy", "relief", *FAST, "--quiet",
                    "--rounds", "2", "--checkpoint-every", "1", "--out", str(log)])
    assert res.returncode == 0, res.stderr
    return log


def _edited(log: Path, dest: Path, edit: str) -> Path:
    import shutil

    import torch

    out = dest / "e.h5"
    shutil.copy(log, out)
    d = torch.load(checkpoint_path(log), weights_only=True)
    if edit == "shape":
        d["blocks"][3] = d["blocks"][3][:-2]
    elif edit == "fewer-blocks":
        d["blocks"] = d["blocks"][:-1]
    elif edit == "no-strategy-state":
        del d["strategy"]["d_bar"]
    elif edit == "strategy-shape":
        d["strategy"]["last_trained"] = d["strategy"]["last_trained"][:1]
    elif edit == "bad-rng":
        d["strategy"]["rng"] = torch.frombuffer(bytearray(b"{'bit_generator': 'PCG64', 'state': 7}"), dtype=torch.uint8)
    elif edit == "garbled-rng":
        d["strategy"]["rng"] = torch.frombuffer(bytearray(b"not python at all ("), dtype=torch.uint8)
    elif edit == "base":
        d["base"] = torch.zeros(5)
    elif edit == "round-negative":
        d["round"] = -3
    elif edit == "round-beyond-log":
        d["round"] = 5
    elif edit == "elapsed-disagrees":
        d["virtual_elapsed"] = d["virtual_elapsed"] + 100.0
    torch.save(d, checkpoint_path(out))
    return out


@pytest.mark.parametrize(("edit", "says"), [
    ("shape", "parameter group 3 has shape"), ("fewer-blocks", "parameter groups, the model has"),
    ("no-strategy-state", "the strategy state lacks d_bar"),
    ("strategy-shape", "strategy state last_trained has shape"),
    ("bad-rng", "the strategy state does not load"), ("garbled-rng", "the strategy state does not load"),
    ("base", "has a frozen base of 5 values, the model needs 0"),
    ("round-negative", "is at round -3, which is no round"),
    ("round-beyond-log", "is at round 5 but the log keeps rounds 1..2: they disagree"),
    ("elapsed-disagrees", "and the log disagree on round 2: virtual_elapsed_s"),
])
def test_hand_edited_checkpoint_is_one_line_before_start_and_the_log_is_kept(relief_run: Path, tmp_path: Path,
                                                                           edit: str, says: str) -> None:
    # Before: `rank 0 failed, aborting the job:` and a traceback, some after `start: ready`; round -3
    # rewrote the log without its two complete rounds; round 5 silently skipped rounds 3..5.
    log = _edited(relief_run, tmp_path, edit)
    res = run_here(["train", "--transport", "inprocess", "--resume", str(log), "--rounds", "6"], timeout=120)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
    assert lines[0].startswith("error: ") and says in lines[0], lines
    assert "start: ready" not in res.stdout and "Traceback" not in res.stderr
    kept = read_log(log)
    assert list(kept.rounds["round"]) == [1, 2] and kept.status == "complete", "a refused resume keeps the log"


def test_an_untouched_checkpoint_still_resumes(relief_run: Path, tmp_path: Path) -> None:
    log = _edited(relief_run, tmp_path, "none")
    res = run_here(["train", "--transport", "inprocess", "--resume", str(log), "--rounds", "3", "--quiet"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert list(read_log(log).rounds["round"]) == [1, 2, 3]
