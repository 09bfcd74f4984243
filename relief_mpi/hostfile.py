"""Hostfiles: MPICH (`host:N`) and Open MPI (`host slots=N [max_slots=M]`), parsed without MPI.

`relief-mpi hosts list` prints or converts one (launch/cluster.sh uses it); `hosts check` compares
its slots with the job's ranks. A malformed file is one error line naming the file and the line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from relief_mpi.errors import ReliefError

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
