"""The GPU device path's decisions and arithmetic, run on the CPU: which device a rank takes,
how it gets its GPU share, where its windows live, and how a shared GPU's energy is split."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from relief_mpi.device.energy import attribute_gpu_energy, nvml_power_meter
from relief_mpi.device.gpu import (
    CUBLAS_WORKSPACE,
    DeviceWindows,
    RankDevice,
    choose_device,
    mps_percentage,
    mps_pipe,
    prepare_cuda_env,
    rank_device,
    share_method,
    windows_cap_bytes,
)
from relief_mpi.device.profiles import parse_profile
from relief_mpi.errors import ReliefError

CUDA = torch.cuda.is_available()


@pytest.mark.parametrize(("requested", "profile", "gpus", "local", "device"), [
    ("cpu", "cuda", 4, 1, "cpu"),  # an explicit --device wins over the profile
    ("auto", "cpu", 4, 1, "cpu"),  # under auto the profile decides
    ("auto", "auto", 0, 3, "cpu"),  # auto without a GPU: CPU
    ("auto", "auto", 2, 3, "cuda:1"),  # local rank 3 on 2 visible GPUs
    ("cuda", "auto", 3, 7, "cuda:1"),
    ("auto", "cuda", 1, 5, "cuda:0"),
])
def test_device_choice(requested: str, profile: str, gpus: int, local: int, device: str) -> None:
    assert choose_device(requested, profile, local, gpus, "p")[0] == device


def test_auto_fallback_says_so() -> None:
    assert "CPU fallback" in choose_device("auto", "auto", 0, 0)[1]


@pytest.mark.parametrize(("requested", "profile", "says"), [("cuda", "auto", "--device cuda"),
                                                            ("auto", "cuda", 'profile orin says device = "cuda"')])
def test_cuda_without_a_gpu_is_an_error(requested: str, profile: str, says: str) -> None:
    with pytest.raises(ReliefError, match="sees no CUDA device on lab-1") as e:
        choose_device(requested, profile, 0, 0, "orin", "lab-1")
    assert str(e.value).startswith(says)


def test_mps_daemon_detected_by_its_control_pipe(tmp_path: Path) -> None:
    assert mps_pipe({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}) is None
    (tmp_path / "control").touch()
    assert mps_pipe({"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}) == tmp_path
    seen: list[Path] = []
    mps_pipe({}, lambda p: seen.append(p) or False)
    assert seen == [Path("/tmp/nvidia-mps/control")]


def test_share_method_and_mps_percentage(tmp_path: Path) -> None:
    assert share_method("cpu", 0.5, tmp_path)[0] == "cpu"
    assert share_method("cuda:0", 1.0, tmp_path)[0] == "full"
    assert share_method("cuda:0", 0.25, tmp_path)[0] == "mps"
    method, why = share_method("cuda:0", 0.25, None)
    assert method == "clock" and "x4" in why
    assert [mps_percentage(s) for s in (0.004, 0.25, 0.333, 1.0)] == [1, 25, 33, 100]


def test_environment_prepared_before_cuda(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    prepare_cuda_env(env, 0.25, None)
    assert env == {"CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE}  # no MPS: no thread percentage
    prepare_cuda_env(env, 0.25, tmp_path)
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    mine = {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "60", "CUBLAS_WORKSPACE_CONFIG": ":16:8"}
    prepare_cuda_env(mine, 0.25, tmp_path)
    assert mine == {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "60", "CUBLAS_WORKSPACE_CONFIG": ":16:8"}  # a launcher's


def test_rank_device_on_a_host_without_gpu(tmp_path: Path) -> None:
    env: dict[str, str] = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}
    (tmp_path / "control").touch()
    rd = rank_device("auto", "auto", 0.5, 2, environ=env, n_gpus=lambda: 0)
    assert (rd.device, rd.share_method, rd.mps) == ("cpu", "cpu", False)
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"  # set before CUDA could initialise
    asked: list[int] = []
    rd = rank_device("cpu", "auto", 0.5, 0, environ={}, n_gpus=lambda: asked.append(1) or 0)
    assert rd.device == "cpu" and not asked, "--device cpu never asks CUDA"
    with pytest.raises(ReliefError):
        rank_device("cuda", "auto", 1.0, 0, environ={}, n_gpus=lambda: 0)


def test_clock_factor_only_where_the_clock_emulates_the_share() -> None:
    assert RankDevice("cuda:0", share_method="clock", gpu_share=0.25).clock_factor(0.25) == 4.0
    assert RankDevice("cuda:0", share_method="mps", gpu_share=0.25, mps=True).clock_factor(0.25) == 1.0
    assert RankDevice("cpu").clock_factor(0.25) == 1.0


@pytest.mark.parametrize("cap", [math.inf, 0.0])
def test_windows_resident_or_per_batch_give_the_same_batches(cap: float) -> None:
    x = torch.arange(5 * 3 * 4, dtype=torch.float32).reshape(5, 3, 4)
    y = torch.tensor([0, 1, 2, 1, 0])
    dw = DeviceWindows(x, y, torch.device("cpu"), cap)
    assert dw.resident == (cap > 0)
    idx = torch.tensor([4, 0, 2])
    xb, yb = dw.batch(idx)
    assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
    assert dw.nbytes == 5 * 3 * 4 * 4 + 5 * 8


def test_windows_cap() -> None:
    assert windows_cap_bytes(torch.device("cpu"), 100) == math.inf
    assert windows_cap_bytes(torch.device("cuda", 0), 100, clients_here=2) == 0.5 * 100 * 2**20 / 2


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (torch sees none)")
def test_windows_on_cuda_resident_and_pinned() -> None:
    x, y = torch.randn(6, 2, 3), torch.arange(6)
    idx = torch.tensor([5, 1])
    for cap in (math.inf, 0.0):
        xb, yb = DeviceWindows(x, y, torch.device("cuda", 0), cap).batch(idx)
        assert xb.is_cuda and torch.equal(xb.cpu(), x[idx]) and torch.equal(yb.cpu(), y[idx])


def _profile(tmp_path: Path, extra: str) -> Path:
    src = (Path(__file__).resolve().parents[2] / "relief_mpi/device/profiles/jetson-orin-nano.toml").read_text()
    p = tmp_path / "p.toml"
    p.write_text(src + extra)
    return p


def test_profile_gpu_share_and_device(tmp_path: Path) -> None:
    prof = parse_profile(_profile(tmp_path, 'gpu_share = 0.25\ndevice = "cuda"\n'))
    assert (prof.gpu_share, prof.device) == (0.25, "cuda")
    assert parse_profile(_profile(tmp_path, "")).gpu_share == 1.0
    for bad in ("0", "1.5", "-0.1", "nan", "true", '"half"'):
        with pytest.raises(ReliefError, match="gpu_share must be a number with 0 < gpu_share <= 1"):
            parse_profile(_profile(tmp_path, f"gpu_share = {bad}\n"))
    with pytest.raises(ReliefError, match="device must be one of auto, cpu, cuda"):
        parse_profile(_profile(tmp_path, 'device = "gpu"\n'))


def test_gpu_energy_split_by_compute_time() -> None:
    # clients 0,1 on rank 1 and client 2 on rank 2 share host a's GPU 0; client 3 is elsewhere
    measured = np.array([30.0, 50.0, 90.0, 7.0])  # rank 1's clients read 80 J in turn, rank 2's 90 J
    compute = np.array([1.0, 1.0, 2.0, 5.0])
    ranks = np.array([1, 1, 2, 3])
    out = attribute_gpu_energy(measured, compute, ranks, ["a/cuda:0", "a/cuda:0", "a/cuda:0", ""])
    gpu_j = (80.0 + 90.0) / 2  # the GPU's energy in the round: the mean of what its ranks read
    np.testing.assert_allclose(out, [gpu_j * 0.25, gpu_j * 0.25, gpu_j * 0.5, 7.0], rtol=1e-12)
    assert out.sum() - 7.0 == pytest.approx(gpu_j)
    idle = attribute_gpu_energy(np.array([4.0, 6.0]), np.zeros(2), np.array([1, 2]), ["g", "g"])
    np.testing.assert_allclose(idle, [2.5, 2.5])


class FakeGpuPower:
    """Stands in for NVML's power reading: a fixed sequence of watts."""

    def __init__(self, watts: list[float]) -> None:
        self.watts = list(watts)
        self.calls = 0

    def power_w(self) -> float:
        self.calls += 1
        return self.watts.pop(0)


def test_nvml_power_meter_integrates_samples() -> None:
    t = iter([0.0, 1.0, 3.0])
    gpu = FakeGpuPower([100.0, 200.0, 100.0])
    meter = nvml_power_meter(0, sampler=gpu, clock=lambda: next(t), background=False)
    assert meter is not None and meter.source == "nvml"
    assert meter.read() == pytest.approx(150.0)  # (100 + 200) / 2 W over 1 s
    assert meter.read() == pytest.approx(150.0 + 300.0)  # (200 + 100) / 2 W over 2 s
    assert gpu.calls == 3


def test_no_nvml_here_is_no_meter() -> None:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert nvml_power_meter(0) is None
    else:
        pytest.skip("pynvml is installed: the no-NVML path is not this host's")


def test_ranks_sharing_a_gpu_are_grouped_for_the_split() -> None:
    from relief_mpi.device.throttle import energy_gpus, read_reports

    recs = ["", '{"energy_source":"nvml","cuda_device":0}', '{"energy_source":"nvml","cuda_device":1}',
            '{"energy_source":"none","cuda_device":null}', '{"energy_source":"nvml","cuda_device":0}']
    by_rank = read_reports(recs, ["h0", "h1", "h1", "h1", "h2"])
    assert [by_rank[r].get("energy_gpu", "") for r in (1, 2, 3, 4)] == ["h1/cuda:0", "h1/cuda:1", "", "h2/cuda:0"]
    info = {k: by_rank[k + 1] for k in range(4)}
    assert energy_gpus(info, 5) == ["h1/cuda:0", "h1/cuda:1", "", "h2/cuda:0", ""]


def test_process_device_per_rank() -> None:
    from relief_mpi.device.profiles import load_profiles
    from relief_mpi.device.throttle import process_device

    prof = load_profiles()["raspberry-pi-4"]
    assert process_device("cpu", prof, ["a", "a", "a"], 2).device == "cpu"
    server = process_device("cpu", None, ["a", "a"], 0)
    assert server.why == "--device cpu" and server.share_method == "cpu"
    if not CUDA:
        rd = process_device("auto", prof, ["a", "a", "a"], 2)
        assert rd.device == "cpu" and "CPU fallback" in rd.why
