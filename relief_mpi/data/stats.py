"""Statistics of a dataset's windows that the split builders share: the store windows are cut from,
the normalisation statistics, the server's share, the train/test window index and the data
fingerprint. Used by data.registry (time and Dirichlet splits) and data.subjects (one client per
subject), so that neither imports the other for them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data.base import DatasetSpec, RawDataset
from relief_mpi.data.cache import H5Store, train_stats, window_index
from relief_mpi.data.windows import (
    MemoryStore,
    RecordingStore,
    WindowIndex,
    WindowTable,
    channel_stats,
    index_recordings,
    index_windows,
    window_geometry,
)
from relief_mpi.errors import ReliefError

__all__ = ["NEW_FIELDS", "data_fingerprint", "default_windows", "server_mask", "store_of", "training_stats",
           "window_index_of"]


def store_of(raw: RawDataset) -> RecordingStore:
    """The store windows are cut from: the prepared cache when the dataset has one, else memory."""
    return raw.store if isinstance(raw.store, H5Store) else MemoryStore(raw)


def training_stats(store: RecordingStore, table: WindowTable, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the training windows (cached next to a prepared store)."""
    if isinstance(store, H5Store):
        return train_stats(store, table, length)
    return channel_stats(store, table, length)


def server_mask(y: np.ndarray, n_classes: int, fraction: float, seed: int) -> np.ndarray:
    """A stratified share of the training windows kept on the server for LoRA base pretraining."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E4]))
    picked = []
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        n = int(round(len(idx) * fraction))
        picked.append(rng.choice(idx, size=n, replace=False) if n else np.zeros(0, np.int64))
    mask = np.zeros(len(y), bool)
    mask[np.concatenate(picked).astype(np.int64)] = True
    return mask


# Settings added with the paper protocol: hashed into the fingerprint when not at their default,
# so fingerprints (and resumable checkpoints) of today's default runs stay what they were.
NEW_FIELDS = {"protocol": "ours", "partition": "dirichlet", "split": "time", "window": 0, "stride": 0,
               "test_subjects": 0, "zscore_dtype": "float64"}
# paper-streams is what split=paper drew before issue 23: it hashes as it did, so those checkpoints resume.
_SPLIT_HASHED = {"paper-streams": "paper", "paper": "paper-one-generator"}


def data_fingerprint(store: RecordingStore, spec: DatasetSpec, cfg: DataConfig, length: int,
                     sets: Sequence[tuple[str, ...]], arrays: Sequence[np.ndarray], extra: object = None) -> str:
    """Hash of everything that decides the windows a run sees, without reading any window."""
    names = spec.modality_names()
    h = hashlib.sha256()
    h.update(store.content_hash().encode())
    h.update(json.dumps([spec.name, names, [list(m.channels) for m in spec.modalities], cfg.window_s,
                         cfg.overlap, cfg.test_fraction, length, [list(s) for s in sets]]).encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    new = {k: _SPLIT_HASHED.get(getattr(cfg, k), getattr(cfg, k)) if k == "split" else getattr(cfg, k)
           for k, default in NEW_FIELDS.items() if getattr(cfg, k) != default}
    if new or extra is not None:
        h.update(json.dumps([new, extra], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def default_windows(cfg: DataConfig) -> bool:
    """Protocol ours with the window and hop from window_s and overlap: the path whose window index
    is cached with a prepared store and whose fingerprint is what it was before the paper protocol."""
    return cfg.protocol == "ours" and cfg.window == 0 and cfg.stride == 0


def window_index_of(cfg: DataConfig, spec: DatasetSpec,
                  store: RecordingStore) -> tuple[WindowIndex, np.ndarray | None, np.ndarray | None]:
    """The train/test window index and the normalisation statistics (None under protocol paper,
    whose recordings come z-scored per subject). Protocol ours at its default windows uses the
    index cached next to a prepared store."""
    try:
        if default_windows(cfg):
            if isinstance(store, H5Store):
                return window_index(store, cfg.window_s, cfg.overlap, cfg.test_fraction)
            ix = index_windows(store, cfg.window_s, cfg.overlap, cfg.test_fraction)
            return (ix, *channel_stats(store, ix.train, ix.length))
        length, hop = window_geometry(spec.sample_rate_hz, cfg.window_s, cfg.overlap, cfg.window, cfg.stride)
        ix = index_recordings(store, length, hop, cfg.protocol == "paper", cfg.test_fraction)
        if cfg.protocol == "paper":
            return ix, None, None
        return (ix, *training_stats(store, ix.train, length))
    except ValueError as e:
        raise ReliefError(f"dataset {spec.name}: {e}") from None
