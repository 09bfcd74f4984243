"""The paper model and its parameter groups: one exact partition, the published names and Q."""

import numpy as np
import pytest
import torch

from relief_mpi.model.groups import GroupRegistry
from relief_mpi.model.paper import PaperNet

MODS = ("acc", "gyro", "mag", "ecg")
CHANS = [9, 6, 6, 2]


def tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = dict(model.named_parameters())
    out.update(dict(model.named_buffers()))
    return out


@pytest.mark.parametrize(("b_mode", "lora"), [("shared", False), ("block", False), ("shared", True)])
def test_every_trainable_tensor_and_float_buffer_is_in_exactly_one_group(b_mode: str, lora: bool) -> None:
    model = PaperNet(CHANS, 12, rho=8, b_mode=b_mode, lora=lora)
    reg = GroupRegistry(model, MODS, "lora" if lora else "cnn")
    seen: dict[str, int] = {}
    for g in reg.groups:
        for name in g.params + g.buffers:
            seen[name] = seen.get(name, 0) + 1
    assert all(c == 1 for c in seen.values()), {n: c for n, c in seen.items() if c != 1}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    float_buffers = {n for n, b in model.named_buffers() if b.is_floating_point()}
    assert trainable <= set(seen), trainable - set(seen)
    # what no group holds is the frozen base (LoRA) and nothing else
    rest = {n for n, t in tensors(model).items() if t.is_floating_point()} - set(seen)
    assert rest == set(reg.base_params)
    assert not (rest & trainable)
    if not lora:
        assert float_buffers <= set(seen)
        assert not reg.base_params
    assert sum(reg.sizes) + sum(tensors(model)[n].numel() for n in reg.base_params) == sum(
        t.numel() for t in tensors(model).values() if t.is_floating_point())


def test_cnn_groups_are_the_published_fifteen_with_q_nine() -> None:
    reg = GroupRegistry(PaperNet(CHANS, 12), MODS, "cnn")
    assert reg.names == ("A.acc", "A.gyro", "A.mag", "A.ecg", "B", "E.acc.0", "E.acc.1", "E.gyro.0", "E.gyro.1",
                         "E.mag.0", "E.mag.1", "E.ecg.0", "E.ecg.1", "H.0", "H.1")
    assert len(MODS) + reg.n_stages + reg.n_head + 1 == 9
    # BatchNorm running statistics travel with their stage; parameters come first in the vector
    e = reg.names.index("E.gyro.1")
    assert reg.groups[e].buffers == ("encoders.1.stages.1.bn.running_mean", "encoders.1.stages.1.bn.running_var")
    assert reg.sizes[e] - reg.n_params[e] == 2 * 128


def test_get_and_set_round_trip_every_group_including_buffers() -> None:
    torch.manual_seed(0)
    a, b = PaperNet(CHANS, 12), PaperNet(CHANS, 12)
    a.train()
    a([torch.randn(4, c, 32) for c in CHANS])  # move the BatchNorm statistics away from their init
    reg = GroupRegistry(a, MODS, "cnn")
    for g in range(len(reg)):
        reg.set(b, g, reg.get(a, g))
    for n, t in tensors(a).items():
        if t.is_floating_point():
            assert torch.equal(t, tensors(b)[n]), n


def test_absent_modality_contributes_zero_features_and_zero_fill_runs_the_encoder() -> None:
    torch.manual_seed(0)
    m = PaperNet(CHANS, 12).eval()
    xs = [torch.randn(2, c, 32) for c in CHANS]
    skip = m([xs[0], None, None, None])
    zeros = m([xs[0]] + [torch.zeros(2, c, 32) for c in CHANS[1:]])
    assert not torch.allclose(skip, zeros)  # a zero input still goes through conv bias, BN and ReLU
    assert np.isfinite(skip.detach().numpy()).all()
