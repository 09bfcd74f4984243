"""Resource bounds from the inputs, checked before anything is allocated.

A run needs, per client, at least MIN_TRAIN_WINDOWS training windows (data.partition) and a device,
a window index and a trainer; every process of the job holds the whole dataset. `--clients
99999999999` used to start allocating devices one by one (3 GB in 18 s) before the data could
refuse it; now a client count whose smallest possible footprint exceeds what this host has free
is one line before any work.
"""

from __future__ import annotations

import math

from relief_mpi.config import RunConfig
from relief_mpi.data.synthetic import SUBJECT_BYTES, subjects_for
from relief_mpi.errors import ReliefError

MIN_TRAIN_WINDOWS = 8  # data.partition's floor per client
# The least memory a client takes: its 8 windows of a 2.56 s, 23-channel recording at 50 Hz in float32
# (128 x 23 x 4 B each), and its device, index and trainer entries (measured: well under 16 KB).
CLIENT_BYTES = MIN_TRAIN_WINDOWS * 128 * 23 * 4 + 16 * 1024
SHARE_OF_FREE = 0.5  # a run may plan on at most this share of the memory available now


def available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (None where there is none: the check is skipped)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def needed_bytes(cfg: RunConfig, n_clients: int) -> int:
    """The least memory a process of the run needs for `n_clients` clients and their data."""
    need = n_clients * CLIENT_BYTES
    if cfg.data.dataset == "synthetic":
        need += subjects_for(n_clients, cfg.data) * SUBJECT_BYTES
    return need


def check_clients_fit(cfg: RunConfig, n_clients: int, free: int | None = None) -> None:
    """Refuse (ReliefError) a client count that cannot fit in this host's free memory."""
    if n_clients < 1:
        raise ReliefError(f"--clients {n_clients}: need at least one client")
    free = available_bytes() if free is None else free
    if free is None:
        return
    need = needed_bytes(cfg, n_clients)
    if need > SHARE_OF_FREE * free:
        raise ReliefError(f"--clients {n_clients}: needs at least {_gb(need)} of memory (every client at least "
                          f"{MIN_TRAIN_WINDOWS} training windows and a device, the data on every rank), more than "
                          f"half of the {_gb(free)} this host has free; use fewer clients")


def _gb(n: float) -> str:
    if n >= 1e15:
        return f"{n / 1e15:.3g} PB"
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{math.ceil(n / 1e6)} MB"


