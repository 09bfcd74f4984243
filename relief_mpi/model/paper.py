"""The RELIEF paper's model: per-modality Conv-BN encoders, a rank-rho factored fusion, a 2-layer head.

Encoder m: Conv1d(k=5, same) -> BatchNorm -> ReLU -> MaxPool(2), then Conv1d(k=5) -> BatchNorm ->
ReLU, global average pooling: h_m in R^128. Fusion: z = sum_m (A_m h_m) B^T + bias with A_m of
shape (rho, 128) and one shared B (128, rho) (`b_mode="block"`: one B_m per modality). Head:
dropout(relu(z)) -> Linear(128, 64) -> ReLU -> dropout -> Linear(64, C).

LoRA mode (`lora=True`): the encoders are a frozen pretrained base (kept in eval mode, so their
BatchNorm statistics stay the pretrained ones), the fusion adds a frozen random base W0 to the
factored path (B starts at zero, no bias), and each head layer is LoRA over a frozen Linear.

A modality passed as None is not encoded and contributes h_m = 0 exactly (our skip policy); the
published algorithm passes zeros instead, which still runs the encoder (ClientRecipe.zero_fill).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvStage", "FactoredFusion", "HEAD_HIDDEN", "KERNEL", "LoRALinear", "PaperEncoder", "PaperNet",
    "STAGE_CHANNELS"
]


STAGE_CHANNELS = (64, 128)
KERNEL = 5
HEAD_HIDDEN = 64


class ConvStage(nn.Module):
    def __init__(self, c_in: int, c_out: int, pool: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, KERNEL, padding=KERNEL // 2)
        self.bn = nn.BatchNorm1d(c_out)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.conv(x)))
        return F.max_pool1d(y, self.pool) if self.pool > 1 else y


class PaperEncoder(nn.Module):
    """Conv stages of `channels` (the published (64, 128)); max-pool 2 after every stage but the last."""

    def __init__(self, in_channels: int, channels: Sequence[int] = STAGE_CHANNELS) -> None:
        super().__init__()
        if not channels or min(channels) < 1:
            raise ValueError(f"encoder channels must be one or more positive widths, got {tuple(channels)}")
        c = in_channels
        stages = []
        for i, h in enumerate(channels):
            stages.append(ConvStage(c, h, 2 if i < len(channels) - 1 else 1))
            c = h
        self.stages = nn.ModuleList(stages)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s in self.stages:
            x = s(x)
        return x.mean(dim=-1)


class LoRALinear(nn.Module):
    """A frozen Linear plus a rank-rho update (B starts at zero, so the layer starts as its base)."""

    def __init__(self, in_f: int, out_f: int, rho: int) -> None:
        super().__init__()
        self.base = nn.Linear(in_f, out_f)
        self.base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rho, in_f))
        self.lora_B = nn.Parameter(torch.zeros(out_f, rho))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t()) @ self.lora_B.t()


class FactoredFusion(nn.Module):
    def __init__(self, dims: Sequence[int], d_out: int, rho: int, b_mode: str, lora: bool) -> None:
        super().__init__()
        if b_mode not in ("shared", "block"):
            raise ValueError(f"b_mode must be shared or block, got {b_mode!r}")
        self.dims, self.d_out, self.rho, self.b_mode = list(dims), d_out, rho, b_mode
        total = sum(dims)
        self.A = nn.ParameterList([nn.Parameter(torch.empty(rho, d)) for d in dims])
        self.B = nn.ParameterList([nn.Parameter(torch.empty(d_out, rho))
                                   for _ in range(1 if b_mode == "shared" else len(dims))])
        bound = 1.0 / math.sqrt(total)
        for a in self.A:
            nn.init.uniform_(a, -bound, bound)
        self.W0: nn.Linear | None = None
        self.bias: nn.Parameter | None = None
        if lora:
            self.W0 = nn.Linear(total, d_out)
            self.W0.requires_grad_(False)
            for b in self.B:
                nn.init.zeros_(b)
        else:
            self.bias = nn.Parameter(torch.zeros(d_out))
            for b in self.B:
                nn.init.uniform_(b, -1.0 / math.sqrt(rho), 1.0 / math.sqrt(rho))

    def forward(self, hs: Sequence[torch.Tensor]) -> torch.Tensor:
        ah = [h @ a.t() for h, a in zip(hs, self.A, strict=True)]
        if self.b_mode == "shared":
            out = torch.stack(ah).sum(0) @ self.B[0].t()
        else:
            out = sum((x @ b.t() for x, b in zip(ah, self.B, strict=True)), torch.zeros(()))
        if self.W0 is not None:
            out = out + self.W0(torch.cat(list(hs), dim=-1))
        if self.bias is not None:
            out = out + self.bias
        return out

    def macs_per_sample(self) -> tuple[list[float], list[float]]:
        """(per A_m, per B) multiply-accumulates of one sample; W0's go to the (first) B."""
        a = [float(self.rho * d) for d in self.dims]
        b = [float(self.d_out * self.rho) for _ in self.B]
        if self.W0 is not None:
            b[0] += float(sum(self.dims) * self.d_out)
        return a, b


class PaperNet(nn.Module):
    def __init__(self, modality_channels: Sequence[int], n_classes: int, rho: int = 8, b_mode: str = "shared",
                 lora: bool = False, fusion_dim: int = 128, dropout: float = 0.2,
                 encoder_channels: Sequence[int] = STAGE_CHANNELS) -> None:
        super().__init__()
        encoders = [PaperEncoder(c, encoder_channels) for c in modality_channels]
        self.encoders = nn.ModuleList(encoders)
        self.feature_dim: int = encoders[0].out_dim
        self.n_stages: int = len(encoders[0].stages)
        self.fusion = FactoredFusion([e.out_dim for e in encoders], fusion_dim, rho, b_mode, lora)
        dims = (fusion_dim, HEAD_HIDDEN, n_classes)
        self.head = nn.ModuleList(LoRALinear(dims[i], dims[i + 1], rho) if lora else nn.Linear(dims[i], dims[i + 1])
                                  for i in range(len(dims) - 1))
        self.dropout = nn.Dropout(dropout)
        self.lora = lora
        self.base_training = False  # True only while `relief-mpi pretrain` trains the base
        self.freeze_base()

    def freeze_base(self) -> None:
        """LoRA mode: encoders, W0 and the head's base layers take no gradient."""
        if self.lora:
            self.encoders.requires_grad_(False)
            if self.fusion.W0 is not None:
                self.fusion.W0.requires_grad_(False)
            for layer in self.head:
                if isinstance(layer, LoRALinear):
                    layer.base.requires_grad_(False)

    def train(self, mode: bool = True) -> PaperNet:
        super().train(mode)
        if self.lora and not self.base_training:
            self.encoders.eval()  # a frozen base keeps its pretrained BatchNorm statistics
        return self

    def top(self, hs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fusion and head on the encoders' features (what every client trains on top of them)."""
        z = self.dropout(F.relu(self.fusion(hs)))
        for i, layer in enumerate(self.head):
            z = layer(z)
            if i < len(self.head) - 1:
                z = self.dropout(F.relu(z))
        return z

    def forward(self, xs: Sequence[torch.Tensor | None], no_grad: frozenset[int] = frozenset(),
                width: float = 1.0) -> torch.Tensor:
        del width  # HeteroFL widths are defined on the small model only
        batch, dev = next((x.shape[0], x.device) for x in xs if x is not None)
        hs = []
        for m, (enc, x) in enumerate(zip(self.encoders, xs, strict=True)):
            if x is None:
                hs.append(torch.zeros(batch, self.feature_dim, device=dev))  # where the inputs are (--device)
            elif m in no_grad:
                with torch.no_grad():
                    hs.append(enc(x))
            else:
                hs.append(enc(x))
        return self.top(hs)
