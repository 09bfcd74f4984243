"""Device profiles: what a client emulates (speed, power, link, sensors), from TOML data files.

Shipped profiles live in relief_mpi/device/profiles/*.toml; `--profiles DIR` adds or overrides
with the user's own files (one profile per file, same fields).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from relief_mpi.errors import ReliefError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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


def parse_profile(path: Path) -> DeviceProfile:
    try:
        d = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ReliefError(f"device profile {path}: {e}") from None
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ReliefError(f"device profile {path}: missing field(s) {', '.join(missing)}")
    flops = d["flops"]
    flops = math.inf if flops in ("native", "inf") else float(flops)
    if flops <= 0:
        raise ReliefError(f"device profile {path}: flops must be > 0 or \"native\"")
    sensors = d.get("sensors", "all")
    return DeviceProfile(
        name=str(d.get("name", path.stem)), flops=flops, threads=int(d["threads"]),
        memory_mb=float(d["memory_mb"]), p_busy_w=float(d["p_busy_w"]), p_idle_w=float(d["p_idle_w"]),
        uplink_mbps=float(d["uplink_mbps"]), downlink_mbps=float(d["downlink_mbps"]),
        latency_ms=float(d["latency_ms"]), energy_per_bit_nj=float(d["energy_per_bit_nj"]),
        sensors=None if sensors == "all" else tuple(sensors), description=str(d.get("description", "")),
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
