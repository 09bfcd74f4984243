"""From a DataConfig to the windows a run uses: load, window, split, normalise, partition.

File datasets go through the prepared cache (cache.py): the first rank to need a dataset parses
its files into HDF5 once; every rank then builds the same small window index and partition from
labels alone, and its WindowSets cut samples from the cache only when read. So a client rank
holds its own training windows, the server the test windows, and nobody the whole dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data import synthetic
from relief_mpi.data.base import DatasetSpec, FederatedData, RawDataset, WindowSet
from relief_mpi.data.partition import partition
from relief_mpi.data.preprocess import paper_recording
from relief_mpi.data.protocol import check_data_config
from relief_mpi.data.windows import (
    MemoryStore,
    RecordingStore,
    WindowIndex,
    WindowTable,
    channel_stats,
    cut_windows,
    downsample,
    index_recordings,
    index_windows,
    window_geometry,
)
from relief_mpi.errors import ReliefError


def loader_module(name: str) -> ModuleType:
    from relief_mpi.data import mhealth, pamap2, spar

    mods = {"spar": spar, "mhealth": mhealth, "pamap2": pamap2}
    if name not in mods:
        raise ReliefError(f"unknown dataset {name!r}; choose one of synthetic, {', '.join(mods)}")
    return mods[name]


def source_files(name: str, path: Path, protocol: str = "ours") -> list:
    """The DataFiles a file dataset would read from `path` (raises ReliefError if none)."""
    mod = loader_module(name)
    if name == "spar":
        return [mod.locate(path)]
    if name == "pamap2":
        return [f for _, f in mod.locate(path, protocol)[0]]
    return [f for _, f in mod.locate(path)[0]]


def load_raw(cfg: DataConfig, seed: int, use_cache: bool = True, n_clients: int | None = None) -> RawDataset:
    """The recordings of the configured dataset (raises ReliefError on unusable input). File
    datasets come back backed by the prepared cache when one is usable (recordings read lazily).
    Protocol "paper" returns them preprocessed as the authors did (preprocess.py). The synthetic
    dataset grows with `n_clients` where its 10 subjects are too few (synthetic.subjects_for)."""
    check_data_config(cfg)
    if cfg.downsample < 1:
        raise ReliefError(f"downsample must be >= 1, got {cfg.downsample}")
    if cfg.dataset == "synthetic":
        n_subjects = synthetic.subjects_for(n_clients, cfg) if n_clients else synthetic.SUBJECTS
        raw = synthetic.generate(seed=seed, modality_by=cfg.modality_by, n_subjects=n_subjects)
        if cfg.protocol == "paper":
            recs = [paper_recording(r, cfg.downsample) for r in raw.recordings]
        elif cfg.downsample > 1:
            recs = [downsample(r, cfg.downsample) for r in raw.recordings]
        else:
            return raw
        return RawDataset(replace(raw.spec, sample_rate_hz=raw.spec.sample_rate_hz / cfg.downsample), recs)
    mod = loader_module(cfg.dataset)
    if cfg.data_dir is None:
        raise ReliefError(f"--dataset {cfg.dataset} needs --data-dir pointing at its files "
                          f"(see `relief-mpi data fetch {cfg.dataset} --help`)")
    path = Path(cfg.data_dir).expanduser()
    if use_cache:
        from relief_mpi.data.cache import open_store

        files = source_files(cfg.dataset, path, cfg.protocol)
        identity: object = [f.identity for f in files]
        if cfg.protocol != "ours":  # other signals in the store; "ours" keeps its old cache keys
            identity = {"files": identity, "protocol": cfg.protocol}
        store = open_store(cfg.dataset, identity, cfg.downsample, lambda: mod.read(path, cfg))
        if store is not None:
            return RawDataset(store.spec.regroup(cfg.modality_by), store=store, notes=store.notes)
    return mod.load(path, cfg)


def sensor_names() -> tuple[str, ...]:
    """Every modality name a dataset of ours can have (sensor types and body positions): a fleet's
    sensor outside these is a typo, not a sensor some other dataset lacks."""
    from relief_mpi.data import mhealth, pamap2, spar

    names: list[str] = []
    for orders in (synthetic.TYPE_ORDER, synthetic.POSITION_ORDER, mhealth.TYPE_ORDER, mhealth.POSITION_ORDER,
                   pamap2.TYPE_ORDER, pamap2.PAPER_TYPE_ORDER, pamap2.POSITION_ORDER, spar.TYPE_ORDER,
                   spar.POSITION_ORDER):
        names += [n for n in orders if n not in names]
    return tuple(names)


def modality_set_for(wanted: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    """A tier's sensors intersected with the dataset's modalities (None = all)."""
    if wanted is None:
        return tuple(available)
    return tuple(m for m in available if m in set(wanted))


def fleet_modality_sets(spec: DatasetSpec, n_clients: int, fleet: str | None = None,
                        profiles_dir: str | None = None) -> tuple[list, list[tuple[str, ...]]]:
    """The fleet's devices for n_clients and each one's modality set on this dataset."""
    from relief_mpi.device.fleet import load_fleet, resolve_fleet
    from relief_mpi.device.profiles import load_profiles

    devices = resolve_fleet(load_fleet(fleet), n_clients, load_profiles(profiles_dir))
    return devices, [modality_set_for(d.sensors, spec.modality_names()) for d in devices]


def store_of(raw: RawDataset) -> RecordingStore:
    """The store windows are cut from: the prepared cache when the dataset has one, else memory."""
    from relief_mpi.data.cache import H5Store

    return raw.store if isinstance(raw.store, H5Store) else MemoryStore(raw)


def training_stats(store: RecordingStore, table: WindowTable, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the training windows (cached next to a prepared store)."""
    from relief_mpi.data.cache import H5Store, train_stats

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
_NEW_FIELDS = {"protocol": "ours", "partition": "dirichlet", "split": "time", "window": 0, "stride": 0,
               "test_subjects": 0}


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
    new = {k: getattr(cfg, k) for k, default in _NEW_FIELDS.items() if getattr(cfg, k) != default}
    if new or extra is not None:
        h.update(json.dumps([new, extra], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def build_federated(cfg: DataConfig, seed: int, modality_sets: Sequence[tuple[str, ...]],
                    raw: RawDataset | None = None) -> FederatedData:
    """Windows for every client (absent modalities zeroed), the server split and the test sets.

    The WindowSets are lazy: samples are cut (from memory or the cache) on the first `.x` read.
    partition=subject (one client per subject) is built by subjects.build_by_subject."""
    check_data_config(cfg)
    raw = raw if raw is not None else load_raw(cfg, seed, n_clients=len(modality_sets))
    if cfg.partition == "subject":
        from relief_mpi.data.subjects import build_by_subject

        return build_by_subject(cfg, seed, modality_sets, raw)
    spec = raw.spec
    store = store_of(raw)
    ix, mean, std = _window_index(cfg, spec, store)
    if len(ix.train) == 0 or len(ix.test) == 0:
        raise ReliefError(f"dataset {spec.name}: recordings too short for {ix.length}-sample windows")
    length = ix.length

    def cutter(rec: np.ndarray, start: np.ndarray) -> np.ndarray:
        return cut_windows(store, rec, start, length, mean, std)

    shape = (spec.n_channels, length)
    train = WindowSet(None, ix.train.y, ix.train.subject, ix.train.rec, ix.train.start, cutter, shape=shape)
    test = WindowSet(None, ix.test.y, ix.test.subject, ix.test.rec, ix.test.start, cutter, shape=shape)
    smask = server_mask(train.y, len(spec.classes), cfg.server_fraction, seed)
    server = train.take(np.flatnonzero(smask))
    pool = train.take(np.flatnonzero(~smask))
    n_clients = len(modality_sets)
    key_tr = pool.subject * 10_000_000 + np.arange(len(pool))
    key_te = test.subject * 10_000_000 + np.arange(len(test))
    try:
        tr_idx, te_idx = partition(pool.y, key_tr, test.y, key_te, len(spec.classes), n_clients, cfg.alpha, seed)
    except ValueError as e:
        raise ReliefError(f"dataset {spec.name}: {e}") from None
    clients_train, clients_test = _client_windows(spec, pool, test, tr_idx, te_idx, modality_sets)
    names = spec.modality_names()
    sets = [tuple(m for m in names if m in s) for s in modality_sets]
    stats = () if mean is None or std is None else (mean, std)
    extra = None if _default_windows(cfg) else [ix.hop]
    fp = data_fingerprint(store, spec, cfg, length, sets, (*stats, np.flatnonzero(smask), *tr_idx, *te_idx), extra)
    return FederatedData(spec, clients_train, clients_test, server, sets, fp, length, tuple(raw.notes))


def _default_windows(cfg: DataConfig) -> bool:
    """Protocol ours with the window and hop from window_s and overlap: the path whose window index
    is cached with a prepared store and whose fingerprint is what it was before the paper protocol."""
    return cfg.protocol == "ours" and cfg.window == 0 and cfg.stride == 0


def _window_index(cfg: DataConfig, spec: DatasetSpec,
                  store: RecordingStore) -> tuple[WindowIndex, np.ndarray | None, np.ndarray | None]:
    """The train/test window index and the normalisation statistics (None under protocol paper,
    whose recordings come z-scored per subject). Protocol ours at its default windows uses the
    index cached next to a prepared store."""
    from relief_mpi.data.cache import H5Store, window_index

    try:
        if _default_windows(cfg):
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


def _client_windows(spec: DatasetSpec, pool: WindowSet, test: WindowSet, tr_idx: Sequence[np.ndarray],
                    te_idx: Sequence[np.ndarray],
                    modality_sets: Sequence[tuple[str, ...]]) -> tuple[list[WindowSet], list[WindowSet]]:
    """Each client's train and test windows, with the channels of the modalities it lacks zeroed."""
    clients_train, clients_test = [], []
    for k, mods in enumerate(modality_sets):
        absent = tuple(c for m in spec.modalities if m.name not in mods for c in m.channels)
        clients_train.append(pool.take(tr_idx[k]).without(absent))
        clients_test.append(test.take(te_idx[k]).without(absent))
    return clients_train, clients_test
