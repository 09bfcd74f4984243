"""Sliding windows, a leak-free train/test split and per-channel normalisation.

The split is made on time before windowing: each contiguous run of one label in a recording
gives its last `test_fraction` of samples to test, so no window (overlapping or not) can hold
samples of both sides and every class a recording has appears on both sides.

Two kinds of windows: "pure" ones (protocol ours) lie inside one label run, so every sample has
the window's label; "majority" ones (protocol paper) slide over the whole recording and take
their samples' majority label, windows whose majority is not a class (null, transient) dropped.

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

__all__ = ["MemoryStore", "RecordingStore", "WindowIndex", "WindowTable", "channel_stats", "cut", "cut_windows",
           "downsample", "geometry", "index_recordings", "index_windows", "label_runs", "majority_labels", "normalise",
           "recordings_hash", "window_dataset", "window_geometry"]


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


def window_geometry(rate_hz: float, window_s: float, overlap: float, window: int = 0,
                    stride: int = 0) -> tuple[int, int]:
    """Window length and hop in samples: `window` / `stride` when set (> 0), else from seconds and
    overlap (a set window with no stride keeps the overlap)."""
    length, hop = geometry(rate_hz, window_s, overlap)
    if window > 0:
        length = int(window)
        hop = max(1, int(round(length * (1.0 - overlap))))
    if stride > 0:
        hop = int(stride)
    return length, hop


def majority_labels(labels: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """The most frequent label in each window [start, start + length); a tie goes to the smaller
    label, so -1 (null) first and then the lower class index (= the lower activity id)."""
    labels = np.asarray(labels, np.int64)
    starts = np.asarray(starts, np.int64)
    if starts.size == 0:
        return np.zeros(0, np.int64)
    lo = int(labels.min())
    values = labels - lo
    n_values = int(values.max()) + 1
    counts = np.zeros((len(labels) + 1, n_values), np.int32)
    counts[np.arange(1, len(labels) + 1), values] = 1
    np.cumsum(counts, axis=0, out=counts)
    per_window = counts[starts + length] - counts[starts]
    return per_window.argmax(axis=1).astype(np.int64) + lo


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

    def take(self, idx: np.ndarray) -> WindowTable:
        idx = np.asarray(idx, np.int64)
        return WindowTable(self.rec[idx], self.start[idx], self.y[idx], self.subject[idx])


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
    return index_recordings(store, length, hop, False, test_fraction)


def _segments(labels: np.ndarray, test_fraction: float | None, majority: bool) -> list[tuple[int, int, bool]]:
    """(start, stop, is_test) intervals that windows must stay inside. Pure windows: the label runs
    (cut at 1 - test_fraction when splitting). Majority windows: the whole recording, cut into
    alternating train and test stretches, the test ones being the last test_fraction of every
    label run (so every class keeps test windows and no window straddles a cut)."""
    runs = label_runs(labels)
    cut = [] if test_fraction is None else [a + int(round((b - a) * (1.0 - test_fraction))) for a, b, _ in runs]
    if not majority:
        if test_fraction is None:
            return [(a, b, False) for a, b, _ in runs]
        return [seg for (a, b, _), c in zip(runs, cut, strict=True) for seg in ((a, c, False), (c, b, True))]
    if test_fraction is None:
        return [(0, len(labels), False)]
    test = np.zeros(len(labels) + 2, np.int8)  # +1 at each test stretch's start, -1 after its end
    for (_, b, _), c in zip(runs, cut, strict=True):
        test[c + 1] += 1
        test[b + 1] -= 1
    side = np.cumsum(test)[1:-1] > 0
    edges = np.flatnonzero(np.diff(side.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [len(labels)]]).astype(np.int64)
    return [(int(a), int(b), bool(side[a])) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def index_recordings(store: RecordingStore, length: int, hop: int, majority: bool,
                     test_fraction: float | None) -> WindowIndex:
    """Train and test windows of every recording (pure or majority-labelled, see the module
    docstring); with test_fraction None every window is a training window (no time split)."""
    if test_fraction is not None and not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    cols: dict[str, list[np.ndarray]] = {f"{s}{c}": [] for s in ("tr", "te") for c in "rsyj"}
    for r in range(store.n_recordings):
        labels = store.labels(r)
        subj = store.subject(r)
        for a, b, is_test in _segments(labels, test_fraction, majority):
            if b - a < length:
                continue
            starts = np.arange(a, b - length + 1, hop, dtype=np.int64)
            y = majority_labels(labels, starts, length) if majority else np.full(len(starts), labels[a], np.int64)
            keep = y >= 0
            side = "te" if is_test else "tr"
            cols[side + "r"].append(np.full(int(keep.sum()), r, np.int64))
            cols[side + "s"].append(starts[keep])
            cols[side + "y"].append(y[keep])
            cols[side + "j"].append(np.full(int(keep.sum()), subj, np.int64))

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
