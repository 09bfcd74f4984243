"""MHEALTH (UCI id 319) in its original layout: MHEALTHDATASET/mHealth_subject{1..10}.log.

Whitespace-separated, 24 columns, 50 Hz, one file per subject:
  1-3 chest acc, 4-5 ECG (lead 1, lead 2), 6-8 left-ankle acc, 9-11 left-ankle gyro,
  12-14 left-ankle mag, 15-17 right-lower-arm acc, 18-20 arm gyro, 21-23 arm mag, 24 label
  (0 = null class, dropped; 1..12 -> classes 0..11).
Modalities by sensor type: acc (9 channels), gyro (6), mag (6), ecg (2);
by body position: chest (acc + ECG, 5), ankle (9), arm (9).
The by-type grouping is exactly the published modality map (acc = columns 0-2, 5-7, 14-16, ...),
so protocol "paper" reads the same channels; its per-subject preprocessing is in
files.read_subjects.
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
from relief_mpi.data.synthetic import CHANNELS as _SYN_CHANNELS
from relief_mpi.errors import ReliefError

__all__ = ["CHANNELS", "CLASSES", "FILE_PATTERN", "LAYOUT", "NAME", "N_COLUMNS", "N_SUBJECTS", "POSITION_ORDER",
           "RATE_HZ", "TYPE_ORDER", "URL", "load", "locate", "parse", "read", "source_columns", "spec"]

NAME = "mhealth"
RATE_HZ = 50.0
N_COLUMNS = 24
CLASSES = ("standing", "sitting", "lying", "walking", "climbing-stairs", "waist-bends", "arm-elevation",
           "crouching", "cycling", "jogging", "running", "jump-front-back")
# Same channel table as the synthetic dataset, which mirrors MHEALTH column by column.
CHANNELS = _SYN_CHANNELS
TYPE_ORDER = ("acc", "gyro", "mag", "ecg")
POSITION_ORDER = ("chest", "ankle", "arm")
FILE_PATTERN = r"mHealth_subject(\d+)\.log"
LAYOUT = "MHEALTH: 23 sensor columns + label, whitespace-separated"
URL = "https://archive.ics.uci.edu/static/public/319/mhealth+dataset.zip"
N_SUBJECTS = 10


def spec(modality_by: str = "type") -> DatasetSpec:
    return make_spec(NAME, CLASSES, CHANNELS, RATE_HZ, modality_by, TYPE_ORDER, POSITION_ORDER)


def source_columns(protocol: str = "ours") -> tuple[int, ...]:
    """The file column (0-based) of every channel, in channel order."""
    return tuple(range(23))


def locate(path: Path) -> tuple[list[tuple[int, DataFile]], list[str]]:
    """(subject, file) pairs in subject order, and notes (e.g. subjects missing)."""
    found = find_files(path, FILE_PATTERN, prefer_dir="MHEALTHDATASET")
    if not found:
        raise ReliefError(f"{path}: no MHEALTH files found (expected MHEALTHDATASET/mHealth_subject1.log ... "
                          f"mHealth_subject10.log, or the UCI zip); see `relief-mpi data fetch mhealth --help`")
    return by_subject(found, range(1, N_SUBJECTS + 1), lambda s: f"mHealth_subject{s}.log")


def parse(subject: int, f: DataFile, data: bytes) -> Recording:
    """One subject's file: 23 sensor channels as they are, labels 1..12 -> 0..11, null -> -1."""
    arr = parse_table(f, data, N_COLUMNS, LAYOUT)
    lab = arr[:, 23]
    bad = np.flatnonzero(~np.isfinite(lab) | (lab != np.round(lab)) | (lab < 0) | (lab > len(CLASSES)))
    if bad.size:
        raise row_error(f, data, int(bad[0]),
                        f"label {float(arr[bad[0], 23]):g} is not an activity id 0..{len(CLASSES)}")
    bad = np.flatnonzero(~np.isfinite(arr[:, :23]).all(axis=1))
    if bad.size:
        raise row_error(f, data, int(bad[0]), "missing (NaN) sensor value; MHEALTH files have none")
    labels = lab.astype(np.int64) - 1  # null class 0 -> -1 (dropped)
    return Recording(subject, arr[:, :23].astype(np.float32), labels, f.display)


def read(path: Path, cfg: DataConfig) -> tuple[DatasetSpec, Iterator[Recording], list[str]]:
    """Spec, a generator of recordings (one file at a time) and notes filled as it runs."""
    return read_subjects(path, cfg, locate, parse, spec(cfg.modality_by), RATE_HZ)


def load(path: Path, cfg: DataConfig) -> RawDataset:
    """Every subject's recording in memory (no cache; see registry.load_raw for the cached path)."""
    return load_all(read(path, cfg))
