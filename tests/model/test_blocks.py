"""The block registry is one exact partition of the trainable parameters."""

import numpy as np
import pytest
import torch

from relief_mpi.model.blocks import SHARED, BlockRegistry
from relief_mpi.model.net import MultimodalNet

MODS = ("acc", "gyro", "mag", "ecg")
CHANNELS = [9, 6, 6, 2]


def coverage(model: MultimodalNet, reg: BlockRegistry) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    count = {n: torch.zeros_like(p) for n, p in params.items()}
    for b in reg.blocks:
        for s in b.slices:
            count[s.param][s.index] += 1
    return count


@pytest.mark.parametrize("mode,groups", [("cnn", 1), ("cnn", 4), ("lora", 1), ("lora", 2)])
def test_every_trainable_entry_is_in_exactly_one_block(mode: str, groups: int) -> None:
    model = MultimodalNet(CHANNELS, 6, lora_rank=8 if mode == "lora" else 0)
    reg = BlockRegistry(model, MODS, mode, groups)
    count = coverage(model, reg)
    for name, c in count.items():
        if name in reg.base_params:
            assert c.max() == 0, name
        else:
            assert torch.all(c == 1), f"{name}: entries covered {c.unique().tolist()} times"
    assert reg.names[-1] == SHARED
    assert len(reg) == len(MODS) * groups + 1
    assert sum(reg.sizes) == sum(int((c == 1).sum()) for c in count.values())


def test_get_set_round_trip_touches_only_that_block() -> None:
    model = MultimodalNet(CHANNELS, 6)
    reg = BlockRegistry(model, MODS, "cnn")
    before = [reg.get(model, b) for b in range(len(reg))]
    reg.set(model, 1, before[1] + 1.0)
    after = [reg.get(model, b) for b in range(len(reg))]
    np.testing.assert_array_equal(after[1], before[1] + 1.0)
    for b in (0, 2, 3, 4):
        np.testing.assert_array_equal(after[b], before[b])


def test_modality_block_holds_encoder_and_its_fusion_columns() -> None:
    model = MultimodalNet(CHANNELS, 6)
    reg = BlockRegistry(model, MODS, "cnn")
    enc = sum(p.numel() for p in model.encoders[3].parameters())
    assert reg.sizes[3] == enc + model.fusion.out_features * model.feature_dim


def test_grad_masks_freeze_untrained_fusion_columns() -> None:
    torch.manual_seed(0)
    model = MultimodalNet(CHANNELS, 6)
    reg = BlockRegistry(model, MODS, "cnn")
    trained = frozenset({0, reg.index[SHARED]})
    masks = reg.grad_masks(model, trained)
    before = [reg.get(model, b) for b in range(len(reg))]
    params = dict(model.named_parameters())
    for n, p in params.items():
        p.requires_grad_(n in masks)
    xs = [torch.randn(4, c, 32) for c in CHANNELS]
    model(xs).sum().backward()
    for n, m in masks.items():
        if m is not None:
            params[n].grad.mul_(m)
    with torch.no_grad():
        for n in masks:
            params[n] -= 0.1 * params[n].grad
    after = [reg.get(model, b) for b in range(len(reg))]
    for b in range(len(reg)):
        if b in trained:
            assert not np.array_equal(after[b], before[b])
        else:
            np.testing.assert_array_equal(after[b], before[b])
