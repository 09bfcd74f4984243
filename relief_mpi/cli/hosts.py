"""`relief-mpi hosts`: which rank runs where, and whether every rank agrees before a long run.

`hosts check [HOSTFILE]` runs under mpirun with the same options as `train`: every rank loads
the fleet and the data exactly as the run would, and rank 0 prints one line per rank
(rank -> host -> profile -> tier -> modalities -> torch device) plus the MPI library. All ranks
must agree on the relief-mpi version, the Python and torch major versions, the MPI library and
the data fingerprint, else one error line and exit 2 on every rank.

`hosts list HOSTFILE` parses a hostfile (MPICH `host:N` or Open MPI `host slots=N`) without
MPI: it prints the hosts and slots, or converts the file to the other syntax (launch/cluster.sh
uses it).

Everything crosses MPI as fixed-size uint8 buffers (Igather/Ibcast, waits that yield the core);
nothing is pickled.
"""

from __future__ import annotations

import ipaddress
import platform
import re
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from relief_mpi import __version__
from relief_mpi.cli.options import build_config, common_options
from relief_mpi.errors import ReliefError

# ---------------------------------------------------------------------------------------------
# Hostfiles

SYNTAXES = ("mpich", "openmpi")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_OMPI_KEYS = {"slots": "slots", "max_slots": "max_slots", "max-slots": "max_slots", "slots_max": "max_slots"}


@dataclass(frozen=True)
class HostEntry:
    host: str
    slots: int
    line: int
    explicit: bool  # False: a bare host name (counted as 1 slot)


@dataclass(frozen=True)
class Hostfile:
    path: Path
    syntax: str  # "mpich", "openmpi" or "plain" (bare host names only: valid in both)
    entries: tuple[HostEntry, ...]

    @property
    def total_slots(self) -> int:
        return sum(e.slots for e in self.entries)

    @property
    def hosts(self) -> list[str]:
        """Distinct host names in file order."""
        return list(dict.fromkeys(e.host for e in self.entries))

    def render(self, syntax: str) -> str:
        """The same hosts and slots in MPICH (`host:N`) or Open MPI (`host slots=N`) syntax."""
        if syntax not in SYNTAXES:
            raise ValueError(syntax)
        fmt = "{}:{}" if syntax == "mpich" else "{} slots={}"
        return "".join(fmt.format(e.host, e.slots) + "\n" for e in self.entries)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_RE.match(host)) and len(host) <= 253


def _positive(value: str) -> int | None:
    return int(value) if value.isdigit() and int(value) >= 1 else None


def parse_hostfile(path: str | Path) -> Hostfile:
    """Parse an MPICH or Open MPI hostfile; ReliefError names the file and line of a malformed one."""
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except OSError as e:
        raise ReliefError(f"hostfile {p}: {e.strerror or e}") from None
    entries: list[HostEntry] = []
    syntax, syntax_line = "plain", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue

        def bad(why: str, n: int = n, raw: str = raw) -> ReliefError:
            return ReliefError(f"hostfile {p} line {n}: {why}: {raw.strip()!r}")

        tokens = line.split()
        head, rest = tokens[0], tokens[1:]
        this = "plain"
        if ":" in head and not _valid_host(head):  # host:N (MPICH); a bare IPv6 address stays a host
            host, _, count = head.rpartition(":")
            slots = _positive(count)
            if slots is None:
                raise bad(f"slot count {count!r} is not a whole number >= 1 (MPICH syntax is host:N)")
            this, explicit = "mpich", True
        else:
            host, slots, explicit = head, 1, False
        if not _valid_host(host):
            raise bad(f"{host!r} is not a host name or address")
        if rest:
            if this == "mpich":
                raise bad(f"unexpected {rest[0]!r} after host:N (Open MPI syntax is `host slots=N`, "
                          "MPICH syntax `host:N`; do not mix them)")
            this = "openmpi"
            seen: dict[str, int] = {}
            for tok in rest:
                key, eq, value = tok.partition("=")
                if not eq or key not in _OMPI_KEYS:
                    raise bad(f"unknown field {tok!r} (Open MPI syntax is `host slots=N [max_slots=M]`)")
                v = _positive(value)
                if v is None:
                    raise bad(f"{key}={value!r} is not a whole number >= 1")
                seen[_OMPI_KEYS[key]] = v
            if "slots" in seen:
                slots, explicit = seen["slots"], True
            elif "max_slots" in seen:
                slots, explicit = seen["max_slots"], True
            if "max_slots" in seen and seen["max_slots"] < slots:
                raise bad(f"max_slots={seen['max_slots']} is smaller than slots={slots}")
        if this != "plain":
            if syntax != "plain" and syntax != this:
                names = {"mpich": "MPICH (host:N)", "openmpi": "Open MPI (host slots=N)"}
                raise bad(f"uses {names[this]} syntax but line {syntax_line} uses {names[syntax]}; "
                          "one file, one syntax")
            if syntax == "plain":
                syntax, syntax_line = this, n
        entries.append(HostEntry(host, slots, n, explicit))
    if not entries:
        raise ReliefError(f"hostfile {p}: no hosts (every line is empty or a # comment)")
    return Hostfile(p, syntax, tuple(entries))


# ---------------------------------------------------------------------------------------------
# What each rank reports

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


def mpi_library() -> str:
    from mpi4py import MPI

    vendor, ver = MPI.get_vendor()
    major, minor = MPI.Get_version()
    return f"{vendor} {'.'.join(map(str, ver))} (MPI {major}.{minor})"


def torch_device(local_rank: int) -> str:
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        i = local_rank % torch.cuda.device_count()
        return f"cuda:{i} ({torch.cuda.get_device_name(i)})"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def local_info(cfg: Any, rank: int, size: int, hosts: Sequence[str], local_rank: int) -> RankInfo:
    """What this rank sees: versions, its device, and the fleet and data as `train` would build them."""
    import torch

    from relief_mpi.data.registry import build_federated, load_raw, modality_set_for
    from relief_mpi.device.fleet import load_fleet, resolve_fleet
    from relief_mpi.device.profiles import load_profiles

    base: dict[str, str] = dict(host=hosts[rank], address=primary_address(), arch=platform.machine(),
                                relief=__version__, python=platform.python_version(), torch=torch.__version__,
                                mpi=mpi_library(), profile="-", tier="-", modalities="-", device="-",
                                dataset=cfg.data.dataset, fingerprint="-", error="")
    try:
        base["device"] = torch_device(local_rank)
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
            base.update(profile=d.profile.name + native, tier=d.tier, modalities=",".join(sets[rank - 1]) or "NONE")
        empty = [d.rank for d, s in zip(devices, sets, strict=True) if not s]
        if empty:
            raise ReliefError(f"client rank {empty[0]} has none of the {raw.spec.name} dataset's sensors "
                              f"({', '.join(names)}); fix the fleet")
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
    rows = [("rank", "host (address)", "profile", "tier", "modalities", "torch device")]
    rows += [(f"rank {i.rank}", f"{i.host} ({i.address})", i.profile, i.tier, i.modalities, i.device)
             for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return [" -> ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def cohort_lines(infos: Sequence[RankInfo]) -> list[str]:
    clients = [i for i in infos if i.rank > 0 and i.modalities not in ("-", "NONE")]
    if not clients:
        return []
    order = list(dict.fromkeys(m for i in clients for m in i.modalities.split(",")))
    if infos and infos[0].modalities.startswith("all ("):
        names = infos[0].modalities[5:-1].split(",")
        order = [m for m in names if m in order]
    members = {m: [i.rank for i in clients if m in i.modalities.split(",")] for m in order}
    # the rare modality: the smallest cohort, ties to the later (rarer) sensor, as in setup.rare_modality
    rare = min(reversed(order), key=lambda m: len(members[m])) if len(order) > 1 else None
    return [f"cohort {m}: {len(r)} client{'s' if len(r) != 1 else ''} ({_rank_word(r)})"
            + ("  <- rare modality" if m == rare else "") for m, r in members.items()]


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


class CheckFailed(ReliefError):
    def __init__(self, message: str, printable: bool) -> None:
        super().__init__(message)
        self.printable = printable


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
    profile -> tier -> modalities -> torch device), the cohorts, the MPI library, and `ok`; or one
    error line and exit 2 when the ranks disagree on the relief-mpi version, the Python or torch major
    version, the MPI library or the data fingerprint, or when HOSTFILE is malformed or has fewer slots
    than the job has ranks.

    \b
    mpirun -n 5 relief-mpi hosts check
    mpirun -f hostfiles/workstation-2orin.mpich relief-mpi hosts check hostfiles/workstation-2orin.mpich \\
        --fleet hostfiles/workstation-2orin.fleet.toml --profiles hostfiles/profiles
    """
    cfg = build_config(kw)
    from mpi4py import MPI

    from relief_mpi.comm.wait import wait_all
    from relief_mpi.comm.wire import fixed_utf8, utf8_text
    from relief_mpi.mpirun import gather_hosts

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    hosts = gather_hosts(world)
    node = world.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    local_rank = node.Get_rank()
    node.Free()
    info = local_info(cfg, rank, size, hosts, local_rank)
    recv = np.zeros((size, RECORD_LEN), np.uint8) if rank == 0 else None
    wait_all([world.Igather(fixed_utf8(info.encode(), RECORD_LEN), recv, root=0)])
    code = np.zeros(1, np.int32)
    message = ""
    if rank == 0:
        assert recv is not None
        infos = [RankInfo.decode(r, utf8_text(recv[r])) for r in range(size)]
        hf: Hostfile | None = None
        try:
            hf = parse_hostfile(hostfile) if hostfile else None
        except ReliefError as e:
            message = str(e)
        if not message:
            for line in table(infos):
                click.echo(line)
            for line in cohort_lines(infos) + summary(infos):
                click.echo(line)
            if hf is not None:
                click.echo(f"hostfile: {hf.path} ({hf.syntax} syntax): {len(hf.hosts)} host(s), "
                           f"{hf.total_slots} slot(s) for {size} rank(s)")
            message = verdict(infos, hf, size) or ""
        if not message:
            n_hosts = len(dict.fromkeys(i.host for i in infos))
            click.echo(f"ok: {size} rank(s) on {n_hosts} host(s) agree")
        code[0] = 2 if message else 0
        sys.stdout.flush()
    wait_all([world.Ibcast(code, root=0)])
    if code[0]:
        raise CheckFailed(message or "another rank failed the check", printable=rank == 0)
