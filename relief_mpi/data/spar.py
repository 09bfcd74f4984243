"""SPAR smartwatch shoulder-exercise data (10-subject subset), from its lossless npz.

File: spar_watch_10subj.npz (see ../shared/data/spar-watch-10subj/README in the lab checkout):
`signals` (T, 6) float64 = ax, ay, az (g), wx, wy, wz (rad/s) of one wrist-worn watch;
`series_offsets` (141,); per series `y` (0..6), `subject` (1..10), `side` (1 right, 0 left);
`X_labels`, `y_labels`; `sample_rate_hz` = 50. Loaded with allow_pickle=False.
One Recording per series (140), with the series' subject id: a subject's clients get all of
that subject's series. Modalities by type: acc (3), gyro (3). By position there is a single
modality, `wrist` (all 6 channels), since one device carries both sensors: position grouping
makes every client's modality set the same, so it only makes sense with a fleet whose tiers
list `wrist` (the default fleet names sensor types).
Protocol "paper": each subject's series are z-scored together (moments over all of that subject's
samples, as one recording would be), after decimation when downsampling; windows stay within a
series.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data.base import DatasetSpec, RawDataset, Recording, make_spec
from relief_mpi.data.files import DataFile, announce, check_sha256, find_files, folder_file
from relief_mpi.data.preprocess import paper_subject_series
from relief_mpi.data.windows import downsample
from relief_mpi.errors import ReliefError

__all__ = ["FILE_NAME", "NAME", "POSITION_ORDER", "TYPE_ORDER", "load", "locate", "read"]

NAME = "spar"
FILE_NAME = "spar_watch_10subj.npz"
TYPE_ORDER = ("acc", "gyro")
POSITION_ORDER = ("wrist",)
_ARRAYS = ("signals", "series_offsets", "y", "subject", "X_labels", "y_labels", "sample_rate_hz")


def locate(path: Path) -> DataFile:
    """The npz: the path itself, or spar_watch_10subj.npz in (or under) the folder or zip."""
    if path.is_file() and path.suffix.lower() == ".npz":
        return folder_file(path)
    found = find_files(path, r"spar_watch_10subj\.npz")
    if not found:
        raise ReliefError(f"{path}: no {FILE_NAME} found (give the spar-watch-10subj folder or the npz file)")
    return found[0][1]


def _channel(name: str, f: DataFile) -> tuple[str, str, str]:
    if name[:1].lower() == "a":
        return (f"acc_{name[1:]}", "acc", "wrist")
    if name[:1].lower() in ("w", "g"):
        return (f"gyro_{name[1:]}", "gyro", "wrist")
    raise ReliefError(f"{f.display}: channel label {name!r} in X_labels is neither acc (a*) nor gyro (w*)")


def read(path: Path, cfg: DataConfig) -> tuple[DatasetSpec, Iterator[Recording], list[str]]:
    """The spec, a generator of the series as Recordings (preprocessed per cfg) and the notes (a
    checksum mismatch); the npz is checked for consistency before any series is made."""
    f = locate(path)
    data, digest = f.read()
    notes: list[str] = []
    note = check_sha256(NAME, f, digest)
    if note:
        notes.append(note)
        announce(note)
    z, arrs = _open_npz(f, data)
    sig, off = arrs["signals"], arrs["series_offsets"].astype(np.int64)
    y, subj = arrs["y"].astype(np.int64), arrs["subject"].astype(np.int64)
    classes = _check_arrays(f, arrs, sig, off, y, subj)
    channels = tuple(_channel(str(c), f) for c in arrs["X_labels"])
    rate = float(arrs["sample_rate_hz"])
    sp = make_spec(NAME, classes, channels, rate, cfg.modality_by, TYPE_ORDER, POSITION_ORDER)
    if cfg.downsample > 1:
        sp = replace(sp, sample_rate_hz=rate / cfg.downsample)
    n = len(y)
    side = z["side"].astype(np.int64) if "side" in z.files else np.full(n, -1)

    def series(i: int) -> Recording:
        a, b = int(off[i]), int(off[i + 1])
        src = f"{f.display}[series {i}: subject {subj[i]}, {'right' if side[i] == 1 else 'left'}, {classes[y[i]]}]"
        return Recording(int(subj[i]), sig[a:b].astype(np.float32), np.full(b - a, y[i], np.int64), src)

    recs = _paper_series(series, subj, cfg.downsample, cfg.zscore_dtype) if cfg.protocol == "paper" else \
        (downsample(series(i), cfg.downsample) for i in range(n))
    return sp, recs, notes


def _open_npz(f: DataFile, data: bytes) -> tuple[np.lib.npyio.NpzFile, dict[str, np.ndarray]]:
    """The npz (for its optional arrays) and its required arrays; one error line if it is unreadable."""
    try:
        z = np.load(io.BytesIO(data), allow_pickle=False)
        return z, {k: z[k] for k in _ARRAYS}
    except KeyError as e:
        raise ReliefError(f"{f.display}: array {e} missing (expected {', '.join(_ARRAYS)})") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ReliefError(f"{f.display}: not a readable SPAR npz ({e})") from None


def _check_arrays(f: DataFile, arrs: dict[str, np.ndarray], sig: np.ndarray, off: np.ndarray, y: np.ndarray,
                  subj: np.ndarray) -> tuple[str, ...]:
    """The class names, once signals, series offsets, labels and subjects are known to fit together
    (so every series can be cut and labelled)."""
    n = len(y)
    if sig.ndim != 2 or sig.shape[1] != len(arrs["X_labels"]):
        raise ReliefError(f"{f.display}: signals shape {sig.shape} does not match X_labels {list(arrs['X_labels'])}")
    if off.shape != (n + 1,) or off[0] != 0 or off[-1] != len(sig) or (np.diff(off) < 0).any() or len(subj) != n:
        raise ReliefError(f"{f.display}: series_offsets / y / subject are inconsistent with signals")
    classes = tuple(str(s) for s in arrs["y_labels"])
    if n and (y.min() < 0 or y.max() >= len(classes)):
        raise ReliefError(f"{f.display}: y holds {y.min()}..{y.max()} but y_labels has {len(classes)} classes")
    if not np.isfinite(sig).all():
        raise ReliefError(f"{f.display}: signals hold NaN or inf")
    return classes


def _paper_series(series: Callable[[int], Recording], subj: np.ndarray, factor: int,
                  zscore_dtype: str = "float64") -> Iterator[Recording]:
    """Protocol "paper": each subject's series z-scored together, yielded in series order."""
    done: dict[int, Recording] = {}
    for s in np.unique(subj):
        idx = np.flatnonzero(subj == s)
        normed = paper_subject_series([series(int(i)) for i in idx], factor, zscore_dtype)
        done.update(zip(idx.tolist(), normed, strict=True))
    for i in range(len(subj)):
        yield done.pop(i)


def load(path: Path, cfg: DataConfig) -> RawDataset:
    """All 140 series in memory (no cache; see registry.load_raw for the cached path)."""
    sp, recs, notes = read(path, cfg)
    return RawDataset(sp, list(recs), notes=tuple(notes))
