"""Centralised pretraining of the frozen base for LoRA mode, on the server's own split, with its own
optimizer settings (--pretrain-lr, --pretrain-epochs, --pretrain-optimizer), never the clients'."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from relief_mpi.atomic import write_atomic
from relief_mpi.data.base import DatasetSpec, WindowSet
from relief_mpi.errors import ReliefError
from relief_mpi.model.optim import Adam, Optimizer, Sgd
from relief_mpi.model.paper import PaperNet

__all__ = ["BASE_KEYS", "PretrainResult", "check_base", "load_base", "pretrain", "save_base", "split_loss"]


@dataclass(frozen=True)
class PretrainResult:
    """The base's mean loss on the server split (eval mode, as the federation uses it) before and after."""

    loss_before: float
    loss_after: float


def pretrain(model: nn.Module, spec: DatasetSpec, data: WindowSet, epochs: int, batch_size: int,
             lr: float, seed: int, optimizer: str = "adam") -> PretrainResult:
    """Train encoders, fusion base and head base on all modalities with their own optimizer (Adam, or
    SGD with momentum 0.9). Raises ReliefError, before any round, when the base is not finite or its
    loss on the server split did not drop: a federation on such a base only rejects updates."""
    if len(data) == 0:
        raise ReliefError("the server split is empty: raise --server-fraction to pretrain a LoRA base")
    dev = next(model.parameters()).device  # the batches go where the model is (--device)
    x, y = torch.from_numpy(data.x).to(dev), torch.from_numpy(data.y).to(dev)
    chans = [list(m.channels) for m in spec.modalities]
    before = split_loss(model, x, y, chans)
    gen = torch.Generator().manual_seed(seed)
    params = [p for n, p in model.named_parameters() if not _adapter(n)]
    for p in params:
        p.requires_grad_(True)
    if isinstance(model, PaperNet):
        model.base_training = True  # the paper model's frozen encoders learn BatchNorm statistics here
    opt: Optimizer = Adam(params, lr=lr) if optimizer == "adam" else Sgd(params, lr=lr, momentum=0.9)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size].to(dev)
            xb = x[idx]
            loss = F.cross_entropy(model([xb[:, c, :] for c in chans]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    if isinstance(model, PaperNet):
        model.base_training = False
        model.freeze_base()
    after = split_loss(model, x, y, chans)
    check_base(model, PretrainResult(before, after), f"{optimizer}, lr {lr:g}, {epochs} epochs")
    return PretrainResult(before, after)


def split_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chans: list[list[int]],
               batch: int = 512) -> float:
    """Mean cross-entropy over (x, y) in eval mode (no BatchNorm statistic moves)."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            xb = x[i:i + batch]
            total += float(F.cross_entropy(model([xb[:, c, :] for c in chans]), y[i:i + batch], reduction="sum"))
    model.train(was_training)
    return total / max(len(y), 1)


def check_base(model: nn.Module, result: PretrainResult, how: str) -> None:
    """One-line ReliefError unless every base tensor is finite and the loss dropped."""
    bad = [n for n, t in list(model.named_parameters()) + list(model.named_buffers())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    b, a = result.loss_before, result.loss_after
    if bad or not math.isfinite(a):
        raise ReliefError(f"pretraining the LoRA base diverged ({how}): loss {a:.4g} on the server split, non-finite "
                          f"tensors: {', '.join(bad[:3]) or 'none'}; lower --pretrain-lr")
    if not a < b:
        raise ReliefError(f"pretraining the LoRA base did not converge ({how}): loss on the server split {b:.4g} "
                          f"before, {a:.4g} after; lower --pretrain-lr or raise --pretrain-epochs")


def _adapter(name: str) -> bool:
    """Parameters trained by the federation in LoRA mode, not by pretraining."""
    return "lora_" in name or name.startswith(("fusion.A.", "fusion.B."))


BASE_KEYS = ("encoders.", "fusion.", "head.")


def save_base(model: nn.Module, spec: DatasetSpec, path: Path) -> None:
    state = {n: p.detach().cpu().clone() for n, p in model.state_dict().items() if n.startswith(BASE_KEYS)}
    meta = {"dataset": spec.name, "modalities": list(spec.modality_names()),
            "channels": [len(m.channels) for m in spec.modalities], "classes": list(spec.classes)}
    buf = io.BytesIO()
    torch.save({"state": state, "meta": meta}, buf)  # in memory first: torch's file writer loses the OS error
    write_atomic(path, buf.getbuffer(), "writing base")


def load_base(model: nn.Module, spec: DatasetSpec, path: Path) -> None:
    """Load a base checkpoint (weights_only: a checkpoint cannot run code)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ReliefError(f"--base {path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the user's input problem
        first = (str(e).splitlines() or [""])[0][:160]
        raise ReliefError(f"--base {path}: not a relief-mpi checkpoint ({type(e).__name__}: {first})") from None
    meta = ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}
    want = {"modalities": list(spec.modality_names()), "channels": [len(m.channels) for m in spec.modalities],
            "classes": list(spec.classes)}
    for key, val in want.items():
        if meta.get(key) != val:
            raise ReliefError(f"--base {path}: made for {key}={meta.get(key)}, this run has {key}={val}")
    missing = model.load_state_dict(ckpt["state"], strict=False).missing_keys
    missing = [m for m in missing if m.startswith(BASE_KEYS)]
    if missing:
        raise ReliefError(f"--base {path}: missing parameters {missing[:3]}")
