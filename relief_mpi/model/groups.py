"""The paper model's parameter groups: the unit of aggregation, budgets and bytes.

A.<m> (the fusion's A_m), B (the shared B and the fusion bias; per modality `B.<m>` in block
mode, the bias then going to the first head layer), E.<m>.<l> (encoder stage l of modality m,
with its BatchNorm running statistics), H.<l> (head layer l). CNN with 4 modalities:
4 + 1 + 8 + 2 = 15 groups. In LoRA mode the encoders are frozen base (no E groups), A and B are
the factored fusion and H.<l> is the LoRA pair of head layer l.

Every trainable tensor and every float buffer outside the base is in exactly one group; a group
travels as one float32 vector, parameters first, then float buffers. BatchNorm's integer
`num_batches_tracked` is not exchanged: it only matters when BatchNorm's momentum is None, and
ours is 0.1 (the published code takes the max over clients; a documented departure). The
published analytic model still counts it as the authors do (`counted`: 1 value per BatchNorm,
4 bytes), so its payload, T_o, time and energy are theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from relief_mpi.model.paper import PaperNet

__all__ = ["GroupRegistry", "ParamGroup", "paper_groups"]


@dataclass(frozen=True)
class ParamGroup:
    name: str
    kind: str  # "A", "B", "enc", "head"
    modality: int | None
    params: tuple[str, ...]
    buffers: tuple[str, ...] = ()
    module: str | None = None  # the module whose forward MACs belong to the group


def _float_buffers(model: nn.Module, prefix: str) -> tuple[str, ...]:
    return tuple(n for n, b in model.named_buffers() if n.startswith(prefix + ".") and b.is_floating_point())


def paper_groups(model: PaperNet, modality_names: tuple[str, ...]) -> list[ParamGroup]:
    fus = model.fusion
    groups = [ParamGroup(f"A.{name}", "A", m, (f"fusion.A.{m}",)) for m, name in enumerate(modality_names)]
    bias = ("fusion.bias",) if fus.bias is not None else ()
    if fus.b_mode == "shared":
        groups.append(ParamGroup("B", "B", None, ("fusion.B.0",) + bias))
        head_extra: tuple[str, ...] = ()
    else:
        groups += [ParamGroup(f"B.{name}", "B", m, (f"fusion.B.{m}",)) for m, name in enumerate(modality_names)]
        head_extra = bias
    if not model.lora:
        for m, name in enumerate(modality_names):
            for s in range(model.n_stages):
                pre = f"encoders.{m}.stages.{s}"
                params = tuple(n for n, _ in model.named_parameters() if n.startswith(pre + "."))
                groups.append(ParamGroup(f"E.{name}.{s}", "enc", m, params, _float_buffers(model, pre), pre))
    for i, layer in enumerate(model.head):
        pre = f"head.{i}"
        params = tuple(n for n, p in layer.named_parameters(prefix=pre) if p.requires_grad)
        groups.append(ParamGroup(f"H.{i}", "head", None, params + (head_extra if i == 0 else ()),
                                 _float_buffers(model, pre), pre))
    return groups


class GroupRegistry:
    """Named groups over a model's tensors; get/set a group as one float32 vector."""

    def __init__(self, model: PaperNet, modality_names: tuple[str, ...], mode: str) -> None:
        self.groups = tuple(paper_groups(model, modality_names))
        self.names = tuple(g.name for g in self.groups)
        self.kinds = tuple(g.kind for g in self.groups)
        self.modality = tuple(g.modality for g in self.groups)
        self.mode = mode
        tensors = _tensors(model)
        self.n_params = tuple(sum(tensors[n].numel() for n in g.params) for g in self.groups)
        self.sizes = tuple(p + sum(tensors[n].numel() for n in g.buffers) for p, g in zip(self.n_params, self.groups,
                                                                                            strict=True))
        # What the authors count per group (their GroupRegistry.numel): parameters and every buffer of
        # the group's modules, BatchNorm's integer num_batches_tracked included (1 value each).
        self.counted = tuple(s + sum(t.numel() for n, t in tensors.items() if g.module and not t.is_floating_point()
                                     and n.startswith(g.module + ".")) for s, g in zip(self.sizes, self.groups,
                                                                                       strict=True))
        self.n_model_params = sum(p.numel() for p in model.parameters())  # the authors' total_params
        grouped = {n for g in self.groups for n in g.params + g.buffers}
        self.base_params = tuple(n for n, t in tensors.items() if n not in grouped and t.is_floating_point())
        self.n_stages = max((sum(1 for g in self.groups if g.kind == "enc" and g.modality == m)
                             for m in range(len(modality_names))), default=0)
        self.n_head = sum(1 for g in self.groups if g.kind == "head")

    def __len__(self) -> int:
        return len(self.groups)

    def modality_of(self, g: int) -> int | None:
        return self.groups[g].modality

    def _names(self, g: int) -> tuple[str, ...]:
        return self.groups[g].params + self.groups[g].buffers

    def get_tensor(self, model: nn.Module, g: int) -> torch.Tensor:
        """Group g's values (parameters, then buffers as float) as a new flat tensor on the model's device."""
        t = _tensors(model)
        with torch.no_grad():
            return torch.cat([t[n].reshape(-1).float() for n in self._names(g)])

    def get(self, model: nn.Module, g: int) -> np.ndarray:
        return self.get_tensor(model, g).cpu().numpy().astype(np.float32, copy=True)

    def set(self, model: nn.Module, g: int, vec: np.ndarray) -> None:
        if vec.size != self.sizes[g]:
            raise ValueError(f"group {self.names[g]}: expected {self.sizes[g]} values, got {vec.size}")
        _load(model, self._names(g), vec)

    def get_base(self, model: nn.Module) -> np.ndarray:
        if not self.base_params:
            return np.zeros(0, np.float32)
        t = _tensors(model)
        with torch.no_grad():
            return torch.cat([t[n].reshape(-1) for n in self.base_params]).cpu().numpy().astype(np.float32)

    def set_base(self, model: nn.Module, vec: np.ndarray) -> None:
        need = sum(_tensors(model)[n].numel() for n in self.base_params)
        if vec.size != need:
            raise ValueError(f"base vector has {vec.size} values, model needs {need}")
        _load(model, self.base_params, vec)

    def grad_masks(self, model: nn.Module, trained: frozenset[int]) -> dict[str, torch.Tensor | None]:
        """Every parameter of a trained group trains whole (None = no mask)."""
        del model
        return {n: None for g in sorted(trained) for n in self.groups[g].params}

    def group_macs(self, module_macs: dict[str, float], model: PaperNet) -> list[float]:
        """Forward MACs per sample of each group: its module's layers; the fusion's to A and B."""
        a, b = model.fusion.macs_per_sample()
        out = []
        b_i = 0
        for g in self.groups:
            if g.kind == "A":
                out.append(a[g.modality or 0])
            elif g.kind == "B":
                out.append(b[b_i])
                b_i += 1
            else:
                pre = g.module or ""
                out.append(sum(v for n, v in module_macs.items() if n == pre or n.startswith(pre + ".")))
        return out


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = dict(model.named_parameters())
    out.update(dict(model.named_buffers()))
    return out


def _load(model: nn.Module, names: tuple[str, ...], vec: np.ndarray) -> None:
    t = _tensors(model)
    src = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float32))
    off = 0
    with torch.no_grad():
        for n in names:
            k = t[n].numel()
            t[n].copy_(src[off:off + k].view_as(t[n]))
            off += k
