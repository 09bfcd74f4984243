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
from pathlib import Path
from types import ModuleType

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data import synthetic
from relief_mpi.data.base import DatasetSpec, FederatedData, RawDataset, WindowSet
from relief_mpi.data.partition import partition
from relief_mpi.data.windows import MemoryStore, channel_stats, cut_windows, downsample, index_windows
from relief_mpi.errors import ReliefError

FILE_DATASETS = ("spar", "mhealth", "pamap2")


def loader_module(name: str) -> ModuleType:
    from relief_mpi.data import mhealth, pamap2, spar

    mods = {"spar": spar, "mhealth": mhealth, "pamap2": pamap2}
    if name not in mods:
        raise ReliefError(f"unknown dataset {name!r}; choose one of synthetic, {', '.join(mods)}")
    return mods[name]


def _file_loaders() -> dict:
    return {n: loader_module(n).load for n in FILE_DATASETS}


def source_files(name: str, path: Path) -> list:
    """The DataFiles a file dataset would read from `path` (raises ReliefError if none)."""
    mod = loader_module(name)
    if name == "spar":
        return [mod.locate(path)]
    return [f for _, f in mod.locate(path)[0]]


def load_raw(cfg: DataConfig, seed: int, use_cache: bool = True) -> RawDataset:
    """The recordings of the configured dataset (raises ReliefError on unusable input). File
    datasets come back backed by the prepared cache when one is usable (recordings read lazily)."""
    if cfg.downsample < 1:
        raise ReliefError(f"downsample must be >= 1, got {cfg.downsample}")
    if cfg.dataset == "synthetic":
        raw = synthetic.generate(seed=seed, modality_by=cfg.modality_by)
        if cfg.downsample > 1:
            from dataclasses import replace

            raw = RawDataset(replace(raw.spec, sample_rate_hz=raw.spec.sample_rate_hz / cfg.downsample),
                             [downsample(r, cfg.downsample) for r in raw.recordings])
        return raw
    mod = loader_module(cfg.dataset)
    if cfg.data_dir is None:
        raise ReliefError(f"--dataset {cfg.dataset} needs --data-dir pointing at its files "
                          f"(see `relief-mpi data fetch {cfg.dataset} --help`)")
    path = Path(cfg.data_dir).expanduser()
    if use_cache:
        from relief_mpi.data.cache import open_store

        files = source_files(cfg.dataset, path)
        store = open_store(cfg.dataset, [f.identity for f in files], cfg.downsample, lambda: mod.read(path, cfg))
        if store is not None:
            return RawDataset(store.spec.regroup(cfg.modality_by), store=store, notes=store.notes)
    return mod.load(path, cfg)


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


def fingerprint(sets: Sequence[WindowSet]) -> str:
    """Hash of materialised windows (kept for callers that have them in memory)."""
    h = hashlib.sha256()
    for ws in sets:
        h.update(np.ascontiguousarray(ws.x).tobytes())
        h.update(ws.y.tobytes())
    return h.hexdigest()[:16]


def build_federated(cfg: DataConfig, seed: int, modality_sets: Sequence[tuple[str, ...]],
                    raw: RawDataset | None = None) -> FederatedData:
    """Windows for every client (absent modalities zeroed), the server split and the test sets.

    The WindowSets are lazy: samples are cut (from memory or the cache) on the first `.x` read."""
    raw = raw if raw is not None else load_raw(cfg, seed)
    spec = raw.spec
    from relief_mpi.data.cache import H5Store, window_index

    try:
        if isinstance(raw.store, H5Store):
            store = raw.store
            ix, mean, std = window_index(store, cfg.window_s, cfg.overlap, cfg.test_fraction)
        else:
            store = MemoryStore(raw)
            ix = index_windows(store, cfg.window_s, cfg.overlap, cfg.test_fraction)
            mean, std = channel_stats(store, ix.train, ix.length)
    except ValueError as e:
        raise ReliefError(f"dataset {spec.name}: {e}") from None
    if len(ix.train) == 0 or len(ix.test) == 0:
        raise ReliefError(f"dataset {spec.name}: recordings too short for {cfg.window_s} s windows")
    length = ix.length

    def cutter(rec: np.ndarray, start: np.ndarray) -> np.ndarray:
        return cut_windows(store, rec, start, length, mean, std)

    shape = (spec.n_channels, length)
    train = WindowSet(None, ix.train.y, ix.train.subject, ix.train.rec, ix.train.start, cutter, shape=shape)
    test = WindowSet(None, ix.test.y, ix.test.subject, ix.test.rec, ix.test.start, cutter, shape=shape)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E4]))
    # Server split: a stratified share of training windows kept for LoRA base pretraining.
    server_idx = []
    for c in range(len(spec.classes)):
        idx = np.flatnonzero(train.y == c)
        n = int(round(len(idx) * cfg.server_fraction))
        server_idx.append(rng.choice(idx, size=n, replace=False) if n else np.zeros(0, np.int64))
    server_mask = np.zeros(len(train), bool)
    server_mask[np.concatenate(server_idx).astype(np.int64)] = True
    server = train.take(np.flatnonzero(server_mask))
    pool = train.take(np.flatnonzero(~server_mask))
    n_clients = len(modality_sets)
    key_tr = pool.subject * 10_000_000 + np.arange(len(pool))
    key_te = test.subject * 10_000_000 + np.arange(len(test))
    try:
        tr_idx, te_idx = partition(pool.y, key_tr, test.y, key_te, len(spec.classes), n_clients, cfg.alpha, seed)
    except ValueError as e:
        raise ReliefError(f"dataset {spec.name}: {e}") from None
    names = spec.modality_names()
    clients_train, clients_test = [], []
    for k in range(n_clients):
        absent = tuple(c for m in spec.modalities if m.name not in modality_sets[k] for c in m.channels)
        clients_train.append(pool.take(tr_idx[k]).without(absent))
        clients_test.append(test.take(te_idx[k]).without(absent))
    sets = [tuple(m for m in names if m in s) for s in modality_sets]
    h = hashlib.sha256()
    h.update(store.content_hash().encode())
    h.update(json.dumps([spec.name, names, [list(m.channels) for m in spec.modalities], cfg.window_s,
                         cfg.overlap, cfg.test_fraction, length, sets]).encode())
    for a in (mean, std, np.flatnonzero(server_mask), *tr_idx, *te_idx):
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    return FederatedData(spec, clients_train, clients_test, server, sets, h.hexdigest()[:16], length,
                         tuple(raw.notes))
