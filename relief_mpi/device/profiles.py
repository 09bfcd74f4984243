"""Device profiles: what a client emulates (speed, power, link, sensors), from TOML data files.

Shipped profiles live in relief_mpi/device/profiles/*.toml; `--profiles DIR` adds or overrides
with the user's own files (one profile per file, same fields).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relief_mpi.data.sensors import sensor_names
from relief_mpi.errors import ReliefError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["SHIPPED_DIR", "DeviceProfile", "load_profiles", "parse_profile", "parse_sensors", "read_toml"]

SHIPPED_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    flops: float  # effective training FLOP/s for this workload; inf = native (no throttle)
    threads: int
    memory_mb: float
    p_busy_w: float
    p_idle_w: float
    uplink_mbps: float
    downlink_mbps: float
    latency_ms: float
    energy_per_bit_nj: float
    sensors: tuple[str, ...] | None  # None = every modality
    description: str = ""
    compute: str = "cpu"  # what trains on the real device: "cpu", "gpu" or "native" (the host itself)
    gpu_share: float = 1.0  # share of a host GPU's compute a rank of this profile gets (device/gpu.py)
    device: str = "auto"  # where it trains under --device auto: "auto", "cpu" or "cuda" (device/gpu.py)

    @property
    def native(self) -> bool:
        return math.isinf(self.flops)

    def transfer_s(self, nbytes: float, up: bool) -> float:
        """Emulated link time: latency + bytes / bandwidth."""
        if nbytes <= 0:
            return 0.0
        mbps = self.uplink_mbps if up else self.downlink_mbps
        return self.latency_ms / 1000.0 + nbytes * 8.0 / (mbps * 1e6)


_REQUIRED = ("flops", "threads", "memory_mb", "p_busy_w", "p_idle_w", "uplink_mbps", "downlink_mbps",
             "latency_ms", "energy_per_bit_nj")
_OPTIONAL = ("name", "description", "sensors", "compute", "gpu_share", "device")
_COMPUTE = ("cpu", "gpu", "native")
_DEVICES = ("auto", "cpu", "cuda")


def _number(path: Path, d: dict, key: str, minimum: float, open_min: bool) -> float:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < minimum or (
            open_min and v == minimum):
        op = ">" if open_min else ">="
        raise ReliefError(f"device profile {path}: {key} must be a number {op} {minimum:g}, got {v!r}")
    return float(v)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML data file (a device profile or a fleet) as a table; one error line naming the file
    when it cannot be read, is not UTF-8 or is not TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ReliefError(f"{what} {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ReliefError(f"{what} {path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ReliefError(f"{what} {path}: not valid TOML ({e})") from None


def parse_sensors(value: object, where: str) -> tuple[str, ...] | None:
    """A profile's or a fleet tier's `sensors`: "all" (None) or a list of names, each one that some
    dataset of ours has (data.sensors.sensor_names), so a typo is an error and not a missing sensor."""
    if value == "all":
        return None
    if not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
        raise ReliefError(f"{where}: sensors must be \"all\" or a list of names")
    known = sensor_names()
    typos = [x for x in value if x not in known]
    if typos:
        raise ReliefError(f"{where}: unknown sensor {typos[0]!r} (known: {', '.join(known)})")
    return tuple(value)


def parse_profile(path: Path) -> DeviceProfile:
    """One profile file, every field checked: a bad value is one error line naming the file and the field."""
    where = f"device profile {path}"
    d = read_toml(path, "device profile")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ReliefError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(d) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ReliefError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(_REQUIRED + _OPTIONAL)})")
    flops = math.inf if d["flops"] in ("native", "inf") else _number(path, d, "flops", 0.0, open_min=True)
    threads = d["threads"]
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ReliefError(f"{where}: threads must be an integer >= 1, got {threads!r}")
    sensors = parse_sensors(d.get("sensors", "all"), where)
    compute = str(d.get("compute", "native" if math.isinf(flops) else "cpu"))
    if compute not in _COMPUTE:
        raise ReliefError(f"{where}: compute must be one of {', '.join(_COMPUTE)}, got {compute!r}")
    share = d.get("gpu_share", 1.0)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share <= 1.0:
        raise ReliefError(f"{where}: gpu_share must be a number with 0 < gpu_share <= 1, got {share!r}")
    device = d.get("device", "auto")
    if device not in _DEVICES:
        raise ReliefError(f"{where}: device must be one of {', '.join(_DEVICES)}, got {device!r}")
    return DeviceProfile(
        name=str(d.get("name", path.stem)), flops=flops, threads=threads,
        memory_mb=_number(path, d, "memory_mb", 0.0, True), p_busy_w=_number(path, d, "p_busy_w", 0.0, False),
        p_idle_w=_number(path, d, "p_idle_w", 0.0, False), uplink_mbps=_number(path, d, "uplink_mbps", 0.0, True),
        downlink_mbps=_number(path, d, "downlink_mbps", 0.0, True),
        latency_ms=_number(path, d, "latency_ms", 0.0, False),
        energy_per_bit_nj=_number(path, d, "energy_per_bit_nj", 0.0, False),
        sensors=sensors, description=str(d.get("description", "")), compute=compute,
        gpu_share=float(share), device=str(device),
    )


def load_profiles(extra_dir: str | Path | None = None) -> dict[str, DeviceProfile]:
    """Shipped profiles, then the user's directory on top (same name overrides)."""
    out: dict[str, DeviceProfile] = {}
    dirs = [SHIPPED_DIR]
    if extra_dir is not None:
        p = Path(extra_dir).expanduser()
        if not p.is_dir():
            raise ReliefError(f"--profiles {p}: not a directory")
        dirs.append(p)
    for d in dirs:
        for f in sorted(d.glob("*.toml")):
            prof = parse_profile(f)
            out[prof.name] = prof
    return out
