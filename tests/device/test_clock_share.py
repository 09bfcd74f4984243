"""A GPU share emulated by the clock (gpu_share s, no MPS): steps charged at host time / s, and
measured between two device synchronisations. Time is a fake clock here (no wall-time bands):
sleeping advances it by what was asked, a synchronisation by the queued work it waits for."""

from __future__ import annotations

import dataclasses
import time

import pytest

from relief_mpi.device.clock import DeviceClock
from relief_mpi.device.gpu import synchronizer
from relief_mpi.device.profiles import load_profiles


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    ft = FakeTime()
    monkeypatch.setattr(time, "perf_counter", ft.perf_counter)
    monkeypatch.setattr(time, "sleep", ft.sleep)
    return ft


def prof(flops: float) -> object:
    return dataclasses.replace(load_profiles()["jetson-orin-nano"], flops=flops)


def native() -> object:
    return load_profiles()["workstation"]


@pytest.mark.parametrize("mode", ["virtual", "real"])
def test_native_profile_charged_host_time_over_share(fake: FakeTime, mode: str) -> None:
    c = DeviceClock(native(), mode, factor=1 / 0.25)  # type: ignore[arg-type]
    c.account_step(1e9, 0.02)
    c.account_step(1e9, 0.01)
    assert c.busy_s == pytest.approx(4 * 0.03)  # on a quarter of the GPU a step lasts 4x
    assert c.compute_wall_s == pytest.approx(0.03)
    if mode == "real":
        assert fake.slept == pytest.approx([0.06, 0.03])  # the remainder 3x host time, slept
    else:
        assert fake.slept == []


def test_dilated_profile_share_against_target(fake: FakeTime) -> None:
    # target 0.1 s a step; the host needs 0.02 s on the whole GPU, 0.08 s on a quarter: keeps up
    v = DeviceClock(prof(1e10), "virtual", factor=4.0)  # type: ignore[arg-type]
    v.account_step(1e9, 0.02)
    assert (v.busy_s, v.lag_s) == (pytest.approx(0.1), 0.0)
    # 0.04 s on the whole GPU = 0.16 s on the quarter: 0.06 s behind the target
    v.account_step(1e9, 0.04)
    assert v.busy_s == pytest.approx(0.2) and v.lag_s == pytest.approx(0.06)
    r = DeviceClock(prof(1e10), "real", factor=4.0)  # type: ignore[arg-type]
    r.account_step(1e9, 0.02)
    r.account_step(1e9, 0.04)
    assert fake.slept == pytest.approx([0.08, 0.12])  # up to the target, then up to the share's 0.16 s
    assert r.busy_s == pytest.approx(0.1 + 0.16) and r.lag_s == pytest.approx(0.06)


def test_whole_share_is_todays_clock(fake: FakeTime) -> None:
    a = DeviceClock(prof(1e10), "real")  # type: ignore[arg-type]
    a.account_step(1e9, 0.04)
    assert fake.slept == pytest.approx([0.06]) and a.busy_s == pytest.approx(0.1)
    with pytest.raises(ValueError, match="factor"):
        DeviceClock(native(), "virtual", factor=0.5)  # type: ignore[arg-type]


def test_step_measured_between_synchronisations(fake: FakeTime) -> None:
    """The launch returns at once; the queued kernels take 0.05 s and the synchronisation at the
    step's end waits for them. The step is charged 0.05 s (x 2 on a half share), not the launch."""
    calls: list[float] = []

    def sync() -> None:
        calls.append(fake.now)
        if len(calls) % 2 == 0:  # the end-of-step sync drains the queue
            fake.now += 0.05

    c = DeviceClock(native(), "virtual", factor=2.0, sync=sync)  # type: ignore[arg-type]
    t0 = c.start_step()
    fake.now += 0.001  # launching the step's kernels
    c.end_step(1e9, t0)
    assert len(calls) == 2
    assert c.compute_wall_s == pytest.approx(0.051)
    assert c.busy_s == pytest.approx(0.102)


def test_cpu_synchronizer_is_a_no_op() -> None:
    import torch

    assert synchronizer(torch.device("cpu"))() is None
