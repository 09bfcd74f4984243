"""Centralised pretraining of the frozen base for LoRA mode, on the server's own split."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from relief_mpi.data.base import DatasetSpec, WindowSet
from relief_mpi.errors import ReliefError


def pretrain(model: nn.Module, spec: DatasetSpec, data: WindowSet, epochs: int, batch_size: int,
             lr: float, seed: int) -> float:
    """Train encoders, fusion and head on all modalities; return the last epoch's mean loss."""
    if len(data) == 0:
        raise ReliefError("the server split is empty: raise --server-fraction to pretrain a LoRA base")
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    gen = torch.Generator().manual_seed(seed)
    params = [p for n, p in model.named_parameters() if not _adapter(n)]
    for p in params:
        p.requires_grad_(True)
    if hasattr(model, "base_training"):
        model.base_training = True  # the paper model's frozen encoders learn BatchNorm statistics here
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    chans = [list(m.channels) for m in spec.modalities]
    last = float("nan")
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        losses = []
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            xb = x[idx]
            loss = F.cross_entropy(model([xb[:, c, :] for c in chans]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        last = sum(losses) / len(losses)
    if hasattr(model, "base_training"):
        model.base_training = False
        model.freeze_base()
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad or not math.isfinite(last):
        raise ReliefError(f"pretraining the LoRA base diverged at lr {lr} (last epoch loss {last}, non-finite "
                          f"parameters: {', '.join(bad[:3]) or 'none'}); lower the learning rate")
    return last


def _adapter(name: str) -> bool:
    """Parameters trained by the federation in LoRA mode, not by pretraining."""
    return "lora_" in name or name.startswith(("fusion.A.", "fusion.B."))


BASE_KEYS = ("encoders.", "fusion.", "head.")


def save_base(model: nn.Module, spec: DatasetSpec, path: Path) -> None:
    state = {n: p.detach().clone() for n, p in model.state_dict().items() if n.startswith(BASE_KEYS)}
    meta = {"dataset": spec.name, "modalities": list(spec.modality_names()),
            "channels": [len(m.channels) for m in spec.modalities], "classes": list(spec.classes)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state": state, "meta": meta}, tmp)
    tmp.replace(path)


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
