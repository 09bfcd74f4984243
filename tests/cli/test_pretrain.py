"""`relief-mpi pretrain` makes a base that `train --mode lora --base` freezes."""

from pathlib import Path

import numpy as np
import torch

from relief_mpi.log.hdf5 import read_log
from tests.helpers import run_cli


def test_pretrain_then_lora_run_keeps_the_base_frozen(tmp_path: Path) -> None:
    base = tmp_path / "base.pt"
    res = run_cli(["pretrain", "--out", str(base), "--epochs", "2"])
    assert res.returncode == 0, res.stderr
    ck = torch.load(base, weights_only=True)
    assert ck["meta"]["modalities"] == ["acc", "gyro", "mag", "ecg"]
    assert any(k.startswith("encoders.0.") for k in ck["state"])
    log = tmp_path / "lora.h5"
    res = run_cli(["train", "--transport", "inprocess", "--clients", "3", "--mode", "lora", "--base", str(base),
                   "--strategy", "relief", "--rounds", "2", "--local-steps", "2", "--quiet", "--out", str(log)])
    assert res.returncode == 0, res.stderr
    run = read_log(log)
    sizes = [int(s) for s in __import__("json").loads(run.attrs["block_sizes"])]
    # LoRA blocks: A's columns per modality (rank x 64) and the shared block (B + head).
    assert sizes[:4] == [8 * 64] * 4
    assert np.all(np.isfinite(run.rounds["macro_f1"]))


def test_base_for_another_dataset_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "base.pt"
    assert run_cli(["pretrain", "--out", str(base), "--epochs", "1", "--modality-by", "position"]).returncode == 0
    res = run_cli(["train", "--transport", "inprocess", "--mode", "lora", "--base", str(base), "--rounds", "1",
                   "--out", str(tmp_path / "x.h5")])
    assert res.returncode == 2 and "made for modalities" in res.stderr
