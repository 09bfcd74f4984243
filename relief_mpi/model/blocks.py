"""The block registry: one partition of the trainable parameters into named blocks.

The same partition drives aggregation (block m is averaged over its cohort), elastic training
(only allocated blocks get gradients) and communication (a block is one contiguous float32
buffer on the wire). Block m holds the parameters that only modality m touches; `shared` holds
what every client trains. Parameters in no block are the frozen base (LoRA mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from relief_mpi.model.net import MultimodalNet

__all__ = ["Block", "BlockRegistry", "Index", "SHARED", "Slice"]


SHARED = "shared"
Index = tuple[slice, ...]


@dataclass(frozen=True)
class Slice:
    param: str
    index: Index  # applied as param[index]; () = the whole tensor


@dataclass(frozen=True)
class Block:
    name: str
    modality: int | None  # index of the modality it belongs to; None for shared
    slices: tuple[Slice, ...]


def _split(n: int, groups: int) -> list[slice]:
    bounds = np.linspace(0, n, groups + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _rows_to_split(model: MultimodalNet, mode: str) -> int:
    """How many rows a modality's blocks divide: lora_A's rank (LoRA) or conv2's output channels (CNN)."""
    return model.lora_rank if mode == "lora" else model.feature_dim


def _check_partition(model: MultimodalNet, mode: str, groups_per_modality: int) -> None:
    """Refuse a mode the model was not built for, or more groups than a modality has rows to split."""
    if mode not in ("cnn", "lora"):
        raise ValueError(f"mode must be cnn or lora, got {mode!r}")
    if mode == "lora" and model.lora_rank == 0:
        raise ValueError("lora mode needs a model built with lora_rank > 0")
    rows = _rows_to_split(model, mode)
    if groups_per_modality < 1 or groups_per_modality > rows:
        raise ValueError(f"groups per modality must be in 1..{rows}")


def _modality_slices(mode: str, m: int, g: int, part: slice, d: int) -> tuple[Slice, ...]:
    """Modality m's g-th block: rows `part` of lora_A over m's feature columns (LoRA); or encoder
    m's conv2 output channels `part` with their fusion columns, conv1 whole in block 0 (CNN)."""
    if mode == "lora":
        return (Slice("lora_A", (part, slice(m * d, (m + 1) * d))),)
    enc = f"encoders.{m}"
    fcols = slice(m * d + part.start, m * d + part.stop)
    sl = ((Slice(f"{enc}.conv1.weight", ()), Slice(f"{enc}.conv1.bias", ())) if g == 0 else ())
    return sl + (Slice(f"{enc}.conv2.weight", (part,)), Slice(f"{enc}.conv2.bias", (part,)),
                 Slice("fusion.weight", (slice(None), fcols)))


def _partition(model: MultimodalNet, modality_names: tuple[str, ...], mode: str,
               groups_per_modality: int) -> tuple[Block, ...]:
    """Every modality's blocks in modality order, then the shared block."""
    d = model.feature_dim
    g_n = groups_per_modality
    blocks: list[Block] = []
    for m, name in enumerate(modality_names):
        for g, part in enumerate(_split(_rows_to_split(model, mode), g_n)):
            blocks.append(Block(name if g_n == 1 else f"{name}/{g}", m, _modality_slices(mode, m, g, part, d)))
    shared = (("lora_B", "head.weight", "head.bias") if mode == "lora"
              else ("fusion.bias", "head.weight", "head.bias"))
    blocks.append(Block(SHARED, None, tuple(Slice(p, ()) for p in shared)))
    return tuple(blocks)


class BlockRegistry:
    def __init__(self, model: MultimodalNet, modality_names: tuple[str, ...], mode: str,
                 groups_per_modality: int = 1) -> None:
        _check_partition(model, mode, groups_per_modality)
        blocks = _partition(model, modality_names, mode, groups_per_modality)
        self.blocks = blocks
        self.names = tuple(b.name for b in blocks)
        self.index = {b.name: i for i, b in enumerate(blocks)}
        params = dict(model.named_parameters())
        self.sizes = tuple(sum(params[s.param][s.index].numel() for s in b.slices) for b in blocks)
        in_block = {s.param for b in blocks for s in b.slices}
        self.base_params = tuple(n for n in params if n not in in_block)
        self.mode = mode
        self.kinds = tuple("shared" if b.modality is None else "block" for b in blocks)
        self.modality = tuple(b.modality for b in blocks)
        self.n_params = self.sizes  # no buffers in the small model
        self.counted = self.sizes
        self.n_model_params = sum(p.numel() for p in model.parameters())
        self.n_stages = 0
        self.n_head = 0
        self._per_modality = groups_per_modality

    def __len__(self) -> int:
        return len(self.blocks)

    def modality_of(self, b: int) -> int | None:
        return self.blocks[b].modality

    def group_macs(self, module_macs: dict[str, float], model: MultimodalNet) -> list[float]:
        """Forward MACs per sample of each block: encoder m and its fusion columns to modality m's
        block(s) (shared evenly among its sub-blocks), the head to the shared block."""
        n_mod = len(model.encoders)
        out = []
        for b in self.blocks:
            if b.modality is None:
                out.append(sum(v for n, v in module_macs.items() if n.startswith("head")))
                continue
            m = b.modality
            enc = sum(v for n, v in module_macs.items() if n.startswith(f"encoders.{m}."))
            fusion = module_macs.get("fusion", 0.0) / n_mod
            out.append((enc + fusion) / self._per_modality)
        return out

    def get_tensor(self, model: MultimodalNet, b: int) -> torch.Tensor:
        """Block b's values as a new flat tensor on the model's device."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            return torch.cat([params[s.param][s.index].reshape(-1) for s in self.blocks[b].slices])

    def get(self, model: MultimodalNet, b: int) -> np.ndarray:
        return self.get_tensor(model, b).cpu().numpy().astype(np.float32, copy=True)

    def set(self, model: MultimodalNet, b: int, vec: np.ndarray) -> None:
        params = dict(model.named_parameters())
        if vec.size != self.sizes[b]:
            raise ValueError(f"block {self.names[b]}: expected {self.sizes[b]} values, got {vec.size}")
        t = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float32)).to(next(iter(params.values())).device)
        off = 0
        with torch.no_grad():
            for s in self.blocks[b].slices:
                view = params[s.param][s.index]
                n = view.numel()
                params[s.param][s.index] = t[off:off + n].view_as(view)
                off += n

    def get_base(self, model: torch.nn.Module) -> np.ndarray:
        params = dict(model.named_parameters())
        if not self.base_params:
            return np.zeros(0, np.float32)
        with torch.no_grad():
            return torch.cat([params[n].reshape(-1) for n in self.base_params]).cpu().numpy().astype(np.float32)

    def set_base(self, model: torch.nn.Module, vec: np.ndarray) -> None:
        params = dict(model.named_parameters())
        t = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float32))
        off = 0
        with torch.no_grad():
            for n in self.base_params:
                k = params[n].numel()
                params[n].copy_(t[off:off + k].view_as(params[n]))
                off += k
        if off != vec.size:
            raise ValueError(f"base vector has {vec.size} values, model needs {off}")

    def grad_masks(self, model: MultimodalNet, trained: frozenset[int]) -> dict[str, torch.Tensor | None]:
        """Per parameter: None = train fully, a 0/1 mask = train those entries; absent = frozen."""
        params = dict(model.named_parameters())
        masks: dict[str, torch.Tensor | None] = {}
        for b in sorted(trained):
            for s in self.blocks[b].slices:
                if s.index == ():
                    masks[s.param] = None
                    continue
                if s.param in masks and masks[s.param] is None:
                    continue
                m = masks.get(s.param)
                if m is None:
                    m = torch.zeros_like(params[s.param])
                m[s.index] = 1.0
                masks[s.param] = m
        for name, m in list(masks.items()):
            if m is not None and bool(m.all()):
                masks[name] = None
        return masks
