"""Training cost: per-step FLOPs counted with torch.utils.flop_counter's formulas, and per-group FLOPs.

The cost of one local step is additive over the model's parts: every encoded modality's
forward, the fusion+head forward and backward, and the backward of each encoder that trains.
Measuring the parts once gives the cost of any group set without re-running anything; this is
what our emulated clock charges. The published cost model instead charges a group
6 x its forward multiply-accumulates per sample (`group_flops`), whatever else the step runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from relief_mpi.model.registry import ParamRegistry

__all__ = ["FlopCosts", "group_flops", "measure_costs", "module_macs"]


@dataclass(frozen=True)
class FlopCosts:
    enc_fwd: tuple[float, ...]  # per modality, one batch
    enc_bwd: tuple[float, ...]
    top_fwd: float
    top_bwd: float
    batch_size: int

    def step(self, present: Iterable[int], trained_encoders: Iterable[int], batch: float | None = None) -> float:
        """FLOPs of one step of `batch` samples (default: the measured batch) that encodes `present`
        and back-propagates into `trained_encoders`. FLOPs scale linearly with the batch."""
        total = (sum(self.enc_fwd[m] for m in present) + self.top_fwd + self.top_bwd
                 + sum(self.enc_bwd[m] for m in trained_encoders))
        return total if batch is None else total * batch / self.batch_size


class _FlopTally(TorchDispatchMode):
    """FlopCounterMode's total, without its import of torch._dynamo (about 2.5 s of CPU per
    process, paid by every rank at start-up: see model/optim.py): torch wraps a dispatch mode's
    handler in torch._dynamo.disable unless the mode opts out, and nothing here is compiled.
    The same rule as FlopCounterMode: an op without a formula is decomposed if it can be, else
    run and, if it has one, counted with torch's formula (tests/model/test_flops.py compares the two)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        # as FlopCounterMode: the registry is keyed by packet, so every overload is offered for
        # decomposition first (those with a formula have no decomposition and come back)
        if func not in flop_registry and func is not torch.ops.prim.device.default:
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        if packet in flop_registry:
            self.total += flop_registry[packet](*args, **kwargs, out_val=out)
        return out


def _count(fn: Any) -> float:
    with _FlopTally() as tally:
        fn()
    return float(tally.total)


def measure_costs(model: Any, modality_channels: list[int], window_len: int, batch_size: int) -> FlopCosts:
    """Measure on a small probe batch and scale to `batch_size`: FLOPs are linear in the batch, and
    a probe of the full batch size would allocate memory in proportion to an option's value."""
    probe = min(batch_size, 4)
    was_training = model.training
    model.train()
    enc_fwd, enc_bwd = [], []
    for m, enc in enumerate(model.encoders):
        x = torch.zeros(probe, modality_channels[m], window_len)
        out: dict[str, torch.Tensor] = {}
        enc_fwd.append(_count(lambda enc=enc, x=x, out=out: out.__setitem__("h", enc(x))))
        h = out["h"]
        enc_bwd.append(_count(lambda h=h: h.sum().backward()) if h.requires_grad else 0.0)
    model.zero_grad(set_to_none=True)
    hs = [torch.zeros(probe, e.out_dim if hasattr(e, "out_dim") else model.feature_dim, requires_grad=True)
          for e in model.encoders]
    y = torch.zeros(probe, dtype=torch.long)
    res: dict[str, torch.Tensor] = {}
    top_fwd = _count(lambda: res.__setitem__("loss", F.cross_entropy(model.top(hs), y)))
    top_bwd = _count(lambda: res["loss"].backward())
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    scale = batch_size / probe
    return FlopCosts(tuple(v * scale for v in enc_fwd), tuple(v * scale for v in enc_bwd), top_fwd * scale,
                     top_bwd * scale, batch_size)


def module_macs(model: nn.Module, modality_channels: list[int], window_len: int) -> dict[str, float]:
    """Forward multiply-accumulates per sample of every Conv1d and Linear that runs, by module name."""
    names = {id(mod): n for n, mod in model.named_modules()}
    macs: dict[str, float] = {}

    def hook(mod: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        n = out.shape[0]
        if isinstance(mod, nn.Conv1d):
            v = out.numel() / n * (mod.in_channels // mod.groups) * mod.kernel_size[0]
        else:
            assert isinstance(mod, nn.Linear)
            v = out.numel() / n * mod.in_features
        macs[names[id(mod)]] = macs.get(names[id(mod)], 0.0) + float(v)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model([torch.zeros(2, c, window_len) for c in modality_channels])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    fusion = getattr(model, "fusion", None)
    if isinstance(fusion, nn.Linear) and "fusion" not in macs:  # the small model applies it functionally
        macs["fusion"] = float(fusion.in_features * fusion.out_features)
    return macs


def group_flops(model: Any, registry: ParamRegistry[Any], modality_channels: list[int],
                window_len: int) -> tuple[float, ...]:
    """Training FLOPs per sample of each group as the published cost model counts them."""
    macs = module_macs(model, modality_channels, window_len)
    return tuple(6.0 * v for v in registry.group_macs(macs, model))
