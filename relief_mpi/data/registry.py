"""From a DataConfig to the windows a run uses: load, window, split, normalise, partition."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data import synthetic
from relief_mpi.data.base import FederatedData, RawDataset, WindowSet
from relief_mpi.data.partition import partition
from relief_mpi.data.windows import normalise, window_dataset
from relief_mpi.errors import ReliefError


def load_raw(cfg: DataConfig, seed: int) -> RawDataset:
    """The recordings of the configured dataset (raises ReliefError on unusable input)."""
    if cfg.dataset == "synthetic":
        return synthetic.generate(seed=seed, modality_by=cfg.modality_by)
    loaders = _file_loaders()
    if cfg.dataset not in loaders:
        raise ReliefError(f"unknown dataset {cfg.dataset!r}; choose one of synthetic, {', '.join(loaders)}")
    if cfg.data_dir is None:
        raise ReliefError(f"--dataset {cfg.dataset} needs --data-dir pointing at its files "
                          f"(see `relief-mpi data fetch {cfg.dataset} --help`)")
    return loaders[cfg.dataset](Path(cfg.data_dir).expanduser(), cfg)


def _file_loaders() -> dict:
    from relief_mpi.data import mhealth, pamap2, spar

    return {"spar": spar.load, "mhealth": mhealth.load, "pamap2": pamap2.load}


def modality_set_for(wanted: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    """A tier's sensors intersected with the dataset's modalities (None = all)."""
    if wanted is None:
        return tuple(available)
    return tuple(m for m in available if m in set(wanted))


def fingerprint(sets: Sequence[WindowSet]) -> str:
    h = hashlib.sha256()
    for ws in sets:
        h.update(np.ascontiguousarray(ws.x).tobytes())
        h.update(ws.y.tobytes())
    return h.hexdigest()[:16]


def build_federated(cfg: DataConfig, seed: int, modality_sets: Sequence[tuple[str, ...]],
                    raw: RawDataset | None = None) -> FederatedData:
    """Windows for every client (absent modalities zeroed), the server split and the test sets."""
    raw = raw if raw is not None else load_raw(cfg, seed)
    train, test = window_dataset(raw, cfg.window_s, cfg.overlap, cfg.test_fraction)
    if len(train) == 0 or len(test) == 0:
        raise ReliefError(f"dataset {raw.spec.name}: recordings too short for {cfg.window_s} s windows")
    normalise(train, [test])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E4]))
    # Server split: a stratified share of training windows kept for LoRA base pretraining.
    server_idx = []
    for c in range(len(raw.spec.classes)):
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
        tr_idx, te_idx = partition(pool.y, key_tr, test.y, key_te, len(raw.spec.classes), n_clients,
                                   cfg.alpha, seed)
    except ValueError as e:
        raise ReliefError(f"dataset {raw.spec.name}: {e}") from None
    names = raw.spec.modality_names()
    clients_train, clients_test = [], []
    for k in range(n_clients):
        ctr, cte = pool.take(tr_idx[k]), test.take(te_idx[k])
        for m in raw.spec.modalities:
            if m.name not in modality_sets[k]:
                ctr.x[:, list(m.channels), :] = 0.0
                cte.x[:, list(m.channels), :] = 0.0
        clients_train.append(ctr)
        clients_test.append(cte)
    fd = FederatedData(raw.spec, clients_train, clients_test, server,
                       [tuple(m for m in names if m in s) for s in modality_sets])
    fd.fingerprint = fingerprint([*clients_train, *clients_test, server])
    return fd
