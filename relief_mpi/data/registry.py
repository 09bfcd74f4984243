"""From a DataConfig to the windows a run uses: load, window, split, normalise, partition.

File datasets go through the prepared cache (cache.py): the first rank to need a dataset parses
its files into HDF5 once; every rank then builds the same small window index and partition from
labels alone, and its WindowSets cut samples from the cache only when read. So a client rank
holds its own training windows, the server the test windows, and nobody the whole dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data import mhealth, pamap2, spar, synthetic
from relief_mpi.data.base import DatasetSpec, FederatedData, RawDataset, WindowSet
from relief_mpi.data.cache import open_store
from relief_mpi.data.partition import partition
from relief_mpi.data.preprocess import paper_recording
from relief_mpi.data.protocol import check_data_config
from relief_mpi.data.stats import data_fingerprint, default_windows, server_mask, store_of, window_index_of
from relief_mpi.data.subjects import build_by_subject
from relief_mpi.data.windows import cut_windows, downsample
from relief_mpi.errors import ReliefError

__all__ = ["build_federated", "load_raw", "loader_module", "modality_set_for", "source_files"]


def loader_module(name: str) -> ModuleType:
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
            recs = [paper_recording(r, cfg.downsample, cfg.zscore_dtype) for r in raw.recordings]
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
        files = source_files(cfg.dataset, path, cfg.protocol)
        identity: object = [f.identity for f in files]
        if cfg.protocol != "ours":  # other signals in the store; "ours" keeps its old cache keys
            keyed: dict[str, object] = {"files": identity, "protocol": cfg.protocol}
            if cfg.zscore_dtype != "float64":  # the authors' float32 z-score: other stored signals
                keyed["zscore"] = cfg.zscore_dtype
            identity = keyed
        store = open_store(cfg.dataset, identity, cfg.downsample, lambda: mod.read(path, cfg))
        if store is not None:
            return RawDataset(store.spec.regroup(cfg.modality_by), store=store, notes=store.notes)
    return mod.load(path, cfg)


def modality_set_for(wanted: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    """A tier's sensors intersected with the dataset's modalities (None = all)."""
    if wanted is None:
        return tuple(available)
    return tuple(m for m in available if m in set(wanted))


def build_federated(cfg: DataConfig, seed: int, modality_sets: Sequence[tuple[str, ...]],
                    raw: RawDataset | None = None) -> FederatedData:
    """Windows for every client (absent modalities zeroed), the server split and the test sets.

    The WindowSets are lazy: samples are cut (from memory or the cache) on the first `.x` read.
    partition=subject (one client per subject) is built by subjects.build_by_subject."""
    check_data_config(cfg)
    raw = raw if raw is not None else load_raw(cfg, seed, n_clients=len(modality_sets))
    if cfg.partition == "subject":
        return build_by_subject(cfg, seed, modality_sets, raw)
    spec = raw.spec
    store = store_of(raw)
    ix, mean, std = window_index_of(cfg, spec, store)
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
    extra = None if default_windows(cfg) else [ix.hop]
    fp = data_fingerprint(store, spec, cfg, length, sets, (*stats, np.flatnonzero(smask), *tr_idx, *te_idx), extra)
    return FederatedData(spec, clients_train, clients_test, server, sets, fp, length, tuple(raw.notes))


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
