"""Where a rank trains (CPU or one of its host's GPUs) and how it gets its GPU share.

Every function here takes the device, the environment or the GPU count as an argument, so the
CPU suite runs the same code that a GPU host runs (tests/device/test_gpu.py).

- Device: `--device auto|cpu|cuda` (train, bench, pretrain, hosts check). An explicit cpu or
  cuda wins; under auto a profile's `device` field (cpu or cuda) decides, else CUDA where the
  rank's torch sees a GPU. torch sees the GPUs that CUDA_VISIBLE_DEVICES (a launcher, SLURM)
  leaves it; the client ranks of a host are spread over them: GPU = local rank mod visible count.
  A rank that must use CUDA and sees none is a start-up error (one line, exit 2).
- Compute share (`gpu_share` in the profile, 0 < s <= 1): with an NVIDIA MPS control daemon on
  the host (its pipe directory: CUDA_MPS_PIPE_DIRECTORY, default /tmp/nvidia-mps) the rank sets
  CUDA_MPS_ACTIVE_THREAD_PERCENTAGE = 100 s before CUDA initialises, so the GPU itself gives it
  s of its SMs; without MPS the DeviceClock charges each step's measured time / s (method
  `clock`). Memory share: the profile's memory_mb as a per-process memory fraction (throttle.py).
- Same numbers: CUBLAS_WORKSPACE_CONFIG=:4096:8 before CUDA initialises and deterministic
  algorithms on CUDA, so in-process and MPI runs on CUDA agree bit for bit as on the CPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import torch

from relief_mpi.errors import ReliefError

__all__ = ["CUBLAS_WORKSPACE", "DEVICES", "DeviceWindows", "MPS_DEFAULT_PIPE", "RankDevice", "WINDOWS_SHARE",
           "choose_device", "deterministic", "model_device", "mps_percentage", "mps_pipe", "prepare_cuda_env",
           "rank_device", "share_method", "synchronizer", "visible_gpus", "windows_cap_bytes"]

DEVICES = ("auto", "cpu", "cuda")
MPS_DEFAULT_PIPE = "/tmp/nvidia-mps"
CUBLAS_WORKSPACE = ":4096:8"
WINDOWS_SHARE = 0.5  # training windows stay resident on a GPU when they take at most this share of its cap


@dataclass(frozen=True)
class RankDevice:
    """A rank's device and its share, with the reasons (the log's per-rank throttle record and
    `hosts check` print them)."""

    device: str = "cpu"  # "cpu" or "cuda:N"
    why: str = "default"
    share_method: str = "cpu"  # "cpu" (cores), "full" (whole GPU), "mps" or "clock"
    share_why: str = "CPU: cores and threads"
    gpu_share: float = 1.0
    mps: bool = False  # an MPS daemon gives this rank its share (then the clock does not stretch steps)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def clock_factor(self, gpu_share: float) -> float:
        """What the DeviceClock multiplies a step's measured time by for a client of this share on
        this rank: 1 / gpu_share on a GPU without MPS (the clock emulates the share), else 1."""
        return 1.0 / gpu_share if self.device.startswith("cuda") and not self.mps else 1.0

    def record(self) -> dict[str, object]:
        """The log's per-rank fields (throttle record)."""
        return {"device": self.device, "device_why": self.why, "share_method": self.share_method,
                "share_why": self.share_why, "gpu_share": self.gpu_share}


def visible_gpus() -> int:
    """CUDA devices this process's torch sees (after CUDA_VISIBLE_DEVICES); 0 without CUDA."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose_device(requested: str, profile_device: str, local_index: int, n_gpus: int,
                  profile: str = "", host: str = "") -> tuple[str, str]:
    """(device, why) for one rank; ReliefError when CUDA is required and none is visible."""
    if requested not in DEVICES or profile_device not in DEVICES:
        raise ReliefError(f"--device {requested!r}: use one of {', '.join(DEVICES)}")
    where = f" on {host}" if host else ""
    if requested == "cpu":
        return "cpu", "--device cpu"
    if requested == "auto" and profile_device == "cpu":
        return "cpu", f"profile {profile} says device = \"cpu\""
    need = "--device cuda" if requested == "cuda" else f"profile {profile} says device = \"cuda\"" \
        if profile_device == "cuda" else ""
    if n_gpus > 0:
        dev = f"cuda:{local_index % n_gpus}"
        return dev, need or f"auto: {n_gpus} visible GPU(s), local rank {local_index}"
    if need:
        vis = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={vis!r})" if vis is not None else ""
        raise ReliefError(f"{need}, but torch {torch.__version__} sees no CUDA device{where}{hint}; "
                          "use --device cpu or auto, or a CUDA build of torch on a GPU host")
    return "cpu", "auto: no CUDA device visible, CPU fallback"


def mps_pipe(environ: Mapping[str, str], exists: Callable[[Path], bool] = Path.exists) -> Path | None:
    """The MPS control daemon's pipe directory if a daemon is running there (its `control` pipe
    exists), else None."""
    pipe = Path(environ.get("CUDA_MPS_PIPE_DIRECTORY") or MPS_DEFAULT_PIPE)
    return pipe if exists(pipe / "control") else None


def mps_percentage(gpu_share: float) -> int:
    """CUDA_MPS_ACTIVE_THREAD_PERCENTAGE for a share: 100 s rounded, at least 1."""
    return max(1, min(100, round(100 * gpu_share)))


def share_method(device: str, gpu_share: float, pipe: Path | None) -> tuple[str, str]:
    """How the rank gets its compute share, and why."""
    if not device.startswith("cuda"):
        return "cpu", "CPU device: cores and threads (affinity)"
    if gpu_share >= 1.0:
        return "full", "gpu_share 1: the whole GPU (memory capped)"
    if pipe is not None:
        return "mps", f"MPS daemon at {pipe}: {mps_percentage(gpu_share)}% of the SMs"
    return "clock", f"no MPS daemon: steps charged x{1 / gpu_share:.3g} by the clock"


def prepare_cuda_env(environ: MutableMapping[str, str], gpu_share: float, pipe: Path | None) -> None:
    """What must be in the environment before CUDA initialises: cuBLAS's deterministic workspace
    and, under MPS, this rank's thread percentage (a launcher's own setting is kept)."""
    environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    if pipe is not None and gpu_share < 1.0:
        environ.setdefault("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", str(mps_percentage(gpu_share)))


def rank_device(requested: str, profile_device: str, gpu_share: float, local_index: int, profile: str = "",
                host: str = "", environ: MutableMapping[str, str] | None = None,
                n_gpus: Callable[[], int] = visible_gpus) -> RankDevice:
    """Resolve one rank's device and share: the environment first (before torch touches CUDA),
    then the device, then deterministic algorithms on CUDA."""
    env = os.environ if environ is None else environ
    pipe = mps_pipe(env) if requested != "cpu" and profile_device != "cpu" else None
    if requested != "cpu":
        prepare_cuda_env(env, gpu_share, pipe)
    count = 0 if requested == "cpu" or (requested == "auto" and profile_device == "cpu") else n_gpus()
    device, why = choose_device(requested, profile_device, local_index, count, profile, host)
    method, method_why = share_method(device, gpu_share, pipe)
    if device.startswith("cuda"):
        deterministic(device)
    return RankDevice(device, why, method, method_why, gpu_share, mps=method == "mps")


def deterministic(device: str) -> None:
    """Deterministic kernels on CUDA (the CPU's are already; switching them on there is not needed
    and would change nothing a CPU run computes). warn_only: an op without a deterministic CUDA
    kernel warns instead of stopping the run; benchmarks/gpu_check.sh checks that in-process and
    MPI runs on CUDA still agree to the bit."""
    if device.startswith("cuda"):
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.cuda.set_device(torch.device(device))


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What the clock calls around a step so it measures the step's execution, not its launch:
    torch.cuda.synchronize on a GPU, nothing on the CPU (its kernels run when launched)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return _no_sync


def _no_sync() -> None:
    return None


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters live on (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class DeviceWindows:
    """A client's training windows for its device. Resident (one copy on the device) when windows
    and labels take at most `cap_bytes`; else they stay in host memory (pinned on CUDA) and each
    batch is gathered into a pinned staging buffer and copied over. Labels are always resident."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device, cap_bytes: float) -> None:
        self.device = device
        self.nbytes = x.numel() * x.element_size() + y.numel() * y.element_size()
        self.resident = self.nbytes <= cap_bytes
        self.y = y.to(device)
        pin = device.type == "cuda"
        self.x = x.to(device) if self.resident else (x.pin_memory() if pin else x)
        self._pin = pin

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows and labels at `idx` (host indices), on the device."""
        on_dev = idx.to(self.device)
        if self.resident:
            return self.x[on_dev], self.y[on_dev]
        staged = torch.index_select(self.x, 0, idx)
        if self._pin:
            staged = staged.pin_memory()
        return staged.to(self.device, non_blocking=self._pin), self.y[on_dev]


def windows_cap_bytes(device: torch.device, memory_mb: float, clients_here: int = 1) -> float:
    """How many bytes of windows a client may keep on its device: unlimited on the CPU (host
    memory, as before), WINDOWS_SHARE of the profile's memory cap shared by the rank's clients on
    a GPU."""
    if device.type != "cuda":
        return math.inf
    return WINDOWS_SHARE * memory_mb * 2**20 / max(1, clients_here)
