"""model/flops.py's counter against torch's FlopCounterMode: the same FLOPs for every part of both models."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from relief_mpi.model import flops
from relief_mpi.model.flops import measure_costs
from relief_mpi.model.net import MultimodalNet
from relief_mpi.model.paper import PaperNet


def _torch_count(fn: Any) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


@pytest.mark.parametrize("make", [
    lambda: MultimodalNet([3, 3, 2], 5),
    lambda: PaperNet([3, 3, 2], 5),
    lambda: PaperNet([3, 3, 2], 5, b_mode="block", lora=True),
], ids=["small", "paper", "paper-block-lora"])
def test_costs_equal_flop_counter_mode(make, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = measure_costs(make(), [3, 3, 2], 48, 16)
    monkeypatch.setattr(flops, "_count", _torch_count)  # the reference: torch's own counter
    ref = measure_costs(make(), [3, 3, 2], 48, 16)
    assert ours == ref
    assert min(ours.enc_fwd) > 0 and ours.top_fwd > 0 and ours.top_bwd > 0


def test_counts_a_matmul_by_hand() -> None:
    a, b = torch.ones(4, 6), torch.ones(6, 5)
    assert flops._count(lambda: a @ b) == 2 * 4 * 6 * 5
