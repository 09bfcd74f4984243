"""Containers shared by every dataset: a loader returns a RawDataset of whole recordings, and the
generic pipeline (windows.py, partition.py) turns it into per-client windows.

Window sets may be lazy: a WindowSet built by the pipeline knows where its windows are (recording
and start sample of each) and only cuts them, from memory or from the prepared HDF5 cache, when
`.x` is first read. So a client rank only ever materialises its own windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from relief_mpi.data.split import SubjectSplit

__all__ = ["DatasetSpec", "FederatedData", "Modality", "RawDataset", "Recording", "WindowCutter", "WindowSet",
           "group_modalities", "make_spec"]


@dataclass(frozen=True)
class Modality:
    """A group of input channels that a device either has or lacks as a whole."""

    name: str
    channels: tuple[int, ...]  # column indices into Recording.signals
    channel_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    modalities: tuple[Modality, ...]
    sample_rate_hz: float
    channel_names: tuple[str, ...]
    # Per-channel sensor type and body position, and the order modalities take for each grouping:
    # lets a cached dataset be regrouped (`regroup`) without reloading it. Empty = unknown.
    channel_types: tuple[str, ...] = ()
    channel_positions: tuple[str, ...] = ()
    type_order: tuple[str, ...] = ()
    position_order: tuple[str, ...] = ()

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def channel_table(self) -> tuple[tuple[str, str, str], ...]:
        return tuple(zip(self.channel_names, self.channel_types, self.channel_positions, strict=True))

    def regroup(self, by: str) -> DatasetSpec:
        """The same channels grouped into modalities by sensor type or by body position."""
        if not self.channel_types:
            return self
        mods = group_modalities(self.channel_table(), by, self.type_order, self.position_order)
        return replace(self, modalities=mods)

    def to_json_dict(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "sample_rate_hz": self.sample_rate_hz,
                "channel_names": list(self.channel_names), "channel_types": list(self.channel_types),
                "channel_positions": list(self.channel_positions), "type_order": list(self.type_order),
                "position_order": list(self.position_order)}

    @staticmethod
    def from_json_dict(d: dict, by: str) -> DatasetSpec:
        s = DatasetSpec(d["name"], tuple(d["classes"]), (), float(d["sample_rate_hz"]), tuple(d["channel_names"]),
                        tuple(d["channel_types"]), tuple(d["channel_positions"]), tuple(d["type_order"]),
                        tuple(d["position_order"]))
        return s.regroup(by)


def group_modalities(channels: tuple[tuple[str, str, str], ...], by: str,
                     type_order: tuple[str, ...], position_order: tuple[str, ...]) -> tuple[Modality, ...]:
    """Group channel columns into modalities by sensor type or by body position."""
    if by not in ("type", "position"):
        raise ValueError(f"modality grouping must be 'type' or 'position', got {by!r}")
    key = 1 if by == "type" else 2
    order = type_order if by == "type" else position_order
    mods = []
    for name in order:
        idx = tuple(i for i, ch in enumerate(channels) if ch[key] == name)
        if idx:
            mods.append(Modality(name, idx, tuple(channels[i][0] for i in idx)))
    return tuple(mods)


def make_spec(name: str, classes: tuple[str, ...], channels: tuple[tuple[str, str, str], ...], rate_hz: float,
              by: str, type_order: tuple[str, ...], position_order: tuple[str, ...]) -> DatasetSpec:
    """A spec from a (name, sensor type, body position) table, grouped `by` type or position."""
    return DatasetSpec(name=name, classes=classes,
                       modalities=group_modalities(channels, by, type_order, position_order),
                       sample_rate_hz=rate_hz, channel_names=tuple(c[0] for c in channels),
                       channel_types=tuple(c[1] for c in channels), channel_positions=tuple(c[2] for c in channels),
                       type_order=type_order, position_order=position_order)


@dataclass
class Recording:
    """One continuous recording of one subject: signals (T, C) float32 and labels (T,) int64 in
    0..n_classes-1, or -1 for samples to drop (null class, transients)."""

    subject: int
    signals: np.ndarray
    labels: np.ndarray
    source: str = ""


class RawDataset:
    """A dataset's recordings. Backed either by a list in memory or by a prepared store (the HDF5
    cache, see cache.py), in which case `recordings` is only read from disk when asked for."""

    def __init__(self, spec: DatasetSpec, recordings: list[Recording] | None = None, store: Any = None,
                 notes: tuple[str, ...] = ()) -> None:
        """store: a cache.H5Store (typed Any so that this module needs no h5py)."""
        self.spec = spec
        self._recordings = recordings
        self.store = store
        self.notes = notes  # loader remarks (checksums, missing files), shown by `data info`
        if recordings is None and store is None:
            self._recordings = []

    @property
    def recordings(self) -> list[Recording]:
        if self._recordings is None:
            self._recordings = self.store.load_recordings()
        return self._recordings

    @recordings.setter
    def recordings(self, value: list[Recording]) -> None:
        self._recordings = value

    def __repr__(self) -> str:
        return f"RawDataset({self.spec.name!r}, {'cached' if self._recordings is None else len(self._recordings)})"


# Cuts windows on demand: (recording index, start sample) arrays -> (n, C, L) float32, normalised.
WindowCutter = Callable[[np.ndarray, np.ndarray], np.ndarray]


class WindowSet:
    """Windows (N, C, L) float32 with labels and subjects; optionally lazy.

    `rec` and `start` (when known) say where each window lies in time: recording index and first
    sample. A lazy set holds a cutter instead of `x` and materialises on the first `.x` read, then
    zeroes `zero_channels` (channels of modalities the client lacks)."""

    def __init__(self, x: np.ndarray | None, y: np.ndarray, subject: np.ndarray, rec: np.ndarray | None = None,
                 start: np.ndarray | None = None, cutter: WindowCutter | None = None,
                 zero_channels: tuple[int, ...] = (), shape: tuple[int, int] | None = None) -> None:
        if x is None and cutter is None:
            raise ValueError("a WindowSet needs windows or a cutter")
        self._x = x
        self.y = y
        self.subject = subject
        self.rec = rec
        self.start = start
        self._cutter = cutter
        self.zero_channels = tuple(zero_channels)
        self._shape = shape if x is None else (int(x.shape[1]), int(x.shape[2]))

    @property
    def x(self) -> np.ndarray:
        if self._x is None:
            assert self._cutter is not None and self.rec is not None and self.start is not None
            x = self._cutter(self.rec, self.start)
            if self.zero_channels:
                x[:, list(self.zero_channels), :] = 0.0
            self._x = x
        return self._x

    @x.setter
    def x(self, value: np.ndarray) -> None:
        self._x = value

    @property
    def materialised(self) -> bool:
        return self._x is not None

    @property
    def n_channels(self) -> int:
        return self._shape[0] if self._shape else 0

    @property
    def window_len(self) -> int:
        return self._shape[1] if self._shape else 0

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, idx: np.ndarray) -> WindowSet:
        idx = np.asarray(idx, dtype=np.int64)
        rec = None if self.rec is None else self.rec[idx]
        start = None if self.start is None else self.start[idx]
        if self._x is not None:
            return WindowSet(self._x[idx], self.y[idx], self.subject[idx], rec, start)
        return WindowSet(None, self.y[idx], self.subject[idx], rec, start, self._cutter, self.zero_channels,
                         self._shape)

    def without(self, channels: tuple[int, ...]) -> WindowSet:
        """The same windows with `channels` zeroed (lazily if not yet materialised)."""
        if not channels:
            return self
        if self._x is not None:
            x = self._x.copy()
            x[:, list(channels), :] = 0.0
            return WindowSet(x, self.y, self.subject, self.rec, self.start)
        zc = tuple(sorted(set(self.zero_channels) | set(channels)))
        return WindowSet(None, self.y, self.subject, self.rec, self.start, self._cutter, zc, self._shape)

    @staticmethod
    def empty(n_channels: int, length: int) -> WindowSet:
        return WindowSet(np.zeros((0, n_channels, length), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                         np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclass
class FederatedData:
    """What a run trains and evaluates on. Client k's windows have the channels of modalities it
    lacks set to zero at load, so no absent sensor can leak into training.

    With one client per subject (partition=subject), `client_subjects` holds client k's subject id
    and `pooled_test` the union of every test window with all modalities kept: the paper's global
    test set (split=paper), the held-out stretches (split=time) or the held-out subjects
    (split=subject, whose clients_test are then empty). Both stay empty/None for Dirichlet."""

    spec: DatasetSpec
    clients_train: list[WindowSet]
    clients_test: list[WindowSet]
    server_train: WindowSet
    modality_sets: list[tuple[str, ...]]
    fingerprint: str = ""
    window_len: int = 0
    notes: tuple[str, ...] = field(default=())
    pooled_test: WindowSet | None = None
    client_subjects: tuple[int, ...] = ()
    split: tuple[SubjectSplit, ...] = ()  # the random splits' per-subject test windows, for the log

    @property
    def n_clients(self) -> int:
        return len(self.clients_train)
