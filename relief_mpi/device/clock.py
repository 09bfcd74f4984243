"""Emulated time on a client: a step lasts FLOPs / profile speed.

`real` sleeps the remainder after the host computed the step, and charges the wall-clock time
measured around compute + sleep, so busy time is what a stopwatch would show (it exceeds the
target where the host is slower than the profile; that excess is also summed as lag).
`virtual` only adds the targets up, for fast experiments: the schedule it computes is the one
the real clock reproduces whenever the host keeps up with the profile.

A GPU share emulated by the clock (device/gpu.py: `gpu_share` s on a GPU without MPS) stretches
the measured step: the step on the rank's share takes host_s / s (`factor` = 1 / s), which is
what a native profile is charged and what a dilated one's lag and real-clock sleep compare with
the target. A step is measured between two calls of `sync` (torch.cuda.synchronize on a GPU, so
the time is the kernels' execution, not their launch; nothing on the CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from relief_mpi.config import Clock
from relief_mpi.device.profiles import DeviceProfile

__all__ = ["DeviceClock", "sleep_for"]


@dataclass
class DeviceClock:
    profile: DeviceProfile
    mode: Clock
    busy_s: float = 0.0  # emulated compute time this round (real: wall-clock measured)
    lag_s: float = 0.0  # host slower than the profile, summed
    compute_wall_s: float = 0.0  # host time actually spent computing
    factor: float = 1.0  # a measured step's time on the rank's GPU share: host_s x factor (1 / gpu_share)
    sync: Callable[[], None] = field(default_factory=lambda: _no_sync)  # waits for the device's queued work

    def __post_init__(self) -> None:
        if self.mode not in ("real", "virtual"):
            raise ValueError(f"clock mode must be 'real' or 'virtual', got {self.mode!r}")
        if not self.factor >= 1.0:
            raise ValueError(f"clock factor must be >= 1 (1 / gpu_share), got {self.factor!r}")

    def start_step(self) -> float:
        """The start of a step: the device's queue drained, then the time."""
        self.sync()
        return time.perf_counter()

    def end_step(self, flops: float, t0: float) -> None:
        """The end of a step started at t0: drain the device's queue, then charge what it took."""
        self.sync()
        self.account_step(flops, time.perf_counter() - t0)

    def reset(self) -> None:
        self.busy_s = self.lag_s = self.compute_wall_s = 0.0

    def step_time(self, flops: float) -> float:
        return 0.0 if self.profile.native else flops / self.profile.flops

    def account_step(self, flops: float, host_s: float) -> None:
        """Charge one step that took host_s seconds of real compute (measured by the caller)."""
        self.compute_wall_s += host_s
        shared_s = host_s * self.factor if self.factor != 1.0 else host_s  # the step on the rank's GPU share
        if self.profile.native:
            self.busy_s += host_s + sleep_for(shared_s - host_s) if self.mode == "real" else shared_s
            return
        target = flops / self.profile.flops
        self.lag_s += max(0.0, shared_s - target)
        if self.mode == "real":
            self.busy_s += host_s + sleep_for(max(target, shared_s) - host_s)
        else:
            self.busy_s += target

    def transfer(self, nbytes: float, up: bool) -> float:
        """Emulated link time for a transfer; under the real clock it is slept and measured."""
        t = self.profile.transfer_s(nbytes, up)
        if self.mode == "real" and t > 0:
            return sleep_for(t)
        return t


def _no_sync() -> None:
    return None


def sleep_for(seconds: float) -> float:
    """Sleep `seconds` (nothing if <= 0) and return the wall-clock time that actually passed."""
    if seconds <= 0:
        return 0.0
    t0 = time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - t0
