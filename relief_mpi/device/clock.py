"""Emulated time on a client: a step lasts FLOPs / profile speed.

`real` sleeps the remainder after the host computed the step (and records lag where the host
was slower than the profile); `virtual` only adds the same times up, for fast experiments.
Both report the emulated busy time, so the two clocks give the same schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from relief_mpi.device.profiles import DeviceProfile


@dataclass
class DeviceClock:
    profile: DeviceProfile
    mode: str  # "real" or "virtual"
    busy_s: float = 0.0  # emulated compute time this round
    lag_s: float = 0.0  # host slower than the profile, summed
    compute_wall_s: float = 0.0  # host time actually spent computing

    def reset(self) -> None:
        self.busy_s = self.lag_s = self.compute_wall_s = 0.0

    def step_time(self, flops: float) -> float:
        return 0.0 if self.profile.native else flops / self.profile.flops

    def account_step(self, flops: float, host_s: float) -> None:
        """Charge one step that took host_s seconds of real compute."""
        self.compute_wall_s += host_s
        if self.profile.native:
            self.busy_s += host_s
            return
        target = flops / self.profile.flops
        self.lag_s += max(0.0, host_s - target)
        if self.mode == "real":
            if target > host_s:
                time.sleep(target - host_s)
            self.busy_s += max(target, host_s)
        else:
            self.busy_s += target

    def transfer(self, nbytes: float, up: bool) -> float:
        """Emulated link time for a transfer; sleeps it under the real clock."""
        t = self.profile.transfer_s(nbytes, up)
        if self.mode == "real" and t > 0:
            time.sleep(t)
        return t
