"""What the round code needs of a model's parameter registry, as a Protocol: the small model's
BlockRegistry (model/blocks.py) and the paper model's GroupRegistry (model/groups.py) both are one.

Generic in the model it reads and writes (contravariant: a registry for PaperNet takes a PaperNet),
so code that holds either registry with its own model (client, server) types it ParamRegistry[Any]
and still has every attribute and method checked."""

from __future__ import annotations

from typing import Protocol, TypeVar

import numpy as np
import torch
from torch import nn

__all__ = ["ParamRegistry"]

M_contra = TypeVar("M_contra", bound=nn.Module, contravariant=True)


class ParamRegistry(Protocol[M_contra]):
    names: tuple[str, ...]  # one per group, in wire order
    kinds: tuple[str, ...]  # paper model: A, B, enc, head; small model: block, shared
    modality: tuple[int | None, ...]
    sizes: tuple[int, ...]  # float32 values of a group on the wire
    n_params: tuple[int, ...]
    base_params: tuple[str, ...]  # parameters outside every group (a LoRA run's frozen base)
    mode: str

    def __len__(self) -> int: ...

    def modality_of(self, g: int) -> int | None: ...

    def get(self, model: M_contra, g: int) -> np.ndarray: ...

    def get_tensor(self, model: M_contra, g: int) -> torch.Tensor: ...  # a new flat tensor on the model's device

    def set(self, model: M_contra, g: int, vec: np.ndarray) -> None: ...

    def get_base(self, model: M_contra) -> np.ndarray: ...

    def set_base(self, model: M_contra, vec: np.ndarray) -> None: ...

    def grad_masks(self, model: M_contra, trained: frozenset[int]) -> dict[str, torch.Tensor | None]: ...

    def group_macs(self, module_macs: dict[str, float], model: M_contra) -> list[float]: ...
