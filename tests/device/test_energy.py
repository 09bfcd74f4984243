"""Energy meters against fake sysfs trees (INA3221 in both layouts, RAPL with wraparound, NVML)."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import pytest

from relief_mpi.device import energy


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def iio_tree(root: Path, rails: dict[str, int]) -> Path:
    """Older downstream ina3221x driver (JetPack 4): power in mW per channel, rail_name_N."""
    dev = root / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for ch, (name, mw) in enumerate(rails.items()):
        write(dev / f"rail_name_{ch}", name)
        write(dev / f"in_power{ch}_input", str(mw))
        write(dev / f"in_voltage{ch}_input", "5000")  # present on the real driver, must be ignored
    return dev


def hwmon_tree(root: Path, chip: str, rails: list[tuple[str, int, int]]) -> Path:
    """Mainline ina3221 hwmon driver (JetPack 5/6): in{N}_input mV, curr{N}_input mA, in{N}_label."""
    d = root / f"sys/bus/i2c/drivers/ina3221/{chip}/hwmon/hwmon{chip[-1]}"
    for ch, (label, mv, ma) in enumerate(rails, 1):
        write(d / f"in{ch}_label", label)
        write(d / f"in{ch}_input", str(mv))
        write(d / f"curr{ch}_input", str(ma))
    write(d / "in7_label", "sum of shunt voltages")  # the summed channel must not be counted
    write(d / "in7_input", "99999")
    return d


def test_ina3221_iio_uses_the_input_rail_and_integrates_power(tmp_path: Path) -> None:
    dev = iio_tree(tmp_path, {"POM_5V_IN": 5000, "POM_5V_GPU": 1000, "POM_5V_CPU": 1500})
    clock = FakeClock()
    m = energy.ina3221_meter(tmp_path, background=False, clock=clock)
    assert m is not None and m.source == "ina3221"
    assert m.rails == ("POM_5V_IN",)  # the others are inside the input rail
    assert m.read() == 0.0
    clock.t = 2.0
    assert m.read() == pytest.approx(10.0)  # 5 W for 2 s
    write(dev / "in_power0_input", "7000")
    clock.t = 3.0
    assert m.read() == pytest.approx(10.0 + 0.5 * (5 + 7) * 1.0)  # trapezoid over the change
    m.close()


def test_ina3221_hwmon_orin_nano_picks_vdd_in(tmp_path: Path) -> None:
    hwmon_tree(tmp_path, "1-0040", [("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 300),
                                    ("VDD_SOC", 5000, 200)])
    clock = FakeClock()
    m = energy.ina3221_meter(tmp_path, background=False, clock=clock)
    assert m is not None and m.rails == ("VDD_IN",)
    clock.t = 10.0
    assert m.read() == pytest.approx(5.0 * 1.2 * 10.0)


def test_ina3221_hwmon_agx_orin_sums_rails_without_nc(tmp_path: Path) -> None:
    # AGX Orin has no module input rail: two chips, rails summed, NC channels skipped
    hwmon_tree(tmp_path, "1-0040", [("VDD_GPU_SOC", 19000, 500), ("VDD_CPU_CV", 19000, 200),
                                    ("VIN_SYS_5V0", 5000, 600)])
    hwmon_tree(tmp_path, "1-0041", [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 100), ("NC", 0, 0)])
    clock = FakeClock()
    m = energy.ina3221_meter(tmp_path, background=False, clock=clock)
    assert m is not None
    assert sorted(m.rails) == ["VDDQ_VDD2_1V8AO", "VDD_CPU_CV", "VDD_GPU_SOC", "VIN_SYS_5V0"]
    clock.t = 1.0
    assert m.read() == pytest.approx(9.5 + 3.8 + 3.0 + 0.5)


class CountingClock(FakeClock):
    """A fake clock that counts its readings: the background sampler reads it once per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.t


def wait_for_samples(clock: CountingClock, n: int = 2, limit_s: float = 20.0) -> None:
    """Until the sampler thread has read the clock n more times (so at least one whole sample
    came after what the caller changed); only a sampler that never samples runs into the limit."""
    start, deadline = clock.calls, time.monotonic() + limit_s
    while clock.calls < start + n:
        assert time.monotonic() < deadline, "the background sampler took no sample"
        time.sleep(0.002)


def test_power_sampler_background_thread_integrates_between_reads(tmp_path: Path) -> None:
    """The thread sees a power change between two reads: 4 W over [0, 1] s, then 0 W until the read
    at 3 s is 4 J; a meter that only sampled at reads would integrate 0.5 (4 + 0) x 3 = 6 J. Time is
    a fake clock, so a loaded host only delays the samples, never changes the joules."""
    dev = iio_tree(tmp_path, {"POM_5V_IN": 4000})
    clock = CountingClock()
    m = energy.ina3221_meter(tmp_path, interval_s=0.001, clock=clock)
    assert m is not None
    clock.t = 1.0
    wait_for_samples(clock)
    write(dev / "in_power0_input", "0")
    wait_for_samples(clock)
    clock.t = 3.0
    wait_for_samples(clock)
    m.close()
    assert m.read() == pytest.approx(4.0)


def rapl_tree(root: Path, pkg: dict[str, tuple[int, int]]) -> None:
    for name, (uj, rng) in pkg.items():
        d = root / "sys/class/powercap" / name
        write(d / "energy_uj", str(uj))
        write(d / "max_energy_range_uj", str(rng))
        write(d / "name", "package-0" if name.count(":") == 1 else "core")


def test_rapl_counts_packages_only_and_handles_wraparound(tmp_path: Path) -> None:
    rng = 262_143_328_850
    rapl_tree(tmp_path, {"intel-rapl:0": (1_000_000, rng), "intel-rapl:0:0": (500_000, rng),
                         "intel-rapl:1": (rng - 1_000_000, rng)})
    m = energy.rapl_meter(tmp_path, poll_s=0)
    assert m is not None and m.source == "rapl"
    assert m.read() == 0.0
    base = tmp_path / "sys/class/powercap"
    write(base / "intel-rapl:0/energy_uj", str(3_000_000))  # +2 J
    write(base / "intel-rapl:0:0/energy_uj", str(9_000_000))  # sub-domain: inside package 0, ignored
    write(base / "intel-rapl:1/energy_uj", str(500_000))  # wrapped: +1 J to the range, +0.5 J after
    assert m.read() == pytest.approx(2.0 + 1.5)
    write(base / "intel-rapl:0/energy_uj", str(4_000_000))
    assert m.read() == pytest.approx(4.5)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_rapl_unreadable_is_no_meter(tmp_path: Path) -> None:
    rapl_tree(tmp_path, {"intel-rapl:0": (1, 10)})
    (tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj").chmod(0)
    assert energy.rapl_meter(tmp_path, poll_s=0) is None


def test_detect_meter_order_and_none(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert energy.detect_meter(empty, nvml=False, background=False) is None
    assert energy.source_of(None) == "none"
    rapl_only = tmp_path / "x86"
    rapl_tree(rapl_only, {"intel-rapl:0": (1, 10**9)})
    m = energy.detect_meter(rapl_only, nvml=False, background=False)
    assert m is not None and m.source == "rapl"
    jetson = tmp_path / "jetson"
    rapl_tree(jetson, {"intel-rapl:0": (1, 10**9)})
    iio_tree(jetson, {"POM_5V_IN": 3000})
    m = energy.detect_meter(jetson, nvml=False, background=False)
    assert m is not None and m.source == "ina3221"


def test_nvml_counter_with_a_stand_in_pynvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pynvml is a third-party library absent here; a stand-in module checks our unit handling."""
    counter = {"mj": 1000}
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetTotalEnergyConsumption=lambda h: counter["mj"] * (h + 1))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    m = energy.nvml_meter(gpu_index=1)  # only GPU 1 (this rank's local GPU)
    assert m is not None and m.source == "nvml"
    counter["mj"] = 4000
    assert m.read() == pytest.approx((4000 - 1000) * 2 / 1000)
    rapl_tree(tmp_path, {"intel-rapl:0": (1, 10**9)})
    both = energy.detect_meter(tmp_path, gpu_index=0, background=False)
    assert both is not None and both.source == "rapl+nvml"


def test_this_machine_has_no_meter() -> None:
    """The lab machine: no /sys/class/powercap, no INA3221, no pynvml (see docs/devices.md)."""
    if Path("/sys/class/powercap").exists() or Path("/sys/bus/i2c/drivers/ina3221").exists():
        pytest.skip("this host has a power meter")
    m = energy.detect_meter("/", background=False)
    assert m is None
    assert energy.source_of(m) == "none"
