"""DeviceClock (real clock = measured wall time) and the throttle's placement and cgroup logic."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relief_mpi.device import clock as clock_module
from relief_mpi.device.clock import DeviceClock
from relief_mpi.device.profiles import load_profiles
from relief_mpi.device.throttle import cgroup_cpu_max, local_placement, plan_cores


def profile(flops: float):
    return dataclasses.replace(load_profiles()["raspberry-pi-4"], flops=flops)


class FakeTime:
    """The clock module's `time`: sleep(s) records s and moves perf_counter on by s + overrun (a host
    whose sleeps overrun), so what the clock measures is known exactly and no test waits."""

    def __init__(self, overrun: float = 0.0) -> None:
        self.now = 100.0
        self.overrun = overrun
        self.sleeps: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s + self.overrun


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    ft = FakeTime(overrun=0.05)
    monkeypatch.setattr(clock_module, "time", ft)
    return ft


def test_virtual_clock_adds_targets_without_sleeping(fake_time: FakeTime) -> None:
    c = DeviceClock(profile(1e9), "virtual")
    for _ in range(10):
        c.account_step(5e8, 0.001)  # 0.5 s emulated each
    assert fake_time.sleeps == []  # sleeping the targets would be 10 sleeps of 0.499 s
    assert c.busy_s == pytest.approx(5.0)
    assert c.lag_s == 0.0


def test_real_clock_sleeps_the_remainder_and_charges_what_the_stopwatch_shows(fake_time: FakeTime) -> None:
    """busy is a stopwatch around the sleeps, not the target: each sleep asks for target - host and
    overruns by 50 ms (as on a loaded host), so busy = host + asked + 50 ms per step, exactly."""
    c = DeviceClock(profile(1e9), "real")
    for _ in range(3):
        c.account_step(1e8, 0.02)  # 0.1 s target each, the host computed for 0.02 s
    assert fake_time.sleeps == pytest.approx([0.08] * 3)
    assert c.busy_s == pytest.approx(3 * (0.02 + 0.08 + 0.05))
    assert c.lag_s == 0.0 and c.compute_wall_s == pytest.approx(0.06)


def test_real_clock_busy_is_measured_on_the_real_clock() -> None:
    """The same on the real clock, as a ratio to what the same run measured around it: busy is at
    least the targets (sleeps never end early) and at most the wall time around the calls (a busy
    host only adds to both)."""
    c = DeviceClock(profile(1e9), "real")
    t0 = time.perf_counter()
    for _ in range(3):
        c.account_step(2e7, 0.0)  # 0.02 s target each, host took nothing
    wall = time.perf_counter() - t0
    assert 0.06 <= c.busy_s <= wall


def test_real_clock_records_lag_when_host_is_slower(fake_time: FakeTime) -> None:
    c = DeviceClock(profile(1e9), "real")
    c.account_step(1e8, 0.3)  # target 0.1 s, host took 0.3 s: no sleep
    assert fake_time.sleeps == []
    assert c.busy_s == pytest.approx(0.3)
    assert c.lag_s == pytest.approx(0.2)


def test_transfer_real_sleeps_link_time_and_returns_the_measured_time(fake_time: FakeTime) -> None:
    p = dataclasses.replace(profile(1e9), uplink_mbps=8.0, latency_ms=50.0)
    t = DeviceClock(p, "real").transfer(100_000, up=True)  # 50 ms + 0.1 s
    assert fake_time.sleeps == pytest.approx([0.15])
    assert t == pytest.approx(0.15 + 0.05)  # measured: the overrun shows
    assert DeviceClock(p, "virtual").transfer(100_000, up=True) == pytest.approx(0.15)
    assert fake_time.sleeps == pytest.approx([0.15])  # the virtual clock did not sleep


def test_plan_cores_spreads_and_shares() -> None:
    assert plan_cores([0, 1, 2, 3], 0, 2) == [0, 1]
    assert plan_cores([0, 1, 2, 3], 1, 2) == [2, 3]
    assert plan_cores([0, 1], 2, 5) == [0]  # oversubscribed: round-robin single cores
    assert plan_cores([0, 1], 3, 5) == [1]
    slices = [plan_cores(list(range(8)), i, 3) for i in range(3)]
    assert all(len(s) == 2 for s in slices) and len({c for s in slices for c in s}) == 6


def test_local_placement_counts_clients_per_host() -> None:
    hosts = ["a", "a", "b", "a", "b"]  # rank 0 (server) on a
    assert local_placement(hosts, 1) == (0, 2)
    assert local_placement(hosts, 3) == (1, 2)
    assert local_placement(hosts, 4) == (1, 2)


def test_apply_throttle_in_a_child_process() -> None:
    """Pins and sets threads (in a child, so this test process keeps its affinity)."""
    code = (
        "import psutil, torch\n"
        "from relief_mpi.device.profiles import load_profiles\n"
        "from relief_mpi.device.throttle import apply_throttle\n"
        "r = apply_throttle(load_profiles()['raspberry-pi-4'], 1, 2)\n"
        "print(r.affinity, r.cores, r.threads, torch.get_num_threads(), sorted(psutil.Process().cpu_affinity()))\n"
    )
    env = dict(os.environ)
    env.pop("RELIEF_MPI_AFFINITY", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    affinity, rest = out.stdout.split(" ", 1)
    n = os.cpu_count() or 1
    if affinity == "launcher":
        pytest.skip("this process is already bound by a launcher")
    assert affinity == "pinned"
    expect = plan_cores(list(range(n)), 1, 2)
    threads = min(4, len(expect))
    assert rest.strip() == f"{expect} {threads} {threads} {expect}"


def fake_cgroup(root: Path, controllers: str) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("0::/user.slice/job\n")
    here = root / "sys/fs/cgroup/user.slice/job"
    here.mkdir(parents=True)
    (here / "cgroup.controllers").write_text(controllers + "\n")
    return here


def test_cgroup_cpu_max_writes_quota(tmp_path: Path) -> None:
    here = fake_cgroup(tmp_path, "cpuset cpu io memory pids")
    assert cgroup_cpu_max(1.5, "relief-mpi-rank1", root=tmp_path) == "cpu.max 150000 100000"
    assert (here / "relief-mpi-rank1/cpu.max").read_text() == "150000 100000\n"
    assert (here / "relief-mpi-rank1/cgroup.procs").read_text().strip() == str(os.getpid())


def test_cgroup_without_cpu_controller_is_skipped(tmp_path: Path) -> None:
    fake_cgroup(tmp_path, "memory pids")
    assert cgroup_cpu_max(1, "x", root=tmp_path).startswith("unavailable")
    assert cgroup_cpu_max(1, "x", root=tmp_path / "nowhere").startswith("unavailable")
