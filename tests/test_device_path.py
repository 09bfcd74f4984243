"""The GPU device path on the CPU: a client's model, windows, optimizer and deltas and rank 0's
evaluation go through the same device functions with torch.device("cpu"); an MPI job's log
records each rank's device, share method and energy source; --device cuda without a GPU stops
before any round with one error line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from relief_mpi.evaluation import evaluate
from relief_mpi.rounds import REPORT_INDEX as R
from relief_mpi.run_setup import build_setup
from tests.helpers import FAST, fast_config, run_cli, run_mpi

CPU = torch.device("cpu")


def _round(cap: float) -> tuple[dict[int, np.ndarray], np.ndarray, object]:
    setup = build_setup(fast_config(rounds=1, strategy="fedavg", local_steps=3, batch_size=8), 3)
    model = setup.make_model()
    reg = setup.registry
    blocks = [reg.get(model, b) for b in range(len(reg))]
    trainer = setup.trainer(1)
    trainer.windows_cap_bytes = cap
    plan = setup.strategy.configure_round(1)
    owned = {b: blocks[b].copy() for b in range(len(blocks)) if setup.strategy.ownership()[1, b]}
    updates, report = trainer.train(plan, owned)
    return updates, report, trainer


def test_a_client_round_resident_or_per_batch_is_the_same() -> None:
    """Windows resident on the device vs gathered per batch into staging memory: the same steps,
    the same deltas to the bit (both on the CPU device here)."""
    resident, rep_a, ta = _round(math.inf)
    staged, rep_b, tb = _round(0.0)
    assert ta.device_windows().resident and not tb.device_windows().resident
    assert ta.device == CPU and all(p.device == CPU for p in ta.model.parameters())
    assert rep_a[R["steps"]] == rep_b[R["steps"]] > 0
    assert resident.keys() == staged.keys() and resident
    for b in resident:
        assert np.array_equal(resident[b], staged[b])
        assert np.any(resident[b][:-1] != 0), "the round trained"


def test_deltas_through_get_tensor_match_the_host_vectors() -> None:
    setup = build_setup(fast_config(rounds=1), 3)
    model = setup.make_model()
    reg = setup.registry
    for b in range(len(reg)):
        t = reg.get_tensor(model, b)
        assert t.device == CPU and np.array_equal(t.numpy(), reg.get(model, b))
        vec = np.arange(reg.sizes[b], dtype=np.float32) / 7
        reg.set(model, b, vec)
        assert np.array_equal(reg.get(model, b), vec)


def test_evaluation_on_the_model_device() -> None:
    setup = build_setup(fast_config(rounds=1), 3)
    assert str(setup.rank_device.torch_device) == "cpu"
    ev = evaluate(setup, setup.make_model())
    assert 0.0 <= ev.accuracy <= 1.0 and ev.class_f1.size == len(setup.data.spec.classes)


@pytest.fixture(scope="module")
def mpi_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dev") / "run.h5"
    res = run_mpi(3, ["train", "--quiet", "--clients", "2", "--rounds", "1", *FAST, "--out", str(out)], timeout=300)
    assert res.returncode == 0, res.stderr
    return out


def test_mpi_log_records_each_rank_device_share_and_energy(mpi_log: Path) -> None:
    with h5py.File(mpi_log) as f:
        profiles = json.loads(f.attrs["profiles"])
        server = json.loads(f.attrs["server_device"])
        cfg = json.loads(f.attrs["config"])
    assert cfg["device"]["device"] == "auto"
    assert [p["rank"] for p in profiles] == [1, 2]
    cuda = torch.cuda.is_available()
    for p in profiles:
        t = p["throttle"]
        assert t["device"] == ("cuda:0" if cuda else "cpu")
        assert t["share_method"] in (("full", "mps", "clock") if cuda else ("cpu",))
        assert t["device_why"].startswith("auto: ") and t["share_why"]
        assert p["energy_source"] in ("none", "rapl", "nvml", "ina3221", "rapl+nvml")
    if not cuda:
        assert "CPU fallback" in profiles[0]["throttle"]["device_why"]
    assert server["device"] == ("cuda:0" if cuda else "cpu") and server["device_why"].startswith("auto: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a CUDA device here: --device cuda would run")
def test_device_cuda_without_gpu_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    res = run_cli(["train", "--transport", "inprocess", "--clients", "2", "--rounds", "1", *FAST, "--device", "cuda",
                   "--out", str(out)], timeout=120)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda, but torch"), res.stderr
    assert "sees no CUDA device" in lines[0] and "round" not in res.stdout
    assert not out.exists()


@pytest.mark.parametrize("small", [False, True], ids=["paper", "small"])
def test_a_training_step_stays_on_the_model_device(small: bool) -> None:
    """On the meta device (no data, but every tensor says where it lives) a step with an absent
    sensor and a HeteroFL width fails if any tensor is made on the CPU: what a CUDA run would hit."""
    import torch.nn.functional as F

    from relief_mpi.device.gpu import DeviceWindows
    from relief_mpi.model.net import MultimodalNet
    from relief_mpi.model.optim import Adam
    from relief_mpi.model.paper import PaperNet

    meta = torch.device("meta")
    model = (MultimodalNet([3, 3], 5) if small else PaperNet([3, 3], 5, encoder_channels=(8, 16))).to(meta)
    windows = DeviceWindows(torch.zeros(6, 6, 32), torch.zeros(6, dtype=torch.long), meta, 0.0)
    xb, yb = windows.batch(torch.tensor([0, 2, 4]))
    xs = [xb[:, :3, :], None]  # the second sensor absent
    out = model(xs, frozenset(), 0.5) if small else model(xs)
    opt = Adam(list(model.parameters()), lr=1e-3)
    F.cross_entropy(out, yb).backward()
    opt.step()
    assert out.device == meta and all(p.device == meta for p in model.parameters())
