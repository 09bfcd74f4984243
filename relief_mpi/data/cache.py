"""The prepared-data cache: parse a dataset's text files once, then every rank reads only the
slices it needs from HDF5.

Layout (one directory, default ~/.cache/relief-mpi, or $RELIEF_MPI_CACHE_DIR; set it to `off`
to disable caching):
  <dataset>-<key>.h5          cleaned recordings: signals (N, C) float32, labels, offsets, subjects;
                              spec, notes and the recordings' content hash as attributes.
                              key = hash of the source files' identity (names, sizes, mtimes or zip
                              CRCs), the dataset, the downsampling factor and the format version.
  <dataset>-<key>-w<wkey>.npz window index (recording, start, label, subject for train and test)
                              and normalisation statistics; wkey = hash of window_s, overlap,
                              test_fraction.
  <dataset>-<key>-s<skey>.npz normalisation statistics of any other set of training windows
                              (skey = hash of their positions); the index itself is cheap.
                              key also covers the protocol when it is not "ours" (the paper's
                              preprocessing changes the stored signals), and the z-score's
                              precision when it is not float64 (--rng authors: float32).
Both are written to a temporary name and renamed into place, under an exclusive file lock, so
concurrent ranks (or runs) never see a half-written file and only one of them does the work;
the others wait on the lock (a blocking call, no spinning) and then read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from relief_mpi.data import simulator
from relief_mpi.data.base import DatasetSpec, Recording
from relief_mpi.data.windows import WindowIndex, WindowTable, channel_stats, index_windows

__all__ = ["ENV", "FORMAT", "H5Store", "builtin_sessions", "cache_root", "file_lock", "key_of", "open_store",
           "train_stats", "window_index", "write_store"]

FORMAT = 1
ENV = "RELIEF_MPI_CACHE_DIR"


def cache_root() -> Path | None:
    """The cache directory, or None when caching is off or impossible here."""
    env = os.environ.get(ENV)
    if env is not None and env.strip().lower() in ("", "off", "none", "0", "no"):
        return None
    if env:
        root = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "relief-mpi"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return root if os.access(root, os.W_OK) else None


def key_of(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (blocking wait); a no-op where flock is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _tmp_near(path: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache should be readable by others
    return Path(tmp)


class H5Store:
    """Read-only RecordingStore over a prepared cache file; reads slices on demand."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        try:
            self._f = h5py.File(path, "r", locking=False)
        except TypeError:  # pragma: no cover - old h5py
            self._f = h5py.File(path, "r")
        f = self._f
        if int(f.attrs["format"]) != FORMAT:
            raise KeyError("format")
        self.spec_dict = json.loads(str(f.attrs["spec"]))
        self.spec = DatasetSpec.from_json_dict(self.spec_dict, "type")
        self.notes = tuple(json.loads(str(f.attrs["notes"])))
        self.sources = tuple(json.loads(str(f.attrs["sources"])))
        self._hash = str(f.attrs["content_hash"])
        self.offsets = f["offsets"][()].astype(np.int64)
        self.subjects = f["subjects"][()].astype(np.int64)
        self._labels = f["labels"][()].astype(np.int64)
        self._signals = f["signals"]

    @property
    def n_recordings(self) -> int:
        return len(self.subjects)

    def subject(self, r: int) -> int:
        return int(self.subjects[r])

    def labels(self, r: int) -> np.ndarray:
        return self._labels[self.offsets[r]:self.offsets[r + 1]]

    def read(self, r: int, start: int, stop: int) -> np.ndarray:
        a = int(self.offsets[r])
        return self._signals[a + start:a + stop]

    def content_hash(self) -> str:
        return self._hash

    def load_recordings(self) -> list[Recording]:
        return [Recording(self.subject(r), self.read(r, 0, int(self.offsets[r + 1] - self.offsets[r])),
                          self.labels(r).copy(), self.sources[r]) for r in range(self.n_recordings)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._f.close()


def write_store(path: Path, spec: DatasetSpec, recordings: Iterator[Recording], notes: list[str]) -> None:
    """Stream recordings into a new cache file (temp name, then atomic rename)."""
    import h5py

    tmp = _tmp_near(path, ".h5")
    h = hashlib.sha256()
    try:
        with h5py.File(tmp, "w") as f:
            n_ch = spec.n_channels
            sig = f.create_dataset("signals", (0, n_ch), np.float32, maxshape=(None, n_ch),
                                   chunks=(8192, n_ch))
            lab = f.create_dataset("labels", (0,), np.int16, maxshape=(None,), chunks=(65536,))
            offsets, subjects, sources = [0], [], []
            for rec in recordings:
                s = np.ascontiguousarray(rec.signals, np.float32)
                labels = np.ascontiguousarray(rec.labels, np.int64)
                h.update(np.int64(rec.subject).tobytes())
                h.update(s.tobytes())
                h.update(labels.tobytes())
                n0, n = offsets[-1], len(labels)
                sig.resize(n0 + n, axis=0)
                sig[n0:n0 + n] = s
                lab.resize(n0 + n, axis=0)
                lab[n0:n0 + n] = labels.astype(np.int16)
                offsets.append(n0 + n)
                subjects.append(int(rec.subject))
                sources.append(rec.source)
            f.create_dataset("offsets", data=np.asarray(offsets, np.int64))
            f.create_dataset("subjects", data=np.asarray(subjects, np.int64))
            f.attrs["format"] = FORMAT
            f.attrs["spec"] = json.dumps(spec.to_json_dict())
            f.attrs["notes"] = json.dumps(list(notes))
            f.attrs["sources"] = json.dumps(sources)
            f.attrs["content_hash"] = h.hexdigest()
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def window_index(store: H5Store, window_s: float, overlap: float,
                 test_fraction: float) -> tuple[WindowIndex, np.ndarray, np.ndarray]:
    """The window index and training statistics of a cached store, computed once per settings."""
    wkey = key_of([FORMAT, window_s, overlap, test_fraction])
    path = store.path.with_name(f"{store.path.stem}-w{wkey}.npz")

    def build() -> tuple[WindowIndex, np.ndarray, np.ndarray]:
        ix = index_windows(store, window_s, overlap, test_fraction)
        mean, std = channel_stats(store, ix.train, ix.length)
        tmp = _tmp_near(path, ".npz")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, length=ix.length, hop=ix.hop, mean=mean, std=std,
                         **{f"{side}_{c}": getattr(getattr(ix, side), c)
                            for side in ("train", "test") for c in ("rec", "start", "y", "subject")})
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return ix, mean, std

    got = _read_or_build(path, lambda: _read_index(path), build)
    assert got is not None  # build() always returns the index
    return got


def train_stats(store: H5Store, table: WindowTable, length: int) -> tuple[np.ndarray, np.ndarray]:
    """channel_stats of a cached store's training windows, computed once per set of windows (it
    reads every training sample, which is what the cache saves the other ranks from)."""
    h = hashlib.sha256()
    for a in (table.rec, table.start):
        h.update(np.ascontiguousarray(a, np.int64).tobytes())
    path = store.path.with_name(f"{store.path.stem}-s{key_of([FORMAT, length, h.hexdigest()])}.npz")

    def read() -> tuple[np.ndarray, np.ndarray] | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["mean"], z["std"]
        except (OSError, KeyError, ValueError):
            return None

    def build() -> tuple[np.ndarray, np.ndarray]:
        mean, std = channel_stats(store, table, length)
        tmp = _tmp_near(path, ".npz")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=mean, std=std)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return mean, std

    got = _read_or_build(path, read, build)
    assert got is not None
    return got


def _read_index(path: Path) -> tuple[WindowIndex, np.ndarray, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            def table(side: str) -> WindowTable:
                return WindowTable(*(z[f"{side}_{c}"] for c in ("rec", "start", "y", "subject")))
            return (WindowIndex(table("train"), table("test"), int(z["length"]), int(z["hop"])),
                    z["mean"], z["std"])
    except (OSError, KeyError, ValueError):
        return None


def open_store(dataset: str, identity: object, downsample: int, build: Callable) -> H5Store | None:
    """The cache file for these source files and settings, built by `build()` -> (spec,
    recordings iterator, notes) if absent. None when no cache directory is usable."""
    root = cache_root()
    if root is None:
        return None
    path = root / f"{dataset}-{key_of([FORMAT, dataset, downsample, identity])}.h5"

    def write() -> H5Store | None:
        spec, recs, notes = build()
        try:
            write_store(path, spec, recs, notes)
        except OSError:
            return None
        return _try_open(path)

    return _read_or_build(path, lambda: _try_open(path), write)


T = TypeVar("T")


def _read_or_build(path: Path, read: Callable[[], T | None], build: Callable[[], T | None]) -> T | None:
    """read() if the cache file is there; else build it under a file lock, unless another rank
    built it while this one waited for the lock (ranks wait on the lock, they do not spin)."""
    got = read()
    if got is not None:
        return got
    with file_lock(path.with_suffix(".lock")):
        got = read()
        return got if got is not None else build()


def _try_open(path: Path) -> H5Store | None:
    if not path.exists():
        return None
    try:
        return H5Store(path)
    except (OSError, KeyError, ValueError):
        return None


def builtin_sessions(seed: int, n_subjects: int,
                     build: Callable[[], list[tuple[np.ndarray, np.ndarray]]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The built-in synthetic dataset's (signals, labels) per subject, simulated once per seed and
    kept as .npz: every rank of every run would otherwise spend about 0.5 s of CPU simulating the
    same 10 subjects. The key covers the generator's source (data/simulator.py), so an edited
    generator never reads an old file. No cache (off, or not writable): build() every time."""
    root = cache_root()
    if root is None:
        return build()
    source = hashlib.sha256(Path(simulator.__file__).read_bytes()).hexdigest()
    path = root / f"synthetic-{key_of([FORMAT, seed, n_subjects, source])}.npz"

    def read() -> list[tuple[np.ndarray, np.ndarray]] | None:
        try:
            with np.load(path) as z:
                return [(z[f"x{k}"], z[f"y{k}"]) for k in range(n_subjects)]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # missing, partial or foreign
            return None

    def build_and_save() -> list[tuple[np.ndarray, np.ndarray]]:
        sessions = build()
        tmp = _tmp_near(path, ".npz")
        try:
            with open(tmp, "wb") as fh:
                arrays: dict[str, Any] = {f"{c}{k}": a for k, (x, y) in enumerate(sessions)
                                          for c, a in (("x", x), ("y", y))}
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except OSError:
            pass  # a full or read-only disk: the data are in memory all the same
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return sessions

    got = _read_or_build(path, read, build_and_save)
    assert got is not None
    return got
