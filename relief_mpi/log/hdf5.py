"""HDF5 round log: one file per run, written by rank 0 only, flushed every round.

The file is in SWMR mode while it grows, so `h5py.File(path, "r", swmr=True)` reads it during a
run and after a crash (a killed writer leaves the file marked open; a SWMR read still works, and
`read_log` falls back to it). Each round writes the per-client, per-block and per-tier arrays
first and the /rounds row last: the length of /rounds is the number of complete rounds and the
reader trims anything longer, so a crash never leaves a partial round visible.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 1

ROUND_FIELDS: tuple[tuple[str, str], ...] = (
    ("round", "<i4"), ("wall_time_s", "<f8"), ("wall_elapsed_s", "<f8"), ("virtual_time_s", "<f8"),
    ("virtual_elapsed_s", "<f8"), ("accuracy", "<f8"), ("macro_f1", "<f8"), ("rare_f1", "<f8"),
    ("bytes_up", "<f8"), ("bytes_down", "<f8"), ("energy_j", "<f8"), ("energy_measured_j", "<f8"),
    ("train_loss", "<f8"), ("deadline_s", "<f8"), ("rejected", "<i4"),
    # The published analytic system model (design.md section 0), next to our emulated figures.
    ("t_star", "<f8"), ("analytic_time_s", "<f8"), ("analytic_elapsed_s", "<f8"), ("analytic_energy_j", "<f8"),
    ("analytic_energy_cum_j", "<f8"), ("analytic_mb_up", "<f8"), ("analytic_mb_down", "<f8"), ("trained_pct", "<f8"),
)
ROUND_DTYPE = np.dtype(list(ROUND_FIELDS))

CLIENT_METRICS = ("busy_s", "wait_s", "idle_s", "compute_wall_s", "lag_s", "download_s", "upload_s",
                  "bytes_up", "bytes_down", "energy_j", "energy_measured_j", "steps", "samples",
                  "rejected", "loss", "flops", "budget", "n_groups", "analytic_time_s", "analytic_energy_j")


@dataclass
class RoundRecord:
    row: dict[str, float]  # ROUND_FIELDS values
    clients: dict[str, np.ndarray]  # CLIENT_METRICS, each [K]
    divergence: np.ndarray  # [B]
    alloc: np.ndarray  # uint8 [K, B]
    tier_f1: np.ndarray  # [T]


class RoundLogWriter:
    def __init__(self, path: Path, attrs: dict[str, Any], n_clients: int, block_names: Sequence[str],
                 tier_names: Sequence[str], existing: list[RoundRecord] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(self.path, "w", libver="latest")
        f = self.f
        for k, v in attrs.items():
            f.attrs[k] = str(v) if isinstance(v, (str, np.str_)) else v
        f.attrs["schema_version"] = SCHEMA_VERSION
        k, b, t = n_clients, len(block_names), len(tier_names)
        f.create_dataset("rounds", (0,), maxshape=(None,), dtype=ROUND_DTYPE, chunks=(64,))
        g = f.create_group("clients")
        for name in CLIENT_METRICS:
            g.create_dataset(name, (0, k), maxshape=(None, k), dtype="f8", chunks=(16, k), fillvalue=np.nan)
        bg = f.create_group("blocks")
        bg.create_dataset("names", data=np.array(list(block_names), dtype=h5py.string_dtype()))
        bg.create_dataset("divergence", (0, b), maxshape=(None, b), dtype="f8", chunks=(16, b), fillvalue=np.nan)
        bg.create_dataset("trainers", (0, b), maxshape=(None, b), dtype="i4", chunks=(16, b))
        f.create_dataset("alloc", (0, k, b), maxshape=(None, k, b), dtype="u1", chunks=(16, k, b))
        tg = f.create_group("tiers")
        tg.create_dataset("names", data=np.array(list(tier_names), dtype=h5py.string_dtype()))
        tg.create_dataset("f1", (0, t), maxshape=(None, t), dtype="f8", chunks=(16, t), fillvalue=np.nan)
        f.swmr_mode = True
        for rec in existing or []:
            self.append(rec)

    def append(self, rec: RoundRecord) -> None:
        f = self.f
        n = f["rounds"].shape[0]

        def put(ds: h5py.Dataset, value: np.ndarray) -> None:
            ds.resize(n + 1, axis=0)
            ds[n] = value

        for name in CLIENT_METRICS:
            put(f["clients"][name], rec.clients[name])
        put(f["blocks/divergence"], rec.divergence)
        put(f["blocks/trainers"], rec.alloc.sum(axis=0).astype(np.int32))
        put(f["alloc"], rec.alloc)
        put(f["tiers/f1"], rec.tier_f1)
        row = np.zeros(1, ROUND_DTYPE)
        for name, _ in ROUND_FIELDS:
            row[name] = rec.row.get(name, np.nan)
        put(f["rounds"], row[0])
        f.flush()

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()


def open_log(path: str | Path) -> h5py.File:
    """Open a log for reading, also one that is being written or whose writer was killed."""
    try:
        return h5py.File(path, "r")
    except OSError:
        return h5py.File(path, "r", swmr=True)


@dataclass
class RunLog:
    attrs: dict[str, Any]
    rounds: np.ndarray  # structured, ROUND_DTYPE
    clients: dict[str, np.ndarray]  # [R, K]
    block_names: list[str]
    divergence: np.ndarray
    alloc: np.ndarray
    tier_names: list[str]
    tier_f1: np.ndarray

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.attrs["config"])

    @property
    def profiles(self) -> list[dict[str, Any]]:
        return json.loads(self.attrs["profiles"])

    def records(self) -> list[RoundRecord]:
        out = []
        for i in range(len(self.rounds)):
            row = {name: self.rounds[name][i].item() for name, _ in ROUND_FIELDS}
            out.append(RoundRecord(row, {k: v[i] for k, v in self.clients.items()}, self.divergence[i],
                                   self.alloc[i], self.tier_f1[i]))
        return out


def read_log(path: str | Path) -> RunLog:
    """Everything in a log, trimmed to the complete rounds."""
    with open_log(path) as f:
        rounds = f["rounds"][:]
        n = len(rounds)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
        return RunLog(
            attrs=attrs, rounds=rounds,
            clients={k: f["clients"][k][:n] for k in f["clients"]},
            block_names=[s.decode() if isinstance(s, bytes) else s for s in f["blocks/names"][:]],
            divergence=f["blocks/divergence"][:n], alloc=f["alloc"][:n],
            tier_names=[s.decode() if isinstance(s, bytes) else s for s in f["tiers/names"][:]],
            tier_f1=f["tiers/f1"][:n],
        )
