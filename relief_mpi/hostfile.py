"""Hostfiles: MPICH (`host:N`) and Open MPI (`host slots=N [max_slots=M]`), parsed without MPI.

`relief-mpi hosts list` prints or converts one (launch/cluster.sh uses it); `hosts check` compares
its slots with the job's ranks. A malformed file is one error line naming the file and the line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from relief_mpi.errors import ReliefError

SYNTAXES = ("mpich", "openmpi")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_OMPI_KEYS = {"slots": "slots", "max_slots": "max_slots", "max-slots": "max_slots", "slots_max": "max_slots"}
_SYNTAX_NAMES = {"mpich": "MPICH (host:N)", "openmpi": "Open MPI (host slots=N)"}


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


# Slots per hostfile line: more than any host's cores, far less than what breaks a launcher (MPICH's
# hydra dies with `assert (map) failed` on 99999999999999999999, beyond a 64-bit count).
MAX_SLOTS = 65536


def _positive(value: str) -> int | None:
    """A slot count in 1..MAX_SLOTS written in ASCII digits, else None."""
    if not (value.isascii() and value.isdigit()):
        return None
    v = int(value)
    return v if 1 <= v <= MAX_SLOTS else None


def parse_hostfile(path: str | Path) -> Hostfile:
    """Parse an MPICH or Open MPI hostfile; ReliefError names the file and line of a malformed one."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ReliefError(f"hostfile {p}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ReliefError(f"hostfile {p}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    entries: list[HostEntry] = []
    syntax, syntax_line = "plain", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        bad = partial(_line_error, p, n, raw)
        entry, this = _parse_entry(line, n, bad)
        if this != "plain":
            if syntax != "plain" and syntax != this:
                raise bad(f"uses {_SYNTAX_NAMES[this]} syntax but line {syntax_line} uses {_SYNTAX_NAMES[syntax]}; "
                          "one file, one syntax")
            if syntax == "plain":
                syntax, syntax_line = this, n
        entries.append(entry)
    if not entries:
        raise ReliefError(f"hostfile {p}: no hosts (every line is empty or a # comment)")
    return Hostfile(p, syntax, tuple(entries))


def _line_error(path: Path, n: int, raw: str, why: str) -> ReliefError:
    return ReliefError(f"hostfile {path} line {n}: {why}: {raw.strip()!r}")


def _parse_entry(line: str, n: int, bad: Callable[[str], ReliefError]) -> tuple[HostEntry, str]:
    """One non-empty line (comment stripped) as an entry, and the syntax it is written in: "mpich"
    (host:N), "openmpi" (host slots=N ...) or "plain" (a bare host, valid in both)."""
    head, *rest = line.split()
    syntax = "plain"
    if ":" in head and not _valid_host(head):  # host:N (MPICH); a bare IPv6 address stays a host
        host, _, count = head.rpartition(":")
        slots = _positive(count)
        if slots is None:
            raise bad(f"slot count {count!r} is not a whole number in 1..{MAX_SLOTS} (MPICH syntax is host:N)")
        syntax, explicit = "mpich", True
    else:
        host, slots, explicit = head, 1, False
    if not _valid_host(host):
        raise bad(f"{host!r} is not a host name or address")
    if rest:
        if syntax == "mpich":
            raise bad(f"unexpected {rest[0]!r} after host:N (Open MPI syntax is `host slots=N`, "
                      "MPICH syntax `host:N`; do not mix them)")
        syntax = "openmpi"
        slots, explicit = _openmpi_slots(rest, bad)
    return HostEntry(host, slots, n, explicit), syntax


def _openmpi_slots(fields: list[str], bad: Callable[[str], ReliefError]) -> tuple[int, bool]:
    """The slot count of an Open MPI line's `slots=N [max_slots=M]` fields (max_slots alone counts
    as the slots), and whether one was given; a bare host counts 1."""
    seen: dict[str, int] = {}
    for tok in fields:
        key, eq, value = tok.partition("=")
        if not eq or key not in _OMPI_KEYS:
            raise bad(f"unknown field {tok!r} (Open MPI syntax is `host slots=N [max_slots=M]`)")
        v = _positive(value)
        if v is None:
            raise bad(f"{key}={value!r} is not a whole number in 1..{MAX_SLOTS}")
        seen[_OMPI_KEYS[key]] = v
    slots, explicit = seen.get("slots", seen.get("max_slots", 1)), bool(seen)
    if "max_slots" in seen and seen["max_slots"] < slots:
        raise bad(f"max_slots={seen['max_slots']} is smaller than slots={slots}")
    return slots, explicit
