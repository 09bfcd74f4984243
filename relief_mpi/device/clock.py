"""Emulated time on a client: a step lasts FLOPs / profile speed.

`real` sleeps the remainder after the host computed the step, and charges the wall-clock time
measured around compute + sleep, so busy time is what a stopwatch would show (it exceeds the
target where the host is slower than the profile; that excess is also summed as lag).
`virtual` only adds the targets up, for fast experiments: the schedule it computes is the one
the real clock reproduces whenever the host keeps up with the profile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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

    def __post_init__(self) -> None:
        if self.mode not in ("real", "virtual"):
            raise ValueError(f"clock mode must be 'real' or 'virtual', got {self.mode!r}")

    def reset(self) -> None:
        self.busy_s = self.lag_s = self.compute_wall_s = 0.0

    def step_time(self, flops: float) -> float:
        return 0.0 if self.profile.native else flops / self.profile.flops

    def account_step(self, flops: float, host_s: float) -> None:
        """Charge one step that took host_s seconds of real compute (measured by the caller)."""
        self.compute_wall_s += host_s
        if self.profile.native:
            self.busy_s += host_s
            return
        target = flops / self.profile.flops
        self.lag_s += max(0.0, host_s - target)
        if self.mode == "real":
            self.busy_s += host_s + sleep_for(target - host_s)
        else:
            self.busy_s += target

    def transfer(self, nbytes: float, up: bool) -> float:
        """Emulated link time for a transfer; under the real clock it is slept and measured."""
        t = self.profile.transfer_s(nbytes, up)
        if self.mode == "real" and t > 0:
            return sleep_for(t)
        return t


def sleep_for(seconds: float) -> float:
    """Sleep `seconds` (nothing if <= 0) and return the wall-clock time that actually passed."""
    if seconds <= 0:
        return 0.0
    t0 = time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - t0
