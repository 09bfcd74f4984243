"""`relief-mpi pretrain` makes a base that `train --mode lora --base` freezes; pretraining has its own
optimizer options and never hands a diverged base to training (issue 17)."""

import json
from pathlib import Path

import numpy as np
import torch

from relief_mpi.checkpoint import checkpoint_path, load_checkpoint
from relief_mpi.log.hdf5 import read_log
from tests.helpers import FAST, run_here

NARROW = ["--encoder-channels", "8,16"]


def test_pretrain_then_lora_run_keeps_the_base_frozen(tmp_path: Path) -> None:
    base = tmp_path / "base.pt"
    res = run_here(["pretrain", "--out", str(base), "--pretrain-epochs", "2", *NARROW])
    assert res.returncode == 0, res.stderr
    assert "(adam, lr 0.001, 2 epochs): loss" in res.stdout
    ck = torch.load(base, weights_only=True)
    assert ck["meta"]["modalities"] == ["acc", "gyro", "mag", "ecg"]
    assert any(k.startswith("encoders.0.") for k in ck["state"])
    log = tmp_path / "lora.h5"
    res = run_here(["train", "--transport", "inprocess", "--clients", "3", "--mode", "lora", "--base", str(base),
                    "--strategy", "relief", "--rounds", "2", *FAST, "--quiet", "--out", str(log)])
    assert res.returncode == 0, res.stderr
    run = read_log(log)
    sizes = [int(s) for s in json.loads(run.attrs["block_sizes"])]
    assert sizes[:4] == [8 * 16] * 4  # LoRA groups A.m: rho x the encoder's last stage width each
    assert np.all(np.isfinite(run.rounds["macro_f1"]))


def test_base_for_another_dataset_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "base.pt"
    res = run_here(["pretrain", "--out", str(base), "--pretrain-epochs", "1", "--modality-by", "position", *NARROW])
    assert res.returncode == 0, res.stderr
    res = run_here(["train", "--transport", "inprocess", "--mode", "lora", "--base", str(base), "--rounds", "1",
                    *FAST, "--out", str(tmp_path / "x.h5")])
    assert res.returncode == 2 and "made for modalities" in res.stderr


LORA_RUN = ["train", "--transport", "inprocess", "--clients", "2", "--mode", "lora", "--rounds", "1",
            "--local-epochs", "1", "--quiet"]


def test_client_lr_0_4_does_not_reach_pretraining_and_the_base_is_finite(tmp_path: Path) -> None:
    """The run the issue reports (--lr 0.4 pretrained a NaN base, 3 of 3 seeds): the base now trains with
    the pretraining defaults (Adam 1e-3, 10 epochs), whatever the clients' lr."""
    log = tmp_path / "r.h5"
    res = run_here([*LORA_RUN, "--lr", "0.4", "--checkpoint-every", "1", "--out", str(log)])
    assert res.returncode == 0, res.stderr
    base = load_checkpoint(checkpoint_path(log)).base
    assert base.size > 0 and np.all(np.isfinite(base))
    cfg = json.loads(read_log(log).attrs["config"])
    assert cfg["strategy"]["lr"] == 0.4
    assert (cfg["model"]["pretrain_lr"], cfg["model"]["pretrain_optimizer"]) == (1e-3, "adam")


def test_pretraining_at_lr_0_4_converges_or_stops_before_any_round(tmp_path: Path) -> None:
    log = tmp_path / "r.h5"
    res = run_here([*LORA_RUN, "--pretrain-lr", "0.4", "--checkpoint-every", "1", "--out", str(log)])
    if res.returncode == 0:
        assert np.all(np.isfinite(load_checkpoint(checkpoint_path(log)).base))
    else:
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: pretraining the LoRA base"), res.stderr
        assert not log.exists()  # no round was run, no log written


def test_a_diverging_base_is_a_start_up_error_for_pretrain_and_train(tmp_path: Path) -> None:
    bad = ["--pretrain-lr", "10", "--pretrain-optimizer", "sgd", "--pretrain-epochs", "1"]
    out = tmp_path / "base.pt"
    res = run_here(["pretrain", "--out", str(out), *bad])
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: pretraining the LoRA base diverged (sgd, lr 10, 1 epochs)")
    assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()
    log = tmp_path / "r.h5"
    res = run_here([*LORA_RUN, *bad, "--out", str(log)])
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "diverged" in res.stderr and not log.exists()
