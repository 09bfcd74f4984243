"""Fleets: which device profile and sensor set each client rank emulates.

A fleet file (TOML) lists tiers; each tier names a profile, a sensor set and which clients it
covers: explicit `ranks`, a `hosts` glob matched against the rank's host name, or a `fraction`
of the clients left after explicit and host matches (largest remainder, in rank order).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from relief_mpi.device.profiles import DeviceProfile, parse_sensors, read_toml
from relief_mpi.errors import ReliefError

__all__ = ["DEFAULT_FLEET", "PAPER_COUNTS", "PAPER_FLEET", "PAPER_TYPES", "ClientDevice", "Cohort", "Tier",
           "load_fleet", "modality_cohorts", "paper_fleet", "paper_type_counts", "rare_modality", "resolve_fleet"]

DEFAULT_FLEET = Path(__file__).parent / "fleets" / "default.toml"
PAPER_FLEET = "paper"  # `--fleet paper`: the authors' device types, given to clients in order
_TIER_KEYS = ("name", "profile", "sensors", "fraction", "ranks", "hosts")


@dataclass(frozen=True)
class Tier:
    name: str
    profile: str
    sensors: tuple[str, ...] | None  # None = all modalities
    fraction: float | None = None
    ranks: tuple[int, ...] = ()
    hosts: str | None = None


@dataclass(frozen=True)
class ClientDevice:
    client: int  # 0-based client index
    rank: int  # MPI rank (client + 1)
    tier: str
    profile: DeviceProfile
    sensors: tuple[str, ...] | None


def load_fleet(path: str | Path | None) -> list[Tier]:
    """The tiers of a fleet file (default: the shipped one), every key checked; one error line
    naming the file and the tier when something is wrong."""
    p = Path(path).expanduser() if path is not None else DEFAULT_FLEET
    d = read_toml(p, "fleet file")
    tiers_raw = d.get("tier")
    if not isinstance(tiers_raw, list) or not tiers_raw:
        raise ReliefError(f"fleet file {p}: needs at least one [[tier]] table")
    unknown_top = sorted(set(d) - {"tier", "description"})
    if unknown_top:
        raise ReliefError(f"fleet file {p}: unknown key(s) {', '.join(unknown_top)} (expected [[tier]] tables)")
    tiers: list[Tier] = []
    for i, t in enumerate(tiers_raw, 1):
        tiers.append(_parse_tier(p, i, t, {x.name for x in tiers}))
    _check_fractions(tiers, f"fleet file {p}")
    return tiers


def _check_fractions(tiers: Sequence[Tier], where: str) -> None:
    """The fraction tiers share out the ranks left over, so their fractions must sum to 1: else
    _by_fraction leaves some ranks without a tier, or runs out of ranks to hand out."""
    fracs = [t.fraction for t in tiers if t.fraction is not None]
    if fracs and not math.isclose(sum(fracs), 1.0, abs_tol=1e-6):
        raise ReliefError(f"{where}: tier fractions sum to {sum(fracs):g}, must sum to 1")


def _parse_tier(p: Path, i: int, t: object, taken: set[str]) -> Tier:
    """The i-th (1-based) [[tier]] table; `taken` are the names of the tiers before it."""
    if not isinstance(t, dict):
        raise ReliefError(f"fleet file {p}: tier {i} is not a table")
    name = str(t.get("name", f"tier{i}"))
    if name in taken:
        raise ReliefError(f"fleet file {p}: two tiers are named {name!r}")
    where = f"fleet file {p}: tier {name!r}"
    unknown = sorted(set(t) - set(_TIER_KEYS))
    if unknown:
        raise ReliefError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(_TIER_KEYS)})")
    hosts = t.get("hosts")
    if hosts is not None and (not isinstance(hosts, str) or not hosts):
        raise ReliefError(f"{where}: hosts must be a host-name glob such as \"jetson-*\"")
    if "fraction" not in t and "ranks" not in t and hosts is None:
        raise ReliefError(f"{where} covers no client: give ranks, hosts or a fraction")
    if "profile" not in t:
        raise ReliefError(f"{where} has no profile")
    sensors = parse_sensors(t.get("sensors", "all"), where)
    ranks, frac = _ranks_and_fraction(t, where)
    return Tier(name, str(t["profile"]), sensors, frac, ranks, hosts)


def _ranks_and_fraction(t: dict, where: str) -> tuple[tuple[int, ...], float | None]:
    """A tier's explicit client ranks (>= 1) and its share of the ranks left over (None: no share)."""
    ranks = t.get("ranks", [])
    if not isinstance(ranks, list) or not all(isinstance(r, int) and r >= 1 for r in ranks):
        raise ReliefError(f"{where}: ranks must be a list of client ranks >= 1")
    frac = t.get("fraction")
    if frac is not None and not (isinstance(frac, (int, float)) and 0 <= frac <= 1):
        raise ReliefError(f"{where}: fraction must be a number in [0, 1]")
    return tuple(ranks), None if frac is None else float(frac)


def resolve_fleet(tiers: Sequence[Tier], n_clients: int, profiles: dict[str, DeviceProfile],
                  hostnames: Sequence[str] | None = None) -> list[ClientDevice]:
    """One ClientDevice per client rank 1..n_clients; clear errors where the fleet does not fit.
    Explicit ranks first, then host globs, then the fractions share the ranks left."""
    if n_clients < 1:
        raise ReliefError("the fleet needs at least one client rank (run with at least 2 MPI ranks)")
    _check_fractions(tiers, "fleet")  # load_fleet has checked a file's; tiers built in code may not be
    for t in tiers:
        if t.profile not in profiles:
            raise ReliefError(f"fleet tier {t.name!r}: unknown profile {t.profile!r} "
                              f"(known: {', '.join(sorted(profiles))})")
    assigned = _by_rank(tiers, n_clients)
    if hostnames is not None:
        _by_host(tiers, n_clients, hostnames, assigned)
    _by_fraction(tiers, n_clients, assigned)
    return [ClientDevice(r - 1, r, assigned[r].name, profiles[assigned[r].profile], assigned[r].sensors)
            for r in range(1, n_clients + 1)]


def _by_rank(tiers: Sequence[Tier], n_clients: int) -> dict[int, Tier]:
    """The client ranks the tiers name explicitly (each rank in at most one tier, all of them running)."""
    explicit = sum(len(t.ranks) for t in tiers)
    if explicit > n_clients:
        raise ReliefError(f"the fleet names {explicit} clients but the run has {n_clients} (--clients; default one "
                          f"per client rank): give --clients {explicit} or more, or launch with -n {explicit + 1}")
    assigned: dict[int, Tier] = {}
    for t in tiers:
        for r in t.ranks:
            if r > n_clients:
                raise ReliefError(f"fleet tier {t.name!r} names rank {r} but the clients are ranks 1..{n_clients}")
            if r in assigned:
                raise ReliefError(f"fleet: rank {r} is in both tier {assigned[r].name!r} and {t.name!r}")
            assigned[r] = t
    return assigned


def _by_host(tiers: Sequence[Tier], n_clients: int, hostnames: Sequence[str], assigned: dict[int, Tier]) -> None:
    """Give the ranks not named explicitly to the first tier whose host glob their host matches."""
    for t in tiers:
        if not t.hosts:
            continue
        for r in range(1, n_clients + 1):
            if r not in assigned and fnmatch.fnmatch(hostnames[r], t.hosts):
                assigned[r] = t


def _by_fraction(tiers: Sequence[Tier], n_clients: int, assigned: dict[int, Tier]) -> None:
    """Share the ranks still unassigned among the fraction tiers (largest remainder, in rank order)."""
    rest = [r for r in range(1, n_clients + 1) if r not in assigned]
    if not rest:
        return
    frac_tiers = [t for t in tiers if t.fraction is not None]
    if not frac_tiers:
        raise ReliefError(f"fleet: client ranks {rest} match no tier (add a tier with a fraction)")
    counts = _largest_remainder([t.fraction or 0.0 for t in frac_tiers], len(rest))
    it = iter(rest)
    for t, c in zip(frac_tiers, counts, strict=True):
        for _ in range(c):
            assigned[next(it)] = t


def _largest_remainder(fracs: Sequence[float], n: int) -> list[int]:
    """Integer counts summing to n; the first tier with a positive share gets at least one."""
    raw = [f * n for f in fracs]
    counts = [int(math.floor(x)) for x in raw]
    order = sorted(range(len(fracs)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    first = next((i for i, f in enumerate(fracs) if f > 0), None)
    if first is not None and counts[first] == 0 and n > 0:
        donor = max(range(len(counts)), key=lambda i: counts[i])
        counts[donor] -= 1
        counts[first] += 1
    return counts


# The published device-type counts (full, acc_gyro, acc_only) per dataset (design.md section 0).
PAPER_COUNTS = {"mhealth": (3, 3, 4), "pamap2": (3, 3, 2), "spar": (5, 0, 5), "synthetic": (3, 3, 4)}
PAPER_TYPES = (("full", "paper-full", None), ("acc_gyro", "paper-acc-gyro", ("acc", "gyro")),
               ("acc_only", "paper-acc-only", ("acc",)))


def paper_type_counts(dataset: str, n_clients: int) -> list[int]:
    """How many clients of each published device type: the dataset's own counts when the client
    count matches them, else the same proportions (largest remainder, full first)."""
    counts = PAPER_COUNTS.get(dataset, PAPER_COUNTS["mhealth"])
    if sum(counts) == n_clients:
        return list(counts)
    return _largest_remainder([c / sum(counts) for c in counts], n_clients)


def paper_fleet(dataset: str, n_clients: int, profiles: dict[str, DeviceProfile]) -> list[ClientDevice]:
    """`--fleet paper`: full, acc_gyro, acc_only in the published proportions, in client order (so,
    with one client per subject, by sorted subject as the authors assign them)."""
    if n_clients < 1:
        raise ReliefError("the fleet needs at least one client rank (run with at least 2 MPI ranks)")
    out: list[ClientDevice] = []
    for (tier, profile, sensors), c in zip(PAPER_TYPES, paper_type_counts(dataset, n_clients), strict=True):
        for _ in range(c):
            k = len(out)
            out.append(ClientDevice(k, k + 1, tier, profiles[profile], sensors))
    return out


def rare_modality(modality_sets: list[frozenset[int]], n_modalities: int) -> int | None:
    """The modality with the smallest non-empty cohort (ties: the later one, the rarer sensor)."""
    sizes = [sum(m in s for s in modality_sets) for m in range(n_modalities)]
    live = [m for m in range(n_modalities) if sizes[m] > 0]
    if not live:
        return None
    return min(live, key=lambda m: (sizes[m], -m))


class Cohort(NamedTuple):
    modality: str
    ranks: tuple[int, ...]  # the client ranks holding it
    rare: bool  # the run's rare modality (rare_modality), and more than one modality is trained


def modality_cohorts(held: Mapping[int, Sequence[str]], names: Sequence[str]) -> list[Cohort]:
    """Per modality of names (in that order), the client ranks in held (rank -> its modalities)
    holding it, the rare one marked by the run's own rule: what `fleet show` and `hosts check` print."""
    ranks = {m: tuple(r for r, mods in held.items() if m in mods) for m in names}
    rare = rare_modality([frozenset(i for i, m in enumerate(names) if m in mods) for mods in held.values()],
                         len(names))
    several = sum(1 for m in names if ranks[m]) > 1
    return [Cohort(m, ranks[m], several and i == rare) for i, m in enumerate(names)]
