"""A validation view of a run's data, for choosing hyperparameters without looking at the test set.

`relief-mpi bench --lr-grid` scores each learning rate on a run whose data config has
`validation > 0`: every client keeps the last `validation` share of its *training* windows of each
recording (in time) as its validation windows, and drops the training windows that overlap them,
so no validation sample is ever trained on. Those windows replace the test sets: each client's own
(its sensors), and a pooled one with every sensor. The test windows the bench reports are never
read. Every rank derives the same view from the same data, so no communication is needed.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from relief_mpi.data.base import FederatedData, WindowSet
from relief_mpi.errors import ReliefError

__all__ = ["carve", "validation_view"]


def carve(ws: WindowSet, fraction: float, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of `ws`: in each recording, the last `fraction` (by start) of each
    label's windows (at least one of a label with two or more) are validation, and a training window
    is kept only if it shares no sample with any validation window of its recording."""
    if ws.rec is None or ws.start is None:
        raise ReliefError("a validation split needs windows that know where they lie in time")
    train, val = [], []
    for rec in np.unique(ws.rec):
        in_rec = np.flatnonzero(ws.rec == rec)
        chosen = []
        for label in np.unique(ws.y[in_rec]):
            idx = in_rec[ws.y[in_rec] == label]
            idx = idx[np.argsort(ws.start[idx], kind="stable")]
            n_val = min(len(idx) - 1, max(1, int(round(fraction * len(idx))))) if len(idx) > 1 else 0
            chosen.append(idx[len(idx) - n_val:])
        v = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
        rest = np.setdiff1d(in_rec, v)
        if v.size:
            starts = np.sort(ws.start[v])
            pos = np.searchsorted(starts, ws.start[rest])
            gap_after = np.where(pos < len(starts), starts[np.minimum(pos, len(starts) - 1)] - ws.start[rest], length)
            gap_before = np.where(pos > 0, ws.start[rest] - starts[np.maximum(pos - 1, 0)], length)
            rest = rest[(gap_after >= length) & (gap_before >= length)]
        val.append(v)
        train.append(rest)
    cat = np.concatenate
    return (np.sort(cat(train)) if train else np.zeros(0, np.int64),
            np.sort(cat(val)) if val else np.zeros(0, np.int64))


def _unmasked(ws: WindowSet) -> WindowSet | None:
    """The same windows with every sensor's channels, if the set is lazy (its cutter reads the
    recordings again); None for a set built from arrays whose absent channels are already zeros."""
    cutter = getattr(ws, "_cutter", None)
    if cutter is None:
        return None
    return WindowSet(None, ws.y, ws.subject, ws.rec, ws.start, cutter, (), (ws.n_channels, ws.window_len))


def validation_view(data: FederatedData, fraction: float) -> FederatedData:
    """`data` with each client's validation windows as its test set (see the module docstring)."""
    if not 0.0 < fraction < 1.0:
        raise ReliefError(f"validation fraction must be in (0, 1), got {fraction}")
    length = data.window_len or data.clients_train[0].window_len
    trains, vals, pooled_parts = [], [], []
    for k, ws in enumerate(data.clients_train):
        tr, va = carve(ws, fraction, length)
        if len(tr) == 0 or len(va) == 0:
            raise ReliefError(f"client {k} has {len(ws)} training windows: too few to keep "
                              f"{fraction:.0%} of them for validation")
        trains.append(ws.take(tr))
        vals.append(ws.take(va))
        pooled_parts.append(_unmasked(ws.take(va)))
    pooled = None
    if data.pooled_test is not None and all(p is not None for p in pooled_parts):
        pooled = _concat([p for p in pooled_parts if p is not None])
    fp = hashlib.sha256(f"{data.fingerprint}|validation {fraction!r}".encode()).hexdigest()[:16]
    return replace(data, clients_train=trains, clients_test=vals, pooled_test=pooled, fingerprint=fp,
                   notes=(*data.notes, f"validation: the last {fraction:.0%} of each client's training windows "
                                       "per recording replace the test sets"))


def _concat(parts: list[WindowSet]) -> WindowSet:
    """One lazy set of several lazy sets cut by the same cutter (the clients' windows of one dataset)."""
    first = parts[0]
    cat = np.concatenate
    assert first.rec is not None and first.start is not None
    return WindowSet(None, cat([p.y for p in parts]), cat([p.subject for p in parts]),
                     cat([p.rec for p in parts if p.rec is not None]),
                     cat([p.start for p in parts if p.start is not None]), first._cutter, (),
                     (first.n_channels, first.window_len))
