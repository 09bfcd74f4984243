"""Per-modality 1-D CNN encoders, a fusion layer (optionally with LoRA) and a classifier head.

h = concat(h_1..h_M), z = relu(W h + c), logits = head(z). A modality passed as None is not
encoded at all and contributes h_m = 0 exactly: under RELIEF that block then gets no gradient,
no compute and no bytes. Zero-filled inputs (FedAvg's view of a missing sensor) still run the
encoder, which is the waste RELIEF removes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ModalityEncoder", "MultimodalNet", "kept"]


def kept(n: int, width: float) -> int:
    """Units of an n-unit layer inside a width-p sub-model (HeteroFL): the first ceil(p n)."""
    return n if width >= 1.0 else max(1, math.ceil(width * n))


def _keep_first(t: torch.Tensor, keep: int) -> torch.Tensor:
    """Zero channels >= keep along dim 1 (by multiplication, so their weights get no gradient)."""
    if keep >= t.shape[1]:
        return t
    mask = torch.zeros(t.shape[1], dtype=t.dtype, device=t.device)
    mask[:keep] = 1.0
    return t * mask.view(1, -1, *([1] * (t.dim() - 2)))


class ModalityEncoder(nn.Module):
    """conv-relu-conv-relu-global-average-pool to `out_dim` features."""

    def __init__(self, in_channels: int, hidden: int, out_dim: int, kernel: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, hidden, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(hidden, out_dim, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
        h = _keep_first(F.relu(self.conv1(x)), kept(self.conv1.out_channels, width))
        return _keep_first(F.relu(self.conv2(h)), kept(self.conv2.out_channels, width)).mean(dim=-1)


class MultimodalNet(nn.Module):
    def __init__(self, modality_channels: Sequence[int], n_classes: int, feature_dim: int = 64,
                 hidden_channels: int = 32, fusion_dim: int = 128, lora_rank: int = 0,
                 lora_alpha: float = 16.0) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.encoders = nn.ModuleList(
            ModalityEncoder(c, hidden_channels, feature_dim) for c in modality_channels)
        m_d = feature_dim * len(modality_channels)
        self.fusion = nn.Linear(m_d, fusion_dim)
        self.head = nn.Linear(fusion_dim, n_classes)
        self.lora_rank = lora_rank
        if lora_rank > 0:
            self.lora_scale = lora_alpha / lora_rank
            self.lora_A = nn.Parameter(torch.empty(lora_rank, m_d))
            nn.init.kaiming_uniform_(self.lora_A, a=5 ** 0.5)
            self.lora_B = nn.Parameter(torch.zeros(fusion_dim, lora_rank))

    def fusion_weight(self) -> torch.Tensor:
        w = self.fusion.weight
        if self.lora_rank > 0:
            w = w + self.lora_scale * (self.lora_B @ self.lora_A)
        return w

    def features(self, xs: Sequence[torch.Tensor | None], no_grad: frozenset[int] = frozenset(),
                 width: float = 1.0) -> torch.Tensor:
        batch, dev = next((x.shape[0], x.device) for x in xs if x is not None)
        hs = []
        for m, (enc, x) in enumerate(zip(self.encoders, xs, strict=True)):
            if x is None:
                hs.append(torch.zeros(batch, self.feature_dim, device=dev))  # where the inputs are (--device)
            elif m in no_grad:
                with torch.no_grad():
                    hs.append(enc(x, width))
            else:
                hs.append(enc(x, width))
        return torch.cat(hs, dim=1)

    def top(self, hs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fusion and head on the encoders' features."""
        z = F.relu(F.linear(torch.cat(list(hs), dim=1), self.fusion_weight(), self.fusion.bias))
        return self.head(z)

    def forward(self, xs: Sequence[torch.Tensor | None], no_grad: frozenset[int] = frozenset(),
                width: float = 1.0) -> torch.Tensor:
        h = self.features(xs, no_grad, width)
        z = F.relu(F.linear(h, self.fusion_weight(), self.fusion.bias))
        return self.head(_keep_first(z, kept(z.shape[1], width)))
