"""Measured energy: Jetson INA3221 rails, Intel RAPL, NVML, or nothing (NaN in the log).

Every meter answers `read()` with cumulative joules since it was created, and names its
`source` ("ina3221", "rapl", "nvml", or "rapl+nvml" when a host has both). A client reads its
meter before and after its round and reports the difference; where no meter exists the report
is NaN and the source is "none". Modeled energy (modeled_energy below) is logged
either way.

- INA3221 (Jetson): power monitors on the module's rails. Only power is exposed, so a
  PowerSampler integrates it (trapezoid) on a background thread and at every read. Two sysfs
  layouts exist: the older downstream driver (JetPack 4, Nano/TX2/Xavier)
  /sys/bus/i2c/drivers/ina3221x/*/iio:device*/in_power{N}_input in mW with rail_name_{N}, and the
  mainline hwmon driver (JetPack 5/6, Orin) /sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/ with
  in{N}_input (mV), curr{N}_input (mA) and in{N}_label. The module's input rail (VDD_IN,
  POM_5V_IN, ...) is used alone when present (it already contains the others); otherwise the
  rails are summed.
- RAPL (Intel, and AMD on recent kernels): /sys/class/powercap/intel-rapl:N/energy_uj, the
  package domains only (sub-domains are inside them), with wraparound at max_energy_range_uj.
  A background poll every `poll_s` seconds catches wraps between reads. Usually root-only.
- NVML (NVIDIA GPUs, Volta or newer): nvmlDeviceGetTotalEnergyConsumption (mJ), if pynvml is
  importable (the optional `[gpu]` extra: nvidia-ml-py). A client rank that trains on a GPU
  meters that GPU alone by power sampling (nvml_power_meter: nvmlDeviceGetPowerUsage integrated
  like INA3221's rails), and rank 0 splits each GPU's energy among the client ranks on it by
  their measured compute time (attribute_gpu_energy), since they train on it at the same time.

On an emulation host several client ranks share one meter: each one's difference then includes
the others' consumption (docs/devices.md#energy).
"""

from __future__ import annotations

import glob
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["NONE", "CounterMeter", "EnergyMeter", "NvmlPower", "PowerReader", "PowerSampler", "Rail", "SumMeter",
           "attribute_gpu_energy", "detect_meter", "ina3221_meter", "modeled_energy", "nvml_meter", "nvml_power_meter",
           "pick_rails", "process_meter", "rapl_meter", "source_of"]

NONE = "none"
_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # the module input rail: Orin Nano/NX, Xavier NX (VDD_IN), Nano/TX2 (POM_5V_IN)


class EnergyMeter(Protocol):
    source: str

    def read(self) -> float:
        """Joules consumed since the meter was created (monotone)."""

    def close(self) -> None:
        """Stop any background thread."""


def _product_reader(paths: Sequence[Path], scale: float) -> Callable[[], float]:
    """A reader of the product of the numbers in `paths`, times `scale` (a rail's watts)."""

    def read() -> float:
        return math.prod(_read_number(p) for p in paths) * scale

    return read


def _read_number(path: Path) -> float:
    return float(path.read_text().strip())


# ---------------------------------------------------------------- power-only meters (INA3221)

@dataclass(frozen=True)
class Rail:
    """One INA3221 channel: power in watts from a reader function."""

    name: str
    read_w: Callable[[], float]


class _Poller:
    """Calls `tick` every `every_s` seconds on a daemon thread until closed or until the meter's
    files go away (OSError: a driver unbound), so a meter keeps up between reads."""

    def __init__(self, tick: Callable[[], float], every_s: float, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(tick, every_s), name=name, daemon=True)
        self._thread.start()

    def _run(self, tick: Callable[[], float], every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                tick()
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


class PowerSampler:
    """Integrates a power reading (W) over time, on a background thread and at every read."""

    def __init__(self, read_w: Callable[[], float], source: str, interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, background: bool = True) -> None:
        self.source = source
        self._read_w = read_w
        self._clock = clock
        self._lock = threading.Lock()
        self._joules = 0.0
        self._t = clock()
        self._p = read_w()
        self._poller = _Poller(self.sample, interval_s, f"{source}-sampler") if background else None

    def sample(self) -> float:
        """Take one sample now; returns the joules integrated so far."""
        with self._lock:
            t, p = self._clock(), self._read_w()
            self._joules += 0.5 * (p + self._p) * max(0.0, t - self._t)
            self._t, self._p = t, p
            return self._joules

    def read(self) -> float:
        return self.sample()

    def close(self) -> None:
        if self._poller is not None:
            self._poller.close()


def _iio_rails(root: Path) -> list[Rail]:
    """Older downstream driver: iio:device*/in_power{N}_input (mW), names in rail_name_{N}."""
    rails = []
    for dev in sorted(glob.glob(str(root / "sys/bus/i2c/drivers/ina3221x/*/iio:device*"))):
        d = Path(dev)
        for p in sorted(d.glob("in_power*_input")):
            ch = p.name[len("in_power"):-len("_input")]
            if not ch.isdigit():
                continue
            name_file = d / f"rail_name_{ch}"
            name = name_file.read_text().strip() if name_file.exists() else f"{d.name}/ch{ch}"
            rails.append(Rail(name, _product_reader([p], 1e-3)))
    return rails


def _hwmon_rails(root: Path) -> list[Rail]:
    """Mainline hwmon driver: in{N}_input (mV) x curr{N}_input (mA), N = 1..3, labels in{N}_label."""
    rails = []
    for hw in sorted(glob.glob(str(root / "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"))):
        d = Path(hw)
        for ch in (1, 2, 3):
            v, i = d / f"in{ch}_input", d / f"curr{ch}_input"
            if not (v.exists() and i.exists()):
                continue
            label = d / f"in{ch}_label"
            name = label.read_text().strip() if label.exists() else f"{d.name}/ch{ch}"
            if name.upper().startswith("NC"):  # channel not connected
                continue
            rails.append(Rail(name, _product_reader([v, i], 1e-6)))
    return rails


def pick_rails(rails: Sequence[Rail]) -> list[Rail]:
    """The module input rail alone if present (it contains the others), else every rail."""
    by_name = {r.name.upper(): r for r in rails}
    for name in _INPUT_RAILS:
        if name in by_name:
            return [by_name[name]]
    return list(rails)


def ina3221_meter(root: str | Path = "/", interval_s: float = 0.1, background: bool = True,
                  clock: Callable[[], float] = time.monotonic) -> PowerSampler | None:
    root = Path(root)
    rails = _iio_rails(root) or _hwmon_rails(root)
    if not rails:
        return None
    chosen = pick_rails(rails)
    try:
        for r in chosen:
            r.read_w()
    except (OSError, ValueError):
        return None

    def total_w() -> float:
        return sum(r.read_w() for r in chosen)

    meter = PowerSampler(total_w, "ina3221", interval_s, clock=clock, background=background)
    meter.rails = tuple(r.name for r in chosen)  # type: ignore[attr-defined]
    return meter


# ---------------------------------------------------------------- counters (RAPL, NVML)

class CounterMeter:
    """Accumulates a wrapping energy counter (one per domain) into monotone joules."""

    def __init__(self, source: str, counters: Sequence[tuple[Callable[[], float], float]], unit_j: float,
                 poll_s: float = 0.0) -> None:
        """counters: (read raw value, wrap range in raw units or inf); unit_j: joules per raw unit."""
        self.source = source
        self._counters = list(counters)
        self._unit = unit_j
        self._lock = threading.Lock()
        self._last = [read() for read, _ in self._counters]
        self._total = 0.0
        self._poller = _Poller(self.read, poll_s, f"{source}-poll") if poll_s > 0 else None

    def read(self) -> float:
        with self._lock:
            for i, (read, wrap) in enumerate(self._counters):
                now = read()
                delta = now - self._last[i]
                if delta < 0:  # the counter wrapped (at most once since the last read: see poll_s)
                    delta += wrap if math.isfinite(wrap) else 0.0
                    delta = max(delta, 0.0)
                self._total += delta * self._unit
                self._last[i] = now
            return self._total

    def close(self) -> None:
        if self._poller is not None:
            self._poller.close()


def rapl_meter(root: str | Path = "/", poll_s: float = 10.0) -> CounterMeter | None:
    """Package domains intel-rapl:N (not the sub-domains intel-rapl:N:M) whose energy_uj is readable."""
    base = Path(root) / "sys/class/powercap"
    counters = []
    for d in sorted(base.glob("intel-rapl:*")):
        if d.name.count(":") != 1:
            continue
        e, r = d / "energy_uj", d / "max_energy_range_uj"
        try:
            _read_number(e)
            wrap = _read_number(r) if r.exists() else math.inf
        except (OSError, ValueError):  # usually root-only (since Linux 5.10, CVE-2020-8694)
            continue
        counters.append((_product_reader([e], 1.0), wrap))
    if not counters:
        return None
    return CounterMeter("rapl", counters, 1e-6, poll_s)


def nvml_meter(gpu_index: int | None = None) -> CounterMeter | None:
    """NVIDIA GPUs through pynvml (total energy since driver load, mJ); None without pynvml or a GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        idx = range(n) if gpu_index is None else [gpu_index % n] if n else []
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in idx]
        for h in handles:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    except Exception:  # noqa: BLE001 - NVMLError subclasses vary by version: no GPU, no support, no driver
        return None
    if not handles:
        return None
    def counter(h: object) -> Callable[[], float]:
        return lambda: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(h))

    return CounterMeter("nvml", [(counter(h), math.inf) for h in handles], 1e-3)


class NvmlPower:
    """One GPU's power draw through pynvml (W). Tests pass their own object with `power_w()` in
    its place (it stands in for NVML, which a CPU host does not have)."""

    def __init__(self, gpu_index: int) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(gpu_index)
        self.power_w()

    def power_w(self) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0  # mW


class PowerReader(Protocol):
    def power_w(self) -> float:
        """The GPU's power draw now (W)."""


def nvml_power_meter(gpu_index: int, sampler: PowerReader | None = None, interval_s: float = 0.1,
                     clock: Callable[[], float] = time.monotonic, background: bool = True) -> PowerSampler | None:
    """The GPU `gpu_index`'s power integrated over time (source "nvml"); None without pynvml, a
    driver or that GPU. `sampler` replaces NVML (tests)."""
    if sampler is None:
        try:
            sampler = NvmlPower(gpu_index)
        except Exception:  # noqa: BLE001 - ImportError, or NVMLError subclasses that vary by version
            return None
    return PowerSampler(sampler.power_w, "nvml", interval_s, clock=clock, background=background)


def attribute_gpu_energy(measured_j: np.ndarray, compute_s: np.ndarray, ranks: np.ndarray,
                         gpus: Sequence[str]) -> np.ndarray:
    """Per client, its share of its GPU's energy. Client k's meter read the whole GPU `gpus[k]`
    ("" = not a shared GPU meter: kept as measured) while it trained; ranks[k] is its rank. The
    GPU's energy in the round is the mean over its ranks of what each rank's clients read (the
    ranks train at the same time; a rank's clients in turn), split by compute time (equally when
    none computed)."""
    out = np.array(measured_j, np.float64, copy=True)
    for gpu in sorted(set(gpus) - {""}):
        members = np.array([g == gpu for g in gpus])
        per_rank = [float(out[members & (ranks == r)].sum()) for r in np.unique(ranks[members])]
        total = float(np.mean(per_rank))
        t = compute_s[members]
        out[members] = total * t / t.sum() if t.sum() > 0 else total / members.sum()
    return out


class SumMeter:
    """Several meters read as one (e.g. a workstation's CPU package via RAPL plus its GPU via NVML)."""

    def __init__(self, meters: Sequence[EnergyMeter]) -> None:
        self.meters = list(meters)
        self.source = "+".join(m.source for m in self.meters)

    def read(self) -> float:
        return sum(m.read() for m in self.meters)

    def close(self) -> None:
        for m in self.meters:
            m.close()


def detect_meter(root: str | Path = "/", gpu_index: int | None = None, nvml: bool = True,
                 background: bool = True) -> EnergyMeter | None:
    """The energy meter of this machine, or None. `root` lets tests point at a fake sysfs tree.

    A Jetson's INA3221 input rail covers the whole module (CPU and GPU) and wins; otherwise
    RAPL (CPU package) and NVML (GPU) are summed where both exist.
    """
    ina = ina3221_meter(root, background=background)
    if ina is not None:
        return ina
    found: list[EnergyMeter] = []
    rapl = rapl_meter(root, poll_s=10.0 if background else 0.0)
    if rapl is not None:
        found.append(rapl)
    if nvml:
        gpu = nvml_meter(gpu_index)
        if gpu is not None:
            found.append(gpu)
    if not found:
        return None
    return found[0] if len(found) == 1 else SumMeter(found)


_PROCESS_METER: dict[str, EnergyMeter | None] = {}


def process_meter(gpu: int | None = None) -> EnergyMeter | None:
    """This process's meter (detected once, shared by every trainer in the process); `gpu`: the
    index of the GPU the process trains on, whose meter it then is.

    RELIEF_MPI_ENERGY_ROOT points detection at another sysfs root (tests, or a copied tree);
    RELIEF_MPI_ENERGY=off disables measuring.
    """
    if os.environ.get("RELIEF_MPI_ENERGY", "").lower() in ("off", "0", "none"):
        return None
    root = os.environ.get("RELIEF_MPI_ENERGY_ROOT", "/")
    if gpu is not None:  # a rank training on GPU `gpu`: a Jetson's INA3221, else that GPU's NVML power
        key = f"{root}#gpu{gpu}"
        if key not in _PROCESS_METER:
            _PROCESS_METER[key] = ina3221_meter(root) or nvml_power_meter(gpu)
        return _PROCESS_METER[key]
    if root not in _PROCESS_METER:
        local = os.environ.get("RELIEF_MPI_LOCAL_GPU")
        _PROCESS_METER[root] = detect_meter(root, gpu_index=int(local) if local else None)
    return _PROCESS_METER[root]


def source_of(meter: EnergyMeter | None) -> str:
    return NONE if meter is None else meter.source


def modeled_energy(p_busy: np.ndarray, p_idle: np.ndarray, nj_per_bit: np.ndarray, busy: np.ndarray, round_s: float,
                   nbytes: np.ndarray) -> np.ndarray:
    """P_busy * busy + P_idle * (round - busy) + J/bit * bits, per client, from each client's
    power figures (RunSetup.power) (one vector operation: a round's cost does not grow with the
    clients in Python)."""
    return p_busy * busy + p_idle * np.maximum(0.0, round_s - busy) + nj_per_bit * 1e-9 * 8 * nbytes
