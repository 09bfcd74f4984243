"""The authors' per-subject preprocessing (docs/design.md section 0, protocol "paper").

A subject's recording is decimated (every k-th sample kept, no filter), its NaNs forward-filled
per channel, then every channel z-scored over that subject's whole recording, null samples
included. This uses statistics of the test windows too (they come from the same recordings),
which is how the paper normalised; protocol "ours" normalises with training windows only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from relief_mpi.data.base import Recording

__all__ = ["STD_EPS", "authors_apply", "authors_zscore", "channel_moments", "decimate", "ffill_channels",
           "paper_recording", "paper_subject_series", "zscore_channels"]

# Added to the standard deviation, so a constant channel becomes exactly zero.
STD_EPS = 1e-6


def ffill_channels(x: np.ndarray) -> np.ndarray:
    """NaNs forward-filled per channel (column); a channel's leading NaNs take its first valid
    value; a channel with no valid value at all becomes 0. Returns a new float32 array."""
    out = np.array(x, dtype=np.float32, copy=True)
    if out.ndim != 2:
        raise ValueError(f"expected a (samples, channels) array, got shape {out.shape}")
    valid = ~np.isnan(out)
    if valid.all():
        return out
    rows = np.arange(out.shape[0])[:, None]
    last = np.where(valid, rows, 0)
    np.maximum.accumulate(last, axis=0, out=last)
    first = valid.argmax(axis=0)
    last = np.maximum(last, first[None, :])  # rows before the first valid one look ahead to it
    out = np.take_along_axis(out, last, axis=0)
    out[:, ~valid.any(axis=0)] = 0.0
    return out


def channel_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std (float64) of a (samples, channels) array."""
    x64 = np.asarray(x, dtype=np.float64)
    return x64.mean(axis=0), x64.std(axis=0)


def zscore_channels(x: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """(x - mean) / (std + STD_EPS) per channel; moments of x itself unless given."""
    if mean is None or std is None:
        mean, std = channel_moments(x)
    return ((np.asarray(x, np.float64) - mean) / (std + STD_EPS)).astype(np.float32)


def authors_zscore(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The authors' zscore (RELIEF/data/har.py) with its float32 moments: the mean and the std of the
    float32 (samples, channels) array as NumPy forms them in float32, and the denominator std + eps
    in float32. Returns (mean, std + eps), shape (1, channels), for `authors_apply`. The memory
    layout is kept as given: NumPy's float32 sum along axis 0 is pairwise on a column-major array
    and row after row on a row-major one, and their loader hands it the layout the file has (SPAR's
    npz: column-major), as ours does."""
    x32 = np.asarray(x, dtype=np.float32)
    return x32.mean(0, keepdims=True), x32.std(0, keepdims=True) + STD_EPS


def authors_apply(x: np.ndarray, mean: np.ndarray, denom: np.ndarray) -> np.ndarray:
    """(x - mean) / denom in float32, element for element as their zscore's last line."""
    return (np.asarray(x, np.float32) - mean) / denom


def decimate(rec: Recording, k: int) -> Recording:
    """Every k-th sample (and its label), starting with the first: the paper's 100 -> 50 Hz."""
    if k <= 1:
        return rec
    return Recording(rec.subject, np.ascontiguousarray(rec.signals[::k]), np.ascontiguousarray(rec.labels[::k]),
                     rec.source)


def paper_recording(rec: Recording, k: int = 1, zscore_dtype: str = "float64") -> Recording:
    """One subject's whole recording, preprocessed as published: decimate, forward-fill, z-score
    (moments in float64, or "float32": the authors' own arithmetic, authors_zscore)."""
    rec = decimate(rec, k)
    x = ffill_channels(rec.signals)
    if zscore_dtype == "float32":
        return Recording(rec.subject, authors_apply(x, *authors_zscore(x)), rec.labels, rec.source)
    return Recording(rec.subject, zscore_channels(x), rec.labels, rec.source)


def paper_subject_series(recs: Sequence[Recording], k: int = 1, zscore_dtype: str = "float64") -> list[Recording]:
    """Several recordings of one subject (SPAR's exercise series), z-scored with moments over all
    of them together, as if they were one recording; windows still never cross two series.
    zscore_dtype "float32": the authors' float32 moments over the concatenated series (authors_zscore)."""
    if not recs:
        return []
    filled = [Recording(r.subject, ffill_channels(r.signals), r.labels, r.source) for r in
              (decimate(r, k) for r in recs)]
    whole = np.concatenate([r.signals for r in filled])
    if zscore_dtype == "float32":
        mean32, denom = authors_zscore(whole)
        return [Recording(r.subject, authors_apply(r.signals, mean32, denom), r.labels, r.source) for r in filled]
    mean, std = channel_moments(whole)
    return [Recording(r.subject, zscore_channels(r.signals, mean, std), r.labels, r.source) for r in filled]
