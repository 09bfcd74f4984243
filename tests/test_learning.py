"""A run that is not learning says so (issue 22, case 13): one warning line per occurrence, a
/warnings row in the log, and exit 0 (only a diverged model stops the run)."""

from __future__ import annotations

import math
from pathlib import Path

import h5py

from relief_mpi.learning import LearningWatch
from tests.helpers import run_here


def rows(losses: list[float], f1s: list[float]) -> list[dict[str, float]]:
    return [{"round": r + 1, "train_loss": loss, "macro_f1": f1} for r, (loss, f1) in enumerate(zip(losses, f1s,
                                                                                                       strict=True))]


def test_loss_exploding_warns_once_per_occurrence() -> None:
    w = LearningWatch(12)
    losses = [2.0, 3.0, 25.0, 400.0, math.nan, 1.5, 30.0]  # explodes in round 3, recovers in 6, again in 7
    got = [w.observe(r) for r in rows(losses, [0.5] * len(losses))]
    assert [len(g) for g in got] == [0, 0, 1, 0, 0, 0, 1]
    kind, line = got[2][0]
    assert kind == "loss_exploding"
    assert line == ("warning: round 3: the training loss 25 is over 10x round 1's (2): the training is not "
                    "learning (a lower --lr may help)")


def test_chance_accuracy_after_round_1_for_three_evaluated_rounds() -> None:
    w = LearningWatch(12)  # chance macro-F1: 1/12; at most 1.5/12 = 0.125 counts as chance
    f1s = [0.01, 0.10, math.nan, 0.12, 0.30, 0.05, 0.05, 0.05, 0.05]
    got = [w.observe(r) for r in rows([1.0] * len(f1s), f1s)]
    # round 1 never counts; NaN (no evaluation) neither counts nor resets; 0.30 resets the streak
    assert [len(g) for g in got] == [0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert got[7][0][0] == "chance_accuracy"
    assert got[7][0][1].startswith("warning: round 8: macro-F1 0.050 is at chance (12 classes) for 3 evaluated rounds")


def test_lr_10_run_warns_and_records_it(tmp_path: Path) -> None:
    log = tmp_path / "lr10.h5"
    res = run_here(["train", "--transport", "inprocess", "--clients", "2", "--rounds", "4", "--lr", "10",
                    "--local-epochs", "1", "--encoder-channels", "4,4", "--quiet", "--out", str(log)])
    assert res.returncode == 0, res.stderr
    warned = [x for x in res.stderr.splitlines() if "the training is not learning" in x]
    assert len(warned) >= 1 and all(x.startswith("warning: round ") for x in warned), res.stderr
    with h5py.File(log, "r") as f:
        table = f["warnings"][:]
        assert f["status"][()] == b"complete"
    assert [t.decode() for t in table["text"]] == warned
    assert set(table["kind"]) <= {b"loss_exploding", b"chance_accuracy"}
