"""Sliding windows, a leak-free train/test split and per-channel normalisation.

The split is made on time before windowing: each contiguous run of one label in a recording
gives its last `test_fraction` of samples to test, so no window (overlapping or not) can hold
samples of both sides and every class a recording has appears on both sides.

Windows are first *indexed* (recording, start sample, label, subject): cheap, labels only. The
samples are cut later, only for the windows a rank needs (`cut_windows`), from any store that
can read a slice of a recording (memory, or the HDF5 cache).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from relief_mpi.data.base import DatasetSpec, RawDataset, Recording, WindowSet


class RecordingStore(Protocol):
    """Read access to a dataset's recordings without holding them all."""

    spec: DatasetSpec

    @property
    def n_recordings(self) -> int: ...
    def subject(self, r: int) -> int: ...
    def labels(self, r: int) -> np.ndarray: ...
    def read(self, r: int, start: int, stop: int) -> np.ndarray: ...
    def content_hash(self) -> str: ...


class MemoryStore:
    """A RecordingStore over recordings in memory."""

    def __init__(self, raw: RawDataset) -> None:
        self.spec = raw.spec
        self.recs = raw.recordings
        self._hash: str | None = None

    @property
    def n_recordings(self) -> int:
        return len(self.recs)

    def subject(self, r: int) -> int:
        return int(self.recs[r].subject)

    def labels(self, r: int) -> np.ndarray:
        return np.asarray(self.recs[r].labels, np.int64)

    def read(self, r: int, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.recs[r].signals[start:stop], np.float32)

    def content_hash(self) -> str:
        if self._hash is None:
            self._hash = recordings_hash(self.recs)
        return self._hash


def recordings_hash(recs: list[Recording]) -> str:
    h = hashlib.sha256()
    for rec in recs:
        h.update(np.int64(rec.subject).tobytes())
        h.update(np.ascontiguousarray(rec.signals, np.float32).tobytes())
        h.update(np.ascontiguousarray(rec.labels, np.int64).tobytes())
    return h.hexdigest()


def geometry(rate_hz: float, window_s: float, overlap: float) -> tuple[int, int]:
    """Window length and hop in samples."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    length = max(4, int(round(window_s * rate_hz)))
    hop = max(1, int(round(length * (1.0 - overlap))))
    return length, hop


def label_runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs (start, stop, label) of non-negative labels."""
    if labels.size == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, stops, strict=True) if labels[a] >= 0]


@dataclass
class WindowTable:
    """Where windows lie: recording index, first sample, label, subject (one row per window)."""

    rec: np.ndarray
    start: np.ndarray
    y: np.ndarray
    subject: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class WindowIndex:
    train: WindowTable
    test: WindowTable
    length: int
    hop: int


def index_windows(store: RecordingStore, window_s: float, overlap: float, test_fraction: float) -> WindowIndex:
    """Train and test windows of every recording, split on time within each label run."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    length, hop = geometry(store.spec.sample_rate_hz, window_s, overlap)
    cols: dict[str, list[np.ndarray]] = {f"{s}{c}": [] for s in ("tr", "te") for c in "rsyj"}
    for r in range(store.n_recordings):
        subj = store.subject(r)
        for a, b, lab in label_runs(store.labels(r)):
            split = a + int(round((b - a) * (1.0 - test_fraction)))
            for side, (s, e) in (("tr", (a, split)), ("te", (split, b))):
                if e - s < length:
                    continue
                starts = np.arange(s, e - length + 1, hop, dtype=np.int64)
                cols[side + "r"].append(np.full(len(starts), r, np.int64))
                cols[side + "s"].append(starts)
                cols[side + "y"].append(np.full(len(starts), lab, np.int64))
                cols[side + "j"].append(np.full(len(starts), subj, np.int64))

    def table(side: str) -> WindowTable:
        def cat(k: str) -> np.ndarray:
            return np.concatenate(cols[side + k]) if cols[side + k] else np.zeros(0, np.int64)
        return WindowTable(cat("r"), cat("s"), cat("y"), cat("j"))

    return WindowIndex(table("tr"), table("te"), length, hop)


def channel_stats(store: RecordingStore, table: WindowTable, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over every sample of every window in `table` (a sample covered
    by two overlapping windows counts twice, exactly as stacking the windows would)."""
    n_ch = store.spec.n_channels
    s1 = np.zeros(n_ch, np.float64)
    s2 = np.zeros(n_ch, np.float64)
    n = 0.0
    for r in np.unique(table.rec):
        starts = table.start[table.rec == r]
        lo, hi = int(starts.min()), int(starts.max()) + length
        cover = np.zeros(hi - lo + 1, np.float64)
        np.add.at(cover, starts - lo, 1.0)
        np.add.at(cover, starts - lo + length, -1.0)
        cover = np.cumsum(cover)[:-1]
        x = store.read(int(r), lo, hi).astype(np.float64)
        s1 += cover @ x
        s2 += cover @ (x * x)
        n += cover.sum()
    if n == 0:
        return np.zeros(n_ch, np.float32), np.ones(n_ch, np.float32)
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    std[std < 1e-6] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def cut_windows(store: RecordingStore, rec: np.ndarray, start: np.ndarray, length: int,
                mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """Windows (n, C, length) float32 at (rec, start), in the given order; each contiguous span
    of overlapping windows is read from the store once."""
    n = len(rec)
    out = np.empty((n, store.spec.n_channels, length), np.float32)
    if n == 0:
        return out
    order = np.lexsort((start, rec))
    r_s, s_s = rec[order], start[order]
    brk = np.flatnonzero((np.diff(r_s) != 0) | (np.diff(s_s) > length)) + 1
    for grp in np.split(np.arange(n), brk):
        r = int(r_s[grp[0]])
        lo, hi = int(s_s[grp[0]]), int(s_s[grp[-1]]) + length
        span = store.read(r, lo, hi)
        idx = (s_s[grp] - lo)[:, None] + np.arange(length)[None, :]
        out[order[grp]] = span[idx].transpose(0, 2, 1)
    if mean is not None and std is not None:
        out -= mean[None, :, None]
        out /= std[None, :, None]
    return out


def cut(signals: np.ndarray, start: int, stop: int, length: int, hop: int) -> np.ndarray:
    """Windows (n, C, length) fully inside [start, stop)."""
    if stop - start < length:
        return np.zeros((0, signals.shape[1], length), np.float32)
    starts = np.arange(start, stop - length + 1, hop)
    idx = starts[:, None] + np.arange(length)[None, :]
    return np.ascontiguousarray(signals[idx].transpose(0, 2, 1), dtype=np.float32)


def window_dataset(raw: RawDataset, window_s: float, overlap: float,
                   test_fraction: float) -> tuple[WindowSet, WindowSet]:
    """Train and test windows (materialised, not normalised) of every recording, split on time
    within each label run; `rec` and `start` say where each window lies."""
    store = MemoryStore(raw)
    ix = index_windows(store, window_s, overlap, test_fraction)

    def ws(t: WindowTable) -> WindowSet:
        return WindowSet(cut_windows(store, t.rec, t.start, ix.length), t.y, t.subject, t.rec, t.start)

    return ws(ix.train), ws(ix.test)


def normalise(train: WindowSet, others: list[WindowSet]) -> None:
    """Per-channel z-score with statistics of the training windows only (in place)."""
    if len(train) == 0:
        return
    mean = train.x.mean(axis=(0, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    std = train.x.std(axis=(0, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    std[std < 1e-6] = 1.0
    for ws in [train, *others]:
        ws.x -= mean
        ws.x /= std


def downsample(rec: Recording, k: int) -> Recording:
    """Every k samples -> one: signals averaged over the block (a box anti-alias filter), label
    kept where the whole block agrees, else -1 (a block that straddles a label change is dropped)."""
    if k <= 1:
        return rec
    n = (len(rec.labels) // k) * k
    sig = rec.signals[:n].reshape(-1, k, rec.signals.shape[1]).mean(axis=1, dtype=np.float64).astype(np.float32)
    lab = rec.labels[:n].reshape(-1, k)
    same = (lab == lab[:, :1]).all(axis=1)
    labels = np.where(same, lab[:, 0], -1).astype(np.int64)
    return Recording(rec.subject, sig, labels, rec.source)
