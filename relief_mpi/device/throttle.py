"""Throttling a client rank to its device profile's share of the host.

Called once per client rank by relief_mpi/mpirun.py before the first round (`rank_report`; the
records travel to rank 0 through comm.world):

- CPU affinity (psutil): the client ranks on one host are spread over its cores: with at least
  as many cores as local clients each one gets a contiguous slice, otherwise they share cores
  round-robin. A launcher that already bound the rank (its affinity is narrower than the host)
  is respected. RELIEF_MPI_AFFINITY=off skips pinning.
- torch.set_num_threads: the profile's threads, capped by the cores this rank got.
- CUDA (where the rank trains on a GPU: --device and the profile's `device`, device/gpu.py):
  device = local rank mod visible device count, and a per-process memory fraction: the
  profile's memory cap over the device's memory, at most an equal share of the device among
  its local ranks. The compute share (`gpu_share`: MPS, or the clock) is device/gpu.py's.
- cgroup v2 cpu.max (opt-in, RELIEF_MPI_CGROUP=1, and only when the process's cgroup is
  writable): a child cgroup capped at the granted cores.
- Memory: the profile's memory_mb is recorded, not enforced on the CPU (RLIMIT_AS breaks
  torch's virtual-memory reservations); see docs/devices.md#memory.

Time dilation itself is the DeviceClock's job (clock.py): each step sleeps the remainder of
FLOPs / profile speed. Every rank's settings and its energy meter's source go to rank 0 in one
small gather (comm.world.World.gather_text) and end up in the log's `profiles` attribute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from relief_mpi.device.energy import process_meter, source_of
from relief_mpi.device.gpu import RankDevice, rank_device
from relief_mpi.device.profiles import DeviceProfile

__all__ = ["REPORT_LEN", "ThrottleReport", "apply_throttle", "cgroup_cpu_max", "energy_gpus", "local_placement",
           "plan_cores", "process_device", "rank_report", "read_reports"]

REPORT_LEN = 640


@dataclass
class ThrottleReport:
    local_index: int  # among the client ranks on this host
    local_clients: int
    cores: list[int] = field(default_factory=list)  # CPU affinity set (empty = untouched)
    affinity: str = "untouched"  # "pinned", "launcher", "off", "unavailable: ..."
    threads: int = 0
    cuda_device: int | None = None
    cuda_memory_fraction: float | None = None
    cgroup: str = "off"
    memory_cap_mb: float = 0.0  # recorded, not enforced on the CPU
    energy_source: str = "none"
    device: str = "cpu"  # where the rank trains, why, and how it gets its GPU share (device/gpu.py)
    device_why: str = ""
    share_method: str = "cpu"
    share_why: str = ""
    gpu_share: float = 1.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def local_placement(hosts: Sequence[str], rank: int) -> tuple[int, int]:
    """(index of `rank` among the client ranks on its host, number of client ranks there)."""
    mine = hosts[rank]
    clients = [r for r in range(1, len(hosts)) if hosts[r] == mine]
    return clients.index(rank), len(clients)


def plan_cores(available: Sequence[int], local_index: int, local_clients: int) -> list[int]:
    """The cores of one local client: a contiguous slice, or one shared core when oversubscribed."""
    cores = sorted(available)
    if not cores:
        return []
    if local_clients <= len(cores):
        per = len(cores) // local_clients
        return cores[local_index * per:(local_index + 1) * per]
    return [cores[local_index % len(cores)]]


def _host_cpus() -> list[int]:
    import psutil

    n = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    return list(range(n))


def process_device(requested: str, profile: DeviceProfile | None, hosts: Sequence[str], rank: int) -> RankDevice:
    """This rank's device and GPU share (device/gpu.py): a client rank by its (first) client's
    profile and its index among the host's client ranks; rank 0 (profile None) as --device says.
    Raises ReliefError where CUDA is required and none is visible (a start-up error)."""
    if profile is None:
        return rank_device(requested, "auto", 1.0, 0, "server", hosts[rank] if hosts else "")
    idx, _ = local_placement(hosts, rank)
    return rank_device(requested, profile.device, profile.gpu_share, idx, profile.name, hosts[rank])


def apply_throttle(profile: DeviceProfile, local_index: int, local_clients: int, rank: int = 0,
                   rdev: RankDevice | None = None) -> ThrottleReport:
    """Pin, set threads, cap the GPU's memory; returns what was done (never raises for a missing facility)."""
    import torch

    rdev = rdev or RankDevice()
    rep = ThrottleReport(local_index, local_clients, memory_cap_mb=profile.memory_mb, device=rdev.device,
                         device_why=rdev.why, share_method=rdev.share_method, share_why=rdev.share_why,
                         gpu_share=rdev.gpu_share)
    cores: list[int] = []
    if os.environ.get("RELIEF_MPI_AFFINITY", "").lower() in ("off", "0", "none"):
        rep.affinity = "off"
    else:
        try:
            import psutil

            proc = psutil.Process()
            current = sorted(proc.cpu_affinity())
            if len(current) < len(_host_cpus()):
                rep.affinity = "launcher"
                cores = current
            else:
                cores = plan_cores(current, local_index, local_clients)
                proc.cpu_affinity(cores)
                rep.affinity = "pinned"
        except (ImportError, AttributeError, OSError, ValueError) as e:  # psutil lacks affinity on macOS
            rep.affinity = f"unavailable: {type(e).__name__}"
    rep.cores = cores
    share = len(cores) if cores else max(1, len(_host_cpus()) // max(1, local_clients))
    rep.threads = max(1, min(profile.threads, share))
    torch.set_num_threads(rep.threads)
    if rdev.device.startswith("cuda"):
        n = torch.cuda.device_count()
        dev = torch.device(rdev.device).index or 0
        torch.cuda.set_device(dev)
        os.environ["RELIEF_MPI_LOCAL_GPU"] = str(dev)  # the NVML meter reads this GPU
        total_mb = torch.cuda.get_device_properties(dev).total_memory / 2**20
        per_device = -(-local_clients // n)
        frac = min(1.0 / per_device, profile.memory_mb / total_mb)
        torch.cuda.set_per_process_memory_fraction(frac, dev)
        rep.cuda_device, rep.cuda_memory_fraction = dev, round(frac, 4)
    if os.environ.get("RELIEF_MPI_CGROUP", "") == "1" and not profile.native:
        rep.cgroup = cgroup_cpu_max(max(1, len(cores) or rep.threads), f"relief-mpi-rank{rank}-{os.getpid()}")
    return rep


def cgroup_cpu_max(cpus: float, name: str, root: str | Path = "/", period_us: int = 100_000) -> str:
    """Move this process into a child cgroup capped at `cpus` CPUs; returns what happened."""
    root = Path(root)
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError as e:
        return f"unavailable: {e.strerror}"
    v2 = [ln.split("::", 1)[1] for ln in lines if ln.startswith("0::")]
    if not v2:
        return "unavailable: no cgroup v2"
    here = root / "sys/fs/cgroup" / v2[0].lstrip("/")
    try:
        if "cpu" not in (here / "cgroup.controllers").read_text().split():
            return "unavailable: cpu controller not delegated"
        child = here / name
        child.mkdir(exist_ok=True)
        (child / "cpu.max").write_text(f"{int(cpus * period_us)} {period_us}\n")
        (child / "cgroup.procs").write_text(f"{os.getpid()}\n")
    except OSError as e:
        return f"unavailable: {e.strerror or e}"
    return f"cpu.max {int(cpus * period_us)} {period_us}"


def rank_report(profile: DeviceProfile, hosts: Sequence[str], rank: int, rdev: RankDevice | None = None) -> str:
    """Throttle this client rank to `profile` and find its energy meter (on a GPU: that GPU's);
    the settings as one short JSON record (at most REPORT_LEN bytes) for rank 0 to put in the log."""
    idx, n_local = local_placement(hosts, rank)
    rep = apply_throttle(profile, idx, n_local, rank, rdev)
    rep.energy_source = source_of(process_meter(rep.cuda_device))
    text = rep.to_json()
    if len(text.encode()) > REPORT_LEN:  # many cores: keep the record short
        rep.cores = rep.cores[:1] + [-1]
        text = rep.to_json()
    if len(text.encode()) > REPORT_LEN:
        rep.device_why, rep.share_why = rep.device_why[:60], rep.share_why[:60]
        text = rep.to_json()
    return text


def read_reports(texts: Sequence[str], hosts: Sequence[str] | None = None) -> dict[int, dict]:
    """Rank 0's view of the gathered records (index = rank): {client rank: settings}. A rank that
    meters its GPU through NVML also gets `energy_gpu` (host/device): the ranks sharing that GPU
    split its energy (energy.attribute_gpu_energy)."""
    out = {r: json.loads(t) if t else {} for r, t in enumerate(texts) if r > 0}
    for r, rec in out.items():
        if hosts is not None and rec.get("energy_source") == "nvml" and rec.get("cuda_device") is not None:
            rec["energy_gpu"] = f"{hosts[r]}/cuda:{rec['cuda_device']}"
    return out


def energy_gpus(device_info: dict[int, dict], n_clients: int) -> list[str]:
    """Per client, the GPU whose energy its meter read when other ranks share it ("" otherwise)."""
    return [str(device_info.get(k, {}).get("energy_gpu", "")) for k in range(n_clients)]
