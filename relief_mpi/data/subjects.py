"""partition=subject: one client per subject, in sorted subject order, with three test splits.

- split "paper" / "paper-streams" / "file": each client's windows are split at random (seeded), a
  test_fraction share to test, and all clients' test windows pooled into one test set, as the
  authors did; "paper" draws as their code does (one generator), "paper-streams" one stream per
  subject, "file" takes a split from a file (data/split.py). With overlapping windows (stride 50
  of 256) most test windows share samples with training windows of the same subject: the test
  score is optimistic (docs/data.md, "Three test splits").
- split "time": the last test_fraction of every label run is test, and no window crosses a cut
  (windows.index_recordings): leak-free in time, every class on both sides.
- split "subject": whole subjects are held out (seeded choice); they are not clients, and their
  windows are the test set: the question "does it work for a new person".

Windows are pure (protocol ours) or majority-labelled (protocol paper); normalisation is the
paper's per-subject z-score (already in the recordings) or, for protocol ours, training-window
statistics as everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data.base import FederatedData, RawDataset, WindowSet
from relief_mpi.data.protocol import RANDOM_SPLITS, n_test_subjects
from relief_mpi.data.split import SubjectSplit, check_split, draw_paper, draw_streams, read_split_file
from relief_mpi.data.stats import data_fingerprint, server_mask, store_of, training_stats
from relief_mpi.data.windows import WindowIndex, WindowTable, cut_windows, index_recordings, window_geometry
from relief_mpi.errors import ReliefError

__all__ = ["SubjectIndex", "apply_split", "build_by_subject", "client_count_error", "draw_split", "held_out_subjects",
           "random_split", "subject_index", "subject_rows"]


def held_out_subjects(subjects: Sequence[int], test_subjects: int, seed: int) -> tuple[int, ...]:
    """The subjects split=subject keeps for testing: a seeded draw, returned sorted."""
    n = n_test_subjects(len(subjects), test_subjects)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B7]))
    return tuple(sorted(int(s) for s in rng.choice(np.asarray(sorted(subjects)), size=n, replace=False)))


def random_split(table: WindowTable, subjects: Sequence[int], fraction: float,
                 seed: int) -> tuple[WindowTable, WindowTable]:
    """The paper's split drawn with one stream per subject (split=paper-streams; data/split.py)."""
    rows = subject_rows(table, subjects)
    return apply_split(table, rows, draw_streams([(int(s), len(r)) for s, r in zip(subjects, rows, strict=True)],
                                                 fraction, seed))


def subject_rows(table: WindowTable, subjects: Sequence[int]) -> list[np.ndarray]:
    """Each subject's rows of `table`, in window order (the numbering a split uses)."""
    return [np.flatnonzero(table.subject == s) for s in subjects]


def apply_split(table: WindowTable, rows: Sequence[np.ndarray],
                splits: Sequence[SubjectSplit]) -> tuple[WindowTable, WindowTable]:
    """Train and test tables of a split: each subject's windows in window order, subject by subject."""
    tr, te = [], []
    for r, sp in zip(rows, splits, strict=True):
        is_test = np.zeros(len(r), bool)
        is_test[sp.test] = True
        te.append(r[is_test])
        tr.append(r[~is_test])
    cat = np.concatenate
    return table.take(cat(tr) if tr else np.zeros(0, np.int64)), table.take(cat(te) if te else np.zeros(0, np.int64))


def draw_split(cfg: DataConfig, table: WindowTable, subjects: Sequence[int], seed: int) -> list[SubjectSplit]:
    """The per-subject test windows of split paper, paper-streams or file (data/split.py)."""
    counts = [(int(s), int(np.count_nonzero(table.subject == s))) for s in subjects]
    if cfg.split == "paper":
        return draw_paper(counts, cfg.test_fraction, seed)
    if cfg.split == "paper-streams":
        return draw_streams(counts, cfg.test_fraction, seed)
    if not cfg.split_file:
        raise ReliefError("split=file needs a split file (--split-file FILE)")
    return check_split(read_split_file(cfg.split_file), counts)


def client_count_error(name: str, n_subjects: int, n_held: int, n_clients: int) -> ReliefError:
    n_train = n_subjects - n_held
    held = f", {n_held} held out for testing (split=subject)" if n_held else ""
    return ReliefError(f"partition=subject makes one client per subject: {name} has {n_subjects} subjects{held}, "
                       f"so the run needs {n_train} clients, not {n_clients}; start it with -n {n_train + 1} "
                       f"({n_train} clients + the server), or --clients {n_train} with --transport inprocess")


@dataclass
class SubjectIndex:
    """The windows of every subject that has one, and who is a client and who is held out."""

    index: WindowIndex
    clients: tuple[int, ...]  # sorted: client k holds subject clients[k]
    held: tuple[int, ...]  # split=subject: the test subjects (sorted), else empty
    notes: tuple[str, ...]


def subject_index(cfg: DataConfig, seed: int, raw: RawDataset) -> SubjectIndex:
    """Index the windows (labels only, nothing cut) and decide the clients: how many a
    partition=subject run needs is len(subject_index(...).clients)."""
    spec = raw.spec
    store = store_of(raw)
    length, hop = window_geometry(spec.sample_rate_hz, cfg.window_s, cfg.overlap, cfg.window, cfg.stride)
    try:
        ix = index_recordings(store, length, hop, cfg.protocol == "paper",
                              cfg.test_fraction if cfg.split == "time" else None)
    except ValueError as e:
        raise ReliefError(f"dataset {spec.name}: {e}") from None
    every = np.concatenate([ix.train.subject, ix.test.subject])
    subjects = sorted(int(s) for s in np.unique(every))
    all_subjects = sorted({store.subject(r) for r in range(store.n_recordings)})
    notes = list(raw.notes)
    empty = [s for s in all_subjects if s not in subjects]
    if empty:
        notes.append(f"subjects without a single {length}-sample window left out: {', '.join(map(str, empty))}")
    if not subjects:
        raise ReliefError(f"dataset {spec.name}: recordings too short for {length}-sample windows")
    held: tuple[int, ...] = ()
    if cfg.split == "subject":
        if len(subjects) < 2:
            raise ReliefError(f"split=subject needs at least 2 subjects; {spec.name} has {len(subjects)}")
        held = held_out_subjects(subjects, cfg.test_subjects, seed)
    return SubjectIndex(ix, tuple(s for s in subjects if s not in held), held, tuple(notes))


def build_by_subject(cfg: DataConfig, seed: int, modality_sets: Sequence[tuple[str, ...]],
                     raw: RawDataset) -> FederatedData:
    """FederatedData with client k = the k-th subject in sorted order (see the module docstring)."""
    spec = raw.spec
    store = store_of(raw)
    paper = cfg.protocol == "paper"
    si = subject_index(cfg, seed, raw)
    ix, clients, held, notes = si.index, list(si.clients), si.held, si.notes
    splits: list[SubjectSplit] = []
    length, hop = ix.length, ix.hop
    subjects = sorted([*clients, *held])
    if len(modality_sets) != len(clients):
        raise client_count_error(spec.name, len(subjects), len(held), len(modality_sets))
    if cfg.split == "time":
        train_t, test_t = ix.train, ix.test
    elif cfg.split in RANDOM_SPLITS:
        splits = draw_split(cfg, ix.train, clients, seed)
        train_t, test_t = apply_split(ix.train, subject_rows(ix.train, clients), splits)
    else:
        is_test = np.isin(ix.train.subject, held)
        train_t, test_t = ix.train.take(np.flatnonzero(~is_test)), ix.train.take(np.flatnonzero(is_test))
    if len(test_t) == 0:
        raise ReliefError(f"dataset {spec.name}: split={cfg.split} leaves no test window of {length} samples "
                          f"(recordings or label runs too short)")
    mean, std = (None, None) if paper else training_stats(store, train_t, length)

    def cutter(rec: np.ndarray, start: np.ndarray) -> np.ndarray:
        return cut_windows(store, rec, start, length, mean, std)

    shape = (spec.n_channels, length)
    train = WindowSet(None, train_t.y, train_t.subject, train_t.rec, train_t.start, cutter, shape=shape)
    test = WindowSet(None, test_t.y, test_t.subject, test_t.rec, test_t.start, cutter, shape=shape)
    smask = server_mask(train.y, len(spec.classes), cfg.server_fraction, seed)
    server = train.take(np.flatnonzero(smask))
    pool = train.take(np.flatnonzero(~smask))
    names = spec.modality_names()
    clients_train, clients_test, tr_idx, te_idx = [], [], [], []
    for k, s in enumerate(clients):
        absent = tuple(c for m in spec.modalities if m.name not in modality_sets[k] for c in m.channels)
        tr_idx.append(np.flatnonzero(pool.subject == s))
        te_idx.append(np.flatnonzero(test.subject == s))
        if len(tr_idx[-1]) == 0:
            raise ReliefError(f"dataset {spec.name}: subject {s} has no training window under split={cfg.split}")
        clients_train.append(pool.take(tr_idx[-1]).without(absent))
        clients_test.append(test.take(te_idx[-1]).without(absent))
    sets = [tuple(m for m in names if m in s) for s in modality_sets]
    stats = () if mean is None or std is None else (mean, std)
    arrays = (*stats, train_t.rec, train_t.start, test_t.rec, test_t.start, np.flatnonzero(smask), *tr_idx, *te_idx)
    fp = data_fingerprint(store, spec, cfg, length, sets, arrays, [hop, clients, list(held), cfg.server_fraction])
    return FederatedData(spec, clients_train, clients_test, server, sets, fp, length, tuple(notes),
                         pooled_test=test, client_subjects=tuple(clients), split=tuple(splits))
