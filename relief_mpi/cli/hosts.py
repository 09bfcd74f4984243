"""`relief-mpi hosts`: which rank runs where, and whether every rank agrees before a long run.

`hosts check [HOSTFILE]` runs under mpirun with the same options as `train`: every rank loads
the fleet and the data exactly as the run would, and rank 0 prints one line per rank
(rank -> host -> profile -> tier -> modalities -> device and GPU share method, with the
reasons) plus the MPI library. All ranks must agree on the relief-mpi version, the Python and
torch major versions, the MPI library and the data fingerprint, else one error line and exit 2
on every rank.

`hosts list HOSTFILE` parses a hostfile (relief_mpi.hostfile) without MPI: it prints the hosts
and slots, or converts the file to the other syntax (launch/cluster.sh uses it).

The check uses the job's start-up protocol (comm.world): host names, each rank's record gathered
to rank 0, and the same agreement step as `train` (one line from rank 0, exit 2 everywhere).
"""

from __future__ import annotations

import ipaddress
import platform
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from relief_mpi import __version__
from relief_mpi.cli.options import build_config, common_options
from relief_mpi.data.registry import build_federated, load_raw, modality_set_for
from relief_mpi.device.fleet import load_fleet, modality_cohorts, resolve_fleet
from relief_mpi.device.profiles import load_profiles
from relief_mpi.errors import ReliefError
from relief_mpi.hostfile import SYNTAXES, Hostfile, parse_hostfile

# ---------------------------------------------------------------------------------------------
# What each rank reports

__all__ = [
    "RECORD_LEN", "RankInfo", "check", "cohort_lines", "command", "disagreement", "list_hosts", "local_info",
    "primary_address", "summary", "table", "torch_device", "verdict"
]


_FIELDS = ("host", "address", "arch", "relief", "python", "torch", "mpi", "profile", "tier", "modalities",
           "device", "dataset", "fingerprint", "error")
_SEP = "\x1f"
RECORD_LEN = 2048


@dataclass(frozen=True)
class RankInfo:
    rank: int
    host: str
    address: str
    arch: str
    relief: str
    python: str
    torch: str
    mpi: str
    profile: str
    tier: str
    modalities: str
    device: str
    dataset: str
    fingerprint: str
    error: str = ""

    def encode(self) -> str:
        vals = [str(getattr(self, f)).replace(_SEP, " ") for f in _FIELDS]
        text = _SEP.join(vals)
        if len(text.encode("utf-8")) > RECORD_LEN:  # only the error can be long: shorten it
            over = len(text.encode("utf-8")) - RECORD_LEN + 3
            vals[-1] = vals[-1].encode("utf-8")[: max(0, len(vals[-1].encode("utf-8")) - over)].decode(
                "utf-8", "ignore") + "..."
            text = _SEP.join(vals)
        return text

    @classmethod
    def decode(cls, rank: int, text: str) -> RankInfo:
        vals = text.split(_SEP)
        if len(vals) != len(_FIELDS):
            vals = [*vals[: len(_FIELDS)], *[""] * (len(_FIELDS) - len(vals))]
            vals[-1] = vals[-1] or "garbled report (a different relief-mpi version on this rank?)"
        return cls(rank, *vals)


def primary_address() -> str:
    """This host's first IPv4 address on an up, non-loopback interface (containers' bridges last)."""
    try:
        import psutil

        stats = psutil.net_if_stats()
        addrs = psutil.net_if_addrs()
    except Exception:  # noqa: BLE001 - informative only
        return "-"
    virtual = ("docker", "br-", "virbr", "veth", "lxc", "cni", "flannel", "tailscale", "zt")
    found = []
    for name, lst in addrs.items():
        if name in stats and not stats[name].isup:
            continue
        for a in lst:
            if a.family != socket.AF_INET:
                continue
            ip = ipaddress.ip_address(a.address)
            if ip.is_loopback or ip.is_link_local:
                continue
            found.append((name.startswith(virtual), name, a.address))
    return sorted(found)[0][2] if found else "-"


def torch_device(local_rank: int) -> str:
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        i = local_rank % torch.cuda.device_count()
        return f"cuda:{i} ({torch.cuda.get_device_name(i)})"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def device_text(requested: str, profile: Any, hosts: Sequence[str], rank: int) -> str:
    """The rank's device as `train` resolves it (device/gpu.py), its GPU's name, and its share
    method with the reasons; ReliefError where it must use CUDA and sees none."""
    import torch

    from relief_mpi.device.throttle import process_device

    rd = process_device(requested, profile, hosts, rank)
    name = f" ({torch.cuda.get_device_name(rd.torch_device)})" if rd.device.startswith("cuda") else ""
    return f"{rd.device}{name} [{rd.why}]; share {rd.share_method} [{rd.share_why}]"


def local_info(cfg: Any, rank: int, size: int, hosts: Sequence[str], local_rank: int, mpi_version: str) -> RankInfo:
    """What this rank sees: versions, its device, and the fleet and data as `train` would build them."""
    import torch

    from relief_mpi.run_setup import check_sensors

    base: dict[str, str] = dict(host=hosts[rank], address=primary_address(), arch=platform.machine(),
                                relief=__version__, python=platform.python_version(), torch=torch.__version__,
                                mpi=mpi_version, profile="-", tier="-", modalities="-", device="-",
                                dataset=cfg.data.dataset, fingerprint="-", error="")
    try:
        base["device"] = torch_device(local_rank)
        if rank == 0:
            base["device"] = device_text(cfg.device.device, None, hosts, rank)
        devices = resolve_fleet(load_fleet(cfg.device.fleet), size - 1, load_profiles(cfg.device.profiles_dir),
                                list(hosts))
        raw = load_raw(cfg.data, cfg.seed)
        names = raw.spec.modality_names()
        sets = [modality_set_for(d.sensors, names) for d in devices]
        if rank == 0:
            base.update(profile="server", tier="-", modalities="all (" + ",".join(names) + ")")
        else:
            d = devices[rank - 1]
            native = " (native)" if d.profile.native else ""
            base.update(profile=d.profile.name + native, tier=d.tier, modalities=",".join(sets[rank - 1]) or "NONE",
                        device=device_text(cfg.device.device, d.profile, hosts, rank))
        check_sensors(devices, sets, raw.spec.name, names)
        base["fingerprint"] = build_federated(cfg.data, cfg.seed, sets, raw).fingerprint
    except ReliefError as e:
        base["error"] = str(e)
    except Exception as e:  # noqa: BLE001 - reported as this rank's problem, never a hang
        base["error"] = f"{type(e).__name__}: {e}"
    return RankInfo(rank, **base)


# ---------------------------------------------------------------------------------------------
# Rank 0's verdict


def _rank_word(ranks: Sequence[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + _ranges(ranks)


def _ranges(ranks: Sequence[int]) -> str:
    out, rs = [], sorted(ranks)
    i = 0
    while i < len(rs):
        j = i
        while j + 1 < len(rs) and rs[j + 1] == rs[j] + 1:
            j += 1
        out.append(str(rs[i]) if i == j else f"{rs[i]}-{rs[j]}")
        i = j + 1
    return ",".join(out)


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def disagreement(infos: Sequence[RankInfo]) -> str | None:
    """The first thing the ranks disagree on, as one line; None if they all agree."""
    checks = [
        ("the relief-mpi version", lambda i: i.relief, "install the same relief-mpi on every host"),
        ("the Python major version", lambda i: "Python " + _major(i.python), "use Python 3 everywhere"),
        ("the torch major version", lambda i: "torch " + _major(i.torch), "install the same torch major version"),
        ("the MPI library", lambda i: i.mpi, "every host needs the same MPI implementation and version"),
        ("the data fingerprint", lambda i: i.fingerprint,
         "give every host the same dataset files, --data-dir contents and data options"),
    ]
    for what, key, hint in checks:
        groups: dict[str, list[RankInfo]] = {}
        for info in infos:
            groups.setdefault(key(info), []).append(info)
        if len(groups) > 1:
            parts = []
            for value, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                hosts = ", ".join(dict.fromkeys(m.host for m in members))
                parts.append(f"{value} on {_rank_word([m.rank for m in members])} ({hosts})")
            return f"ranks disagree on {what}: " + "; ".join(parts) + f"; {hint}"
    return None


def table(infos: Sequence[RankInfo]) -> list[str]:
    rows = [("rank", "host (address)", "profile", "tier", "modalities", "device [why]; share method [why]")]
    rows += [(f"rank {i.rank}", f"{i.host} ({i.address})", i.profile, i.tier, i.modalities, i.device)
             for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return [" -> ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def cohort_lines(infos: Sequence[RankInfo]) -> list[str]:
    """Per modality some client holds, the client ranks holding it (device.fleet.modality_cohorts)."""
    held = {i.rank: i.modalities.split(",") for i in infos if i.rank > 0 and i.modalities not in ("-", "NONE")}
    if not held:
        return []
    lines = []
    for c in modality_cohorts(held, _modality_order(infos, held)):
        mark = "  <- rare modality" if c.rare else ""
        n = len(c.ranks)
        lines.append(f"cohort {c.modality}: {n} client{'s' if n != 1 else ''} ({_rank_word(c.ranks)}){mark}")
    return lines


def _modality_order(infos: Sequence[RankInfo], held: dict[int, list[str]]) -> list[str]:
    """The modalities some client holds, in the dataset's order (rank 0 reports it as `all (...)`),
    else in order of appearance."""
    order = list(dict.fromkeys(m for mods in held.values() for m in mods))
    if infos and infos[0].modalities.startswith("all ("):
        names = infos[0].modalities[5:-1].split(",")
        order = [m for m in names if m in order]
    return order


def summary(infos: Sequence[RankInfo]) -> list[str]:
    def same(key: Any, label: str) -> str:
        vals = list(dict.fromkeys(key(i) for i in infos))
        return f"{label}{vals[0]} on every rank" if len(vals) == 1 else \
            f"{label}" + "; ".join(f"{v} on {_rank_word([i.rank for i in infos if key(i) == v])}" for v in vals)

    return [same(lambda i: i.mpi, "MPI: "),
            same(lambda i: f"relief-mpi {i.relief}, Python {i.python}, torch {i.torch}, {i.arch}", ""),
            same(lambda i: f"{i.dataset} fingerprint {i.fingerprint}", "data: ")]


def verdict(infos: Sequence[RankInfo], hostfile: Hostfile | None, size: int) -> str | None:
    """The first problem (one line) or None."""
    for i in infos:
        if i.error:
            return f"rank {i.rank} on {i.host}: {i.error}"
    if hostfile is not None and hostfile.total_slots < size:
        return (f"hostfile {hostfile.path} has {hostfile.total_slots} slot(s) on {len(hostfile.hosts)} host(s) "
                f"but the job runs {size} ranks; add slots (host:N or host slots=N) or launch fewer ranks")
    return disagreement(infos)


# ---------------------------------------------------------------------------------------------
# Commands


@click.group(name="hosts")
def command() -> None:
    """Which rank runs where, and whether all hosts agree (hostfiles, versions, data).

    \b
    mpirun -n 5 relief-mpi hosts check                 one line per rank, then ok or one error
    mpirun -f hosts.txt -n 5 relief-mpi hosts check hosts.txt --fleet F
    relief-mpi hosts list hostfiles/lab.mpich --as openmpi
    """


@command.command("list")
@click.argument("hostfile", type=click.Path(dir_okay=False))
@click.option("--as", "as_syntax", type=click.Choice(SYNTAXES), default=None,
              help="Print the hostfile converted to this syntax (for the launcher at hand).")
@click.option("--first", is_flag=True, help="Print only the first host (where rank 0 runs).")
@click.option("--slots", is_flag=True, help="Print only the total number of slots.")
def list_hosts(hostfile: str, as_syntax: str | None, first: bool, slots: bool) -> None:
    """Parse HOSTFILE (MPICH host:N or Open MPI host slots=N) without MPI; errors name the line."""
    hf = parse_hostfile(hostfile)
    if first:
        click.echo(hf.entries[0].host)
    elif slots:
        click.echo(str(hf.total_slots))
    elif as_syntax:
        click.echo(hf.render(as_syntax), nl=False)
    else:
        for e in hf.entries:
            click.echo(f"{e.host} {e.slots}{'' if e.explicit else ' (no slot count: 1)'}")
        click.echo(f"# {hf.path}: {hf.syntax} syntax, {len(hf.hosts)} host(s), {hf.total_slots} slot(s)")


@command.command("check")
@click.argument("hostfile", required=False, type=click.Path(dir_okay=False))
@common_options
def check(hostfile: str | None, **kw: Any) -> None:
    """Run under mpirun: where every rank runs and whether all ranks agree, before a long run.

    Takes the same options as `train` (--fleet, --profiles, --dataset, --data-dir, ...) and loads the
    fleet and the data exactly as `train` would. Prints one line per rank (rank -> host (address) ->
    profile -> tier -> modalities -> device [why]; share method [why]), the cohorts, the MPI library,
    and `ok`; or one error line and exit 2 when the ranks disagree on the relief-mpi version, the Python or torch major
    version, the MPI library or the data fingerprint, or when HOSTFILE is malformed or has fewer slots
    than the job has ranks.

    \b
    mpirun -n 5 relief-mpi hosts check
    mpirun -f hostfiles/workstation-2orin.mpich relief-mpi hosts check hostfiles/workstation-2orin.mpich \\
        --fleet hostfiles/workstation-2orin.fleet.toml --profiles hostfiles/profiles
    """
    cfg = build_config(kw)
    from relief_mpi.comm.world import World, library_version

    world = World()
    rank, size = world.rank, world.size
    hosts = world.hosts()
    info = local_info(cfg, rank, size, hosts, world.local_rank(), library_version())
    records = world.gather_text(info.encode(), RECORD_LEN)
    message = None
    if records is not None:
        infos = [RankInfo.decode(r, text) for r, text in enumerate(records)]
        message = _verdict_on_root(infos, hostfile, size)
        sys.stdout.flush()
    world.agree_to_start(message)


def _verdict_on_root(infos: list[RankInfo], hostfile: str | None, size: int) -> str | None:
    """Rank 0 prints the table and `ok`, or returns the one problem line."""
    try:
        hf = parse_hostfile(hostfile) if hostfile else None
    except ReliefError as e:
        return str(e)
    for line in table(infos) + cohort_lines(infos) + summary(infos):
        click.echo(line)
    if hf is not None:
        click.echo(f"hostfile: {hf.path} ({hf.syntax} syntax): {len(hf.hosts)} host(s), "
                   f"{hf.total_slots} slot(s) for {size} rank(s)")
    message = verdict(infos, hf, size)
    if message is None:
        n_hosts = len(dict.fromkeys(i.host for i in infos))
        click.echo(f"ok: {size} rank(s) on {n_hosts} host(s) agree")
    return message
