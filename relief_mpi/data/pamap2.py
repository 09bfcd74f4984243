"""PAMAP2 (UCI id 231) in its original layout: PAMAP2_Dataset/Protocol/subject10{1..9}.dat.

Space-separated, 54 columns, 100 Hz, NaN where a sample is missing:
  1 timestamp (s), 2 activityID, 3 heart rate (bpm, ~9 Hz, NaN in between),
  4-20 hand IMU, 21-37 chest IMU, 38-54 ankle IMU, each: temperature, acc +-16 g x3,
  acc +-6 g x3, gyro x3, mag x3, orientation x4.
Kept: heart rate, and per IMU temperature, acc16g, gyro, mag (31 channels). Dropped: timestamp,
orientation (invalid in this data set, says its readme) and acc6g (saturates in fast movements;
the readme recommends the 16 g one). activityID 0 (transient) is dropped (label -1); protocol
activities 1..24 map to classes 0..11; ids of the optional activities (9, 10, 11, 18, 19, 20)
are dropped too.
Cleaning: heart rate forward-filled (back-filled before its first reading); IMU NaN gaps
linearly interpolated; samples inside a gap longer than MAX_GAP_S are also dropped (label -1).
Modalities by type: acc (9), gyro (9), mag (9), physio = heart rate + 3 temperatures (4).
By position: hand (10), chest (heart rate + 10), ankle (10).

Protocol "paper" (the authors' preprocessing, docs/design.md section 0): subjects 101-108 only
(109 excluded), 28 channels: heart rate as modality `hr` (1) and per IMU acc16g, gyro, mag (no
temperatures); no interpolation and no gap dropping: every second sample kept (100 -> 50 Hz with
downsample 2), NaNs forward-filled per channel, per-subject z-score (files.read_subjects).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data.base import DatasetSpec, RawDataset, Recording, make_spec
from relief_mpi.data.files import (
    DataFile,
    by_subject,
    find_files,
    load_all,
    parse_table,
    read_subjects,
    row_error,
)
from relief_mpi.errors import ReliefError

__all__ = ["ACTIVITIES", "CLASSES", "FILE_PATTERN", "LAYOUT", "MAX_GAP_S", "NAME", "N_COLUMNS", "N_SUBJECTS",
           "OPTIONAL_ACTIVITIES", "PAPER_SUBJECTS", "PAPER_TYPE_ORDER", "POSITION_ORDER", "RATE_HZ", "TYPE_ORDER",
           "URL", "clean", "load", "locate", "parse", "parse_paper", "read", "source_columns", "spec"]

NAME = "pamap2"
RATE_HZ = 100.0
N_COLUMNS = 54
MAX_GAP_S = 1.0
ACTIVITIES = {1: "lying", 2: "sitting", 3: "standing", 4: "walking", 5: "running", 6: "cycling",
              7: "nordic-walking", 12: "ascending-stairs", 13: "descending-stairs", 16: "vacuum-cleaning",
              17: "ironing", 24: "rope-jumping"}
OPTIONAL_ACTIVITIES = (9, 10, 11, 18, 19, 20)
CLASSES = tuple(ACTIVITIES.values())
_CLASS_OF = {a: i for i, a in enumerate(ACTIVITIES)}
TYPE_ORDER = ("acc", "gyro", "mag", "physio")
POSITION_ORDER = ("hand", "chest", "ankle")
_IMU_BASE = {"hand": 3, "chest": 20, "ankle": 37}
FILE_PATTERN = r"subject(10\d)\.dat"
LAYOUT = "PAMAP2: timestamp, activityID, heart rate + 3 IMUs x 17 columns, space-separated"
URL = "https://archive.ics.uci.edu/static/public/231/pamap2+physical+activity+monitoring.zip"
N_SUBJECTS = 9


def _channel_table() -> tuple[tuple[tuple[str, str, str], ...], tuple[int, ...]]:
    chans: list[tuple[str, str, str]] = [("heart_rate", "physio", "chest")]
    cols = [2]
    for pos, b in _IMU_BASE.items():
        chans.append((f"{pos}_temp", "physio", pos))
        cols.append(b)
        for kind, off in (("acc", 1), ("gyro", 7), ("mag", 10)):
            for i, ax in enumerate("xyz"):
                chans.append((f"{pos}_{kind}_{ax}", kind, pos))
                cols.append(b + off + i)
    return tuple(chans), tuple(cols)


CHANNELS, COLUMNS = _channel_table()


def _paper_channel_table() -> tuple[tuple[tuple[str, str, str], ...], tuple[int, ...]]:
    chans: list[tuple[str, str, str]] = [("heart_rate", "hr", "chest")]
    cols = [2]
    for pos, b in _IMU_BASE.items():
        for kind, off in (("acc", 1), ("gyro", 7), ("mag", 10)):
            for i, ax in enumerate("xyz"):
                chans.append((f"{pos}_{kind}_{ax}", kind, pos))
                cols.append(b + off + i)
    return tuple(chans), tuple(cols)


PAPER_CHANNELS, PAPER_COLUMNS = _paper_channel_table()
PAPER_TYPE_ORDER = ("acc", "gyro", "mag", "hr")
PAPER_SUBJECTS = range(101, 109)  # the authors exclude subject 109


def spec(modality_by: str = "type", protocol: str = "ours") -> DatasetSpec:
    if protocol == "paper":
        return make_spec(NAME, CLASSES, PAPER_CHANNELS, RATE_HZ, modality_by, PAPER_TYPE_ORDER, POSITION_ORDER)
    return make_spec(NAME, CLASSES, CHANNELS, RATE_HZ, modality_by, TYPE_ORDER, POSITION_ORDER)


def source_columns(protocol: str = "ours") -> tuple[int, ...]:
    """The file column (0-based) of every channel, in channel order."""
    return PAPER_COLUMNS if protocol == "paper" else COLUMNS


def locate(path: Path, protocol: str = "ours") -> tuple[list[tuple[int, DataFile]], list[str]]:
    """(subject, file) pairs in subject order, and notes; protocol "paper" leaves out subject 109."""
    found = find_files(path, FILE_PATTERN, prefer_dir="Protocol", avoid_dirs=("Optional",))
    if not found:
        raise ReliefError(f"{path}: no PAMAP2 files found (expected PAMAP2_Dataset/Protocol/subject101.dat ... "
                          f"subject109.dat, or the UCI zip); see `relief-mpi data fetch pamap2 --help`")
    if protocol != "paper":
        return by_subject(found, range(101, 101 + N_SUBJECTS), lambda s: f"subject{s}.dat")
    kept = [(m, f) for m, f in found if int(m.group(1)) in PAPER_SUBJECTS]
    files, notes = by_subject(kept, PAPER_SUBJECTS, lambda s: f"subject{s}.dat")
    if len(kept) < len(found):
        notes.append("subject109.dat left out (protocol paper uses subjects 101-108, as the authors did)")
    if not files:
        raise ReliefError(f"{path}: no PAMAP2 files of subjects 101-108 found (protocol paper excludes 109)")
    return files, notes


def _fill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs in a 1-D array, back-fill the leading ones."""
    ok = ~np.isnan(x)
    if not ok.any():
        return x
    idx = np.where(ok, np.arange(len(x)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = x[idx]
    out[: int(np.argmax(ok))] = x[int(np.argmax(ok))]
    return out


def _nan_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    if not mask.any():
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def clean(arr: np.ndarray, f: DataFile) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(signals (T, 31) float32, labels (T,), counts of what was fixed) from a raw (T, 54) table."""
    act = arr[:, 1]
    labels = np.full(len(act), -1, np.int64)
    for a, c in _CLASS_OF.items():
        labels[act == a] = c
    x = arr[:, list(COLUMNS)].copy()
    stats = {"hr_filled": int(np.isnan(x[:, 0]).sum()), "imu_interpolated": 0, "gap_dropped": 0}
    x[:, 0] = _fill(x[:, 0])
    if np.isnan(x[:, 0]).all():
        raise ReliefError(f"{f.display}: heart rate (column 3) has no value at all")
    imu = x[:, 1:]
    nan = np.isnan(imu)
    if nan.any():
        t = np.arange(len(imu))
        for j in np.flatnonzero(nan.any(axis=0)):
            ok = ~nan[:, j]
            if not ok.any():
                raise ReliefError(f"{f.display}: column {COLUMNS[j + 1] + 1} ({CHANNELS[j + 1][0]}) "
                                  "has no value at all")
            imu[~ok, j] = np.interp(t[~ok], t[ok], imu[ok, j])
        stats["imu_interpolated"] = int(nan.sum())
        max_gap = int(round(MAX_GAP_S * RATE_HZ))
        for a, b in _nan_runs(nan.any(axis=1)):
            if b - a > max_gap:
                labels[a:b] = -1
                stats["gap_dropped"] += int(b - a)
    return x.astype(np.float32), labels, stats


def _labels_and_check(f: DataFile, data: bytes, arr: np.ndarray) -> np.ndarray:
    """Class index per sample (-1 for transients and optional activities); unknown ids are errors."""
    act = arr[:, 1]
    bad = np.flatnonzero(~np.isfinite(act) | (act != np.round(act)) | (act < 0))
    if bad.size:
        raise row_error(f, data, int(bad[0]), f"activityID {float(act[bad[0]]):g} is not a non-negative integer")
    known = set(_CLASS_OF) | {0, *OPTIONAL_ACTIVITIES}
    unknown = np.flatnonzero(~np.isin(act, list(known)))
    if unknown.size:
        raise row_error(f, data, int(unknown[0]), f"activityID {int(act[unknown[0]])} is not a PAMAP2 activity")
    labels = np.full(len(act), -1, np.int64)
    for a, c in _CLASS_OF.items():
        labels[act == a] = c
    return labels


def parse(subject: int, f: DataFile, data: bytes) -> Recording:
    """One subject's file, cleaned our way: 31 channels, gaps interpolated, long gaps dropped."""
    arr = parse_table(f, data, N_COLUMNS, LAYOUT)
    _labels_and_check(f, data, arr)
    signals, labels, _ = clean(arr, f)
    return Recording(subject, signals, labels, f.display)


def parse_paper(subject: int, f: DataFile, data: bytes) -> Recording:
    """One subject's file as the authors read it: 28 channels, NaNs kept for the forward-fill."""
    arr = parse_table(f, data, N_COLUMNS, LAYOUT)
    labels = _labels_and_check(f, data, arr)
    return Recording(subject, arr[:, list(PAPER_COLUMNS)].astype(np.float32), labels, f.display)


def read(path: Path, cfg: DataConfig) -> tuple[DatasetSpec, Iterator[Recording], list[str]]:
    """Spec, a generator of recordings (one file at a time) and notes filled as it runs."""
    paper = cfg.protocol == "paper"
    return read_subjects(path, cfg, lambda p: locate(p, cfg.protocol), parse_paper if paper else parse,
                         spec(cfg.modality_by, cfg.protocol), RATE_HZ)


def load(path: Path, cfg: DataConfig) -> RawDataset:
    """Every subject's recording in memory (no cache; see registry.load_raw for the cached path)."""
    return load_all(read(path, cfg))
