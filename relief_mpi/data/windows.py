"""Sliding windows, a leak-free train/test split and per-channel normalisation.

The split is made on time before windowing: each contiguous run of one label in a recording
gives its last `test_fraction` of samples to test, so no window (overlapping or not) can hold
samples of both sides and every class a recording has appears on both sides.
"""

from __future__ import annotations

import numpy as np

from relief_mpi.data.base import RawDataset, WindowSet


def label_runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs (start, stop, label) of non-negative labels."""
    if labels.size == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, stops, strict=True) if labels[a] >= 0]


def cut(signals: np.ndarray, start: int, stop: int, length: int, hop: int) -> np.ndarray:
    """Windows (n, C, length) fully inside [start, stop)."""
    if stop - start < length:
        return np.zeros((0, signals.shape[1], length), np.float32)
    starts = np.arange(start, stop - length + 1, hop)
    idx = starts[:, None] + np.arange(length)[None, :]
    return np.ascontiguousarray(signals[idx].transpose(0, 2, 1), dtype=np.float32)


def window_dataset(raw: RawDataset, window_s: float, overlap: float,
                   test_fraction: float) -> tuple[WindowSet, WindowSet]:
    """Train and test windows of every recording, split on time within each label run."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    length = max(4, int(round(window_s * raw.spec.sample_rate_hz)))
    hop = max(1, int(round(length * (1.0 - overlap))))
    parts: dict[str, list] = {"trx": [], "try": [], "trs": [], "tex": [], "tey": [], "tes": []}
    for rec in raw.recordings:
        for a, b, lab in label_runs(rec.labels):
            split = a + int(round((b - a) * (1.0 - test_fraction)))
            for side, (s, e) in (("tr", (a, split)), ("te", (split, b))):
                w = cut(rec.signals, s, e, length, hop)
                parts[side + "x"].append(w)
                parts[side + "y"].append(np.full(len(w), lab, np.int64))
                parts[side + "s"].append(np.full(len(w), rec.subject, np.int64))
    n_ch = raw.spec.n_channels

    def stack(side: str) -> WindowSet:
        if not parts[side + "x"]:
            return WindowSet.empty(n_ch, length)
        return WindowSet(np.concatenate(parts[side + "x"]), np.concatenate(parts[side + "y"]),
                         np.concatenate(parts[side + "s"]))

    return stack("tr"), stack("te")


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
