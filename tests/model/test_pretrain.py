"""The LoRA base's pretraining: its own optimizer, and a guard that never lets a diverged base through."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from relief_mpi.data.base import DatasetSpec, Modality, WindowSet
from relief_mpi.errors import ReliefError
from relief_mpi.model.paper import PaperNet
from relief_mpi.model.pretrain import PretrainResult, check_base, pretrain

SPEC = DatasetSpec("tiny", ("a", "b"), (Modality("acc", (0, 1)), Modality("gyro", (2, 3))), 50.0,
                   ("c0", "c1", "c2", "c3"))


def learnable(n: int = 64, seed: int = 0) -> WindowSet:
    """Class 1 = a positive offset on the accelerometer: a base that learns anything learns this."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 4, 16)).astype(np.float32)
    x[:, :2, :] += (2.0 * y - 1.0)[:, None, None].astype(np.float32)
    return WindowSet(x, y, np.zeros(n, np.int64))


def lora_model() -> PaperNet:
    torch.manual_seed(0)
    return PaperNet([2, 2], 2, rho=4, lora=True)


def finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in list(model.parameters()) + list(model.buffers())
               if t.is_floating_point())


def test_default_pretraining_converges_and_freezes_the_base() -> None:
    model = lora_model()
    res = pretrain(model, SPEC, learnable(), epochs=10, batch_size=16, lr=1e-3, seed=0)  # the option defaults
    assert res.loss_after < 0.5 * res.loss_before and finite(model)
    assert not any(p.requires_grad for p in model.encoders.parameters())


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_diverging_base_is_refused_with_one_line(optimizer: str) -> None:
    model = lora_model()
    with pytest.raises(ReliefError) as e:
        pretrain(model, SPEC, learnable(), epochs=3, batch_size=16, lr=10.0, seed=0, optimizer=optimizer)
    msg = str(e.value)
    assert "\n" not in msg and "pretraining the LoRA base" in msg and "--pretrain-lr" in msg
    assert f"{optimizer}, lr 10" in msg


def test_check_base_refuses_non_finite_tensors_and_a_loss_that_did_not_drop() -> None:
    model = lora_model()
    check_base(model, PretrainResult(0.7, 0.3), "adam")  # finite, dropped: accepted
    with pytest.raises(ReliefError, match="did not converge"):
        check_base(model, PretrainResult(0.7, 0.7), "adam")
    with pytest.raises(ReliefError, match="diverged"):
        check_base(model, PretrainResult(0.7, math.nan), "adam")
    with torch.no_grad():
        model.encoders[1].stages[0].bn.running_var[3] = math.inf  # a buffer, not a parameter
    with pytest.raises(ReliefError, match=r"diverged.*encoders\.1\.stages\.0\.bn\.running_var"):
        check_base(model, PretrainResult(0.7, 0.3), "adam")
