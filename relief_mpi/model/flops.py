"""Per-step training cost in FLOPs, measured once with torch.utils.flop_counter on a real batch.

The cost of one local step is additive over the model's parts: every present encoder's
forward, the fusion+head forward and backward, and the backward of each encoder that trains.
Measuring the parts once gives the cost of any block set without re-running anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from relief_mpi.model.net import MultimodalNet


@dataclass(frozen=True)
class FlopCosts:
    enc_fwd: tuple[float, ...]  # per modality, one batch
    enc_bwd: tuple[float, ...]
    top_fwd: float
    top_bwd: float
    batch_size: int

    def step(self, present: Iterable[int], trained_encoders: Iterable[int]) -> float:
        """FLOPs of one step that encodes `present` and back-propagates into `trained_encoders`."""
        return (sum(self.enc_fwd[m] for m in present) + self.top_fwd + self.top_bwd
                + sum(self.enc_bwd[m] for m in trained_encoders))


def _count(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def measure_costs(model: MultimodalNet, modality_channels: list[int], window_len: int,
                  batch_size: int) -> FlopCosts:
    enc_fwd, enc_bwd = [], []
    for m, enc in enumerate(model.encoders):
        x = torch.zeros(batch_size, modality_channels[m], window_len)
        out: dict[str, torch.Tensor] = {}
        enc_fwd.append(_count(lambda enc=enc, x=x, out=out: out.__setitem__("h", enc(x))))
        enc_bwd.append(_count(lambda out=out: out["h"].sum().backward()))
    model.zero_grad(set_to_none=True)
    h = torch.zeros(batch_size, model.fusion.in_features, requires_grad=True)
    y = torch.zeros(batch_size, dtype=torch.long)
    res: dict[str, torch.Tensor] = {}

    def top() -> None:
        z = F.relu(F.linear(h, model.fusion_weight(), model.fusion.bias))
        res["loss"] = F.cross_entropy(model.head(z), y)

    top_fwd = _count(top)
    top_bwd = _count(lambda: res["loss"].backward())
    model.zero_grad(set_to_none=True)
    return FlopCosts(tuple(enc_fwd), tuple(enc_bwd), top_fwd, top_bwd, batch_size)
