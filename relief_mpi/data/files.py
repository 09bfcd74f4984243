"""Finding a dataset's original files (folder, parent folder or the UCI zip), reading them with a
streamed sha256, checking the genuine files' checksums, and parsing whitespace-separated tables
with errors that name the file and line."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data.base import DatasetSpec, RawDataset, Recording
from relief_mpi.data.preprocess import paper_recording
from relief_mpi.data.windows import downsample
from relief_mpi.errors import ReliefError

__all__ = ["KNOWN_SHA256", "DataFile", "announce", "by_subject", "check_sha256", "checksum_note", "find_files",
           "folder_file", "load_all", "parse_table", "read_subjects", "row_error"]

# sha256 of the genuine files (from ../shared/data/README.md): a mismatch is warned about, not fatal.
KNOWN_SHA256: dict[str, dict[str, str]] = {
    "mhealth": {
        "mHealth_subject1.log": "da8d1bbf644a206886333f945a1dd7fe5081382b3bb3ee42821f08ad765732e4",
        "mHealth_subject2.log": "20e288750fe9f4f0495686fabf1500bfe655a549f0d2c3a9be5aa6456461b8f1",
        "mHealth_subject3.log": "90ead135c9fa9f1188e3b1f7afc0c95899a0614a15917cf3590f52923d6e03fd",
        "mHealth_subject4.log": "3b66f87a292f4cc457aea18cb7e15a10c18055c803df27f5284c6a1c5751a469",
        "mHealth_subject5.log": "380e526a85bde64baebd1d1a2478c4cfad947a4ab994c8b39b8dcda195f78a30",
        "mHealth_subject6.log": "4b8bc81186229e096937f37f9ae070017ee653005b21f88fcd0504e9195f8926",
        "mHealth_subject7.log": "5e372b2fad64a3ebaadd103ec09cde68d448ef5b707b010d02f438b8b9203b1f",
        "mHealth_subject8.log": "c6ddb8926be4c193890a28cc84cafe35c16a4bc14f23c3e696d504643652a61b",
        "mHealth_subject9.log": "fa68f90a9dfeda47abce41ebc1dec8ce55f66dc56d513ab90a6ae20ad045f2c9",
        "mHealth_subject10.log": "382d3d7b58e1fe24679fb241fd7e48ce1992757f6b1b237a56cd660e8f1fabda",
    },
    "pamap2": {
        "subject101.dat": "80b3fffd089c236ae88098df3b906b8d3c67a858023fe4f75045d78612147266",
        "subject102.dat": "468f3c6ba3e6e961f383783665265afbcddbbd33a3a84bba0386b7d0d4e3c632",
        "subject103.dat": "5be64631d085e3efc700728395516da3512ff9de17dab30d253508441a98d3f0",
        "subject104.dat": "7eb272213cbfe11d9e466a2163b6c9c2ed8d2542fc6f08283fd1bf222cac8994",
        "subject105.dat": "7837cfede57fe45ec20d553c6c2b0c498ab324daae23bfd202c0ffea9f71a7f6",
        "subject106.dat": "0da1dda3fa56d75d6413fc9198949d3ebc2102d77574cb5fe0739674687609f2",
        "subject107.dat": "a02195e9599eb249f79103912d27eb4f62d8a0f59e4763b0dd8250fee5f3f020",
        "subject108.dat": "81ce6b21b9c1e01dc02099c4f9387699547b08b28b387d09a56e0cb0a8af22fc",
        "subject109.dat": "5109d5cd8334769566b4ae602adf3e5f4bb7b9ee8ca678f0c481d333114b07c7",
    },
    "spar": {
        "spar_watch_10subj.npz": "e4dec2481d0c0e34122fecccacd2faa47786e17504212b178f411f4e8b7d5779",
    },
}

_CHUNK = 8 << 20


@dataclass(frozen=True)
class DataFile:
    """One data file, in a folder or inside a zip (possibly a zip inside the zip)."""

    name: str  # base name, e.g. mHealth_subject1.log
    display: str  # for messages: the path, or archive.zip:member
    identity: tuple  # cheap identity for the cache key (size, mtime or zip CRC, ...)
    opener: Callable[[], contextlib.AbstractContextManager[IO[bytes]]]

    def read(self) -> tuple[bytes, str]:
        """The file's bytes and their sha256, read in chunks."""
        h = hashlib.sha256()
        buf = bytearray()
        try:
            with self.opener() as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
                    buf += chunk
        except OSError as e:
            raise ReliefError(f"{self.display}: cannot read ({e.strerror or e})") from None
        except (zipfile.BadZipFile, EOFError) as e:
            raise ReliefError(f"{self.display}: damaged zip member ({e})") from None
        return bytes(buf), h.hexdigest()


def check_sha256(dataset: str, f: DataFile, digest: str) -> str | None:
    """None when `f` is not a known file or matches the genuine one; else a note saying it differs
    (a mismatch is never fatal: the data still load)."""
    want = KNOWN_SHA256.get(dataset, {}).get(f.name)
    if want is None or want == digest:
        return None
    return (f"{f.display}: sha256 {digest[:16]}... differs from the genuine UCI/README file's "
            f"{want[:16]}...; loading it anyway (a modified or truncated copy?)")


def checksum_note(dataset: str, mismatched: list[DataFile], n_files: int) -> str | None:
    """One note for every file of a load whose sha256 differs from the genuine file's."""
    if not mismatched:
        return None
    names = ", ".join(f.name for f in mismatched[:3]) + (", ..." if len(mismatched) > 3 else "")
    where = str(Path(mismatched[0].display).parent) if len(mismatched) > 1 else mismatched[0].display
    return (f"{where}: sha256 of {len(mismatched)} of {n_files} {dataset} files ({names}) differs from the "
            f"genuine UCI/README files'; loading them anyway (modified, truncated or synthetic copies?)")


def announce(note: str) -> None:
    """Print a data warning as one line on stderr. Loading happens once per dataset and settings
    (the prepared cache), so this is printed once, not on every run or rank."""
    print(f"warning: {note}", file=sys.stderr, flush=True)


def folder_file(p: Path) -> DataFile:
    st = p.stat()

    def opener() -> contextlib.AbstractContextManager[IO[bytes]]:
        return open(p, "rb")

    return DataFile(p.name, str(p), ("file", p.name, st.st_size, st.st_mtime_ns), opener)


def _zip_members(zpath: Path) -> list[tuple[str, DataFile]]:
    """(member path, DataFile) for every file member, one level of nested zips included."""
    st = zpath.stat()
    base = ("zip", zpath.name, st.st_size, st.st_mtime_ns)
    out: list[tuple[str, DataFile]] = []
    try:
        with zipfile.ZipFile(zpath) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise ReliefError(f"{zpath}: not a readable zip file ({e})") from None
    for info in infos:
        if info.is_dir():
            continue
        name = info.filename

        def opener(name: str = name) -> contextlib.AbstractContextManager[IO[bytes]]:
            return _zip_open(zpath, name)

        out.append((name, DataFile(Path(name).name, f"{zpath}:{name}", (*base, name, info.CRC, info.file_size),
                                   opener)))
        if name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(zpath) as z, z.open(name) as fo, zipfile.ZipFile(fo) as inner:
                    inner_infos = [i for i in inner.infolist() if not i.is_dir()]
            except (zipfile.BadZipFile, OSError):
                continue
            for ii in inner_infos:
                def inner_opener(outer: str = name, member: str = ii.filename
                                 ) -> contextlib.AbstractContextManager[IO[bytes]]:
                    return _nested_open(zpath, outer, member)

                out.append((f"{name}/{ii.filename}",
                            DataFile(Path(ii.filename).name, f"{zpath}:{name}:{ii.filename}",
                                     (*base, name, info.CRC, ii.filename, ii.CRC, ii.file_size), inner_opener)))
    return out


@contextlib.contextmanager
def _zip_open(zpath: Path, member: str) -> Iterator[IO[bytes]]:
    with zipfile.ZipFile(zpath) as z, z.open(member) as f:
        yield f


@contextlib.contextmanager
def _nested_open(zpath: Path, outer: str, member: str) -> Iterator[IO[bytes]]:
    with zipfile.ZipFile(zpath) as z, z.open(outer) as fo, zipfile.ZipFile(fo) as inner, inner.open(member) as f:
        yield f


def find_files(path: Path, pattern: str, prefer_dir: str | None = None,
               avoid_dirs: tuple[str, ...] = ()) -> list[tuple[re.Match[str], DataFile]]:
    """Files whose base name matches `pattern` under `path`: a folder holding them, a parent of
    that folder (searched a few levels deep), or a zip of either. With several candidate folders,
    the one named `prefer_dir` wins; folders named in `avoid_dirs` are skipped."""
    rx = re.compile(pattern)
    if not path.exists():
        raise ReliefError(f"{path}: no such file or folder")
    if path.is_file() and not zipfile.is_zipfile(path):
        mt = rx.fullmatch(path.name)
        if not mt:
            raise ReliefError(f"{path}: not a zip and not a file named like {pattern!r}")
        return [(mt, folder_file(path))]
    found = _zip_matches(path, rx) if path.is_file() else _folder_matches(path, rx)
    found = [f for f in found if not any(part in avoid_dirs for part in Path(f[0]).parts[:-1])]
    if not found:
        return []
    return _best_folder(found, prefer_dir)


_Found = tuple[str, re.Match[str], DataFile]  # (path inside the folder or zip, the name's match, the file)


def _zip_matches(zpath: Path, rx: re.Pattern[str]) -> list[_Found]:
    """Members of the zip (and of zips inside it) whose base name matches."""
    return [(m, mt, df) for m, df in _zip_members(zpath) if (mt := rx.fullmatch(df.name))]


def _folder_matches(path: Path, rx: re.Pattern[str]) -> list[_Found]:
    """Matching files at the shallowest depth (up to 4 levels) that has any; else in the first zip
    directly in the folder that holds any."""
    for depth_glob in ("*", "*/*", "*/*/*", "*/*/*/*"):
        found = [(str(p.relative_to(path)), mt, folder_file(p)) for p in sorted(path.glob(depth_glob))
                 if (mt := rx.fullmatch(p.name)) and p.is_file()]
        if found:
            return found
    for z in sorted(path.glob("*.zip")):
        found = _zip_matches(z, rx)
        if found:
            return found
    return []


def _best_folder(found: list[_Found], prefer_dir: str | None) -> list[tuple[re.Match[str], DataFile]]:
    """The files of one folder: the one named `prefer_dir` if there are several, else the one with
    the most files (ties: the first by name)."""
    by_dir: dict[str, list[tuple[re.Match[str], DataFile]]] = {}
    for member, mt, df in found:
        by_dir.setdefault(str(Path(member).parent), []).append((mt, df))
    if len(by_dir) > 1 and prefer_dir is not None:
        preferred = [d for d in by_dir if Path(d).name == prefer_dir]
        if preferred:
            return by_dir[preferred[0]]
    return by_dir[sorted(by_dir, key=lambda d: (-len(by_dir[d]), d))[0]]


def _line_of_row(data: bytes, row: int) -> int:
    """1-based line number of the row-th (0-based) non-blank line."""
    seen = -1
    for lineno, line in enumerate(data.splitlines(), 1):
        if line.strip():
            seen += 1
            if seen == row:
                return lineno
    return -1


def row_error(f: DataFile, data: bytes, row: int, what: str) -> ReliefError:
    return ReliefError(f"{f.display}: line {_line_of_row(data, row)}: {what}")


def parse_table(f: DataFile, data: bytes, ncols: int, layout: str) -> np.ndarray:
    """A whitespace-separated numeric table (rows, ncols) float64; NaN allowed. A wrong column
    count or a non-numeric value raises ReliefError naming the file and the line."""
    try:
        arr = np.loadtxt(io.BytesIO(data), dtype=np.float64, ndmin=2, comments=None)
    except ValueError as e:
        _scan(f, data, ncols, layout)
        raise ReliefError(f"{f.display}: cannot parse ({e})") from None
    if arr.shape[0] == 0:
        raise ReliefError(f"{f.display}: no data rows (expected {layout})")
    if arr.shape[1] != ncols:
        _scan(f, data, ncols, layout)
        raise ReliefError(f"{f.display}: line 1: {arr.shape[1]} columns, expected {ncols} ({layout})")
    return arr


def _scan(f: DataFile, data: bytes, ncols: int, layout: str) -> None:
    """Find the first bad line the slow way and raise a ReliefError naming it."""
    for lineno, line in enumerate(data.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != ncols:
            raise ReliefError(f"{f.display}: line {lineno}: {len(tokens)} columns, expected {ncols} ({layout})")
        for j, t in enumerate(tokens, 1):
            try:
                float(t)
            except ValueError:
                text = t.decode("utf-8", "replace")
                raise ReliefError(f"{f.display}: line {lineno}, column {j}: {text!r} is not a number") from None


def by_subject(found: list[tuple[re.Match[str], DataFile]], expected: range,
               name: Callable[[int], str]) -> tuple[list[tuple[int, DataFile]], list[str]]:
    """(subject, file) pairs in subject order (the subject id is the pattern's first group), and a
    note naming the expected subject files that are missing."""
    files = sorted(((int(m.group(1)), f) for m, f in found), key=lambda t: t[0])
    have = {s for s, _ in files}
    missing = [s for s in expected if s not in have]
    notes = [f"only {len(have)} of {len(expected)} subject files found (missing: "
             + ", ".join(name(s) for s in missing) + ")"] if missing else []
    return files, notes


def read_subjects(path: Path, cfg: DataConfig, locate: Callable[[Path], tuple[list[tuple[int, DataFile]], list[str]]],
                  parse: Callable[[int, DataFile, bytes], Recording], spec: DatasetSpec,
                  rate_hz: float) -> tuple[DatasetSpec, Iterator[Recording], list[str]]:
    """Spec, a generator of per-subject recordings (one file at a time) and notes filled as it runs:
    the reading loop shared by the one-file-per-subject loaders (MHEALTH, PAMAP2). Each file is
    read with its checksum, parsed by `parse`, then downsampled (protocol "ours": block means) or
    preprocessed as the paper did (protocol "paper": decimation, forward-fill, per-subject z-score)."""

    files, notes = locate(path)

    def gen() -> Iterator[Recording]:
        mismatched = []
        for subject, f in files:
            data, digest = f.read()
            if check_sha256(spec.name, f, digest):
                mismatched.append(f)
            rec = parse(subject, f, data)
            del data
            yield (paper_recording(rec, cfg.downsample, cfg.zscore_dtype) if cfg.protocol == "paper"
                   else downsample(rec, cfg.downsample))
        note = checksum_note(spec.name, mismatched, len(files))
        if note:
            notes.append(note)
            announce(note)

    if cfg.downsample > 1:
        spec = replace(spec, sample_rate_hz=rate_hz / cfg.downsample)
    return spec, gen(), notes


def load_all(read: tuple[DatasetSpec, Iterator[Recording], list[str]]) -> RawDataset:
    """Every recording in memory (no cache; see registry.load_raw for the cached path)."""
    spec, recs, notes = read
    recordings = list(recs)
    return RawDataset(spec, recordings, notes=tuple(notes))
