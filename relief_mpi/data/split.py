"""Which of each subject's windows are test windows (partition=subject, the random splits).

A subject's windows are numbered 0..n-1 in window order: recording by recording as the dataset
stores them, then by first sample (for a subject with one recording, the authors' order). A
split is, per client subject, the sorted numbers of its test windows. Three ways to get one:

- `draw_paper` (split "paper"): as the authors draw it, one `np.random.default_rng(seed)`
  consumed subject after subject in sorted order: `permutation` of the subject's windows, the
  first min(round(fraction x n), n - 1) to test (Python's round: half to even). A subject with
  fewer than 2 windows takes no draw (the authors drop it; here it keeps its window to train).
- `draw_streams` (split "paper-streams", ours; --protocol paper draws "paper"): the same count
  from one stream per subject (SeedSequence([seed, 0x9A9E, subject])), so adding a subject
  changes no other subject's test set.
- `read_split_file` + `check_split` (split "file"): a split written by a log (its /split group)
  or by hand (JSON, docs/data.md "Split files"), checked against the run's windows.

Every partition=subject log stores the split it used (`log_datasets`): /split/<subject> holds
that subject's test window numbers, with its window count as attribute `n_windows`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from relief_mpi.errors import ReliefError

SPLIT_FORMAT = "relief-mpi split 1"
_STREAM_KEY = 0x9A9E


@dataclass(frozen=True)
class SubjectSplit:
    subject: int
    n_windows: int
    test: np.ndarray  # sorted int64 window numbers in 0..n_windows-1


def n_test(n: int, fraction: float) -> int:
    """The authors' test count: min(round(fraction x n), n - 1), never below 0."""
    return max(0, min(int(round(n * fraction)), n - 1))


def draw_paper(counts: Sequence[tuple[int, int]], fraction: float, seed: int) -> list[SubjectSplit]:
    """The authors' draw: one generator for all subjects, in the order given (sorted subjects)."""
    rng = np.random.default_rng(seed)
    out = []
    for s, n in counts:
        if n < 2:
            out.append(SubjectSplit(s, n, np.zeros(0, np.int64)))
            continue
        perm = rng.permutation(np.arange(n, dtype=np.int64))
        out.append(SubjectSplit(s, n, np.sort(perm[:n_test(n, fraction)])))
    return out


def draw_streams(counts: Sequence[tuple[int, int]], fraction: float, seed: int) -> list[SubjectSplit]:
    """One seeded stream per subject (what split=paper drew before issue 23)."""
    out = []
    for s, n in counts:
        rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_KEY, int(s)]))
        perm = rng.permutation(np.arange(n, dtype=np.int64))
        out.append(SubjectSplit(s, n, np.sort(perm[:n_test(n, fraction)])))
    return out


def log_datasets(splits: Sequence[SubjectSplit], draw: str) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """The /split group of a log: dataset path -> (array, attributes)."""
    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
        "split/subjects": (np.array([sp.subject for sp in splits], np.int64),
                           {"draw": draw, "format": SPLIT_FORMAT,
                            "windows": "per subject: recording order, then first sample"})}
    for sp in splits:
        out[f"split/{sp.subject}"] = (np.asarray(sp.test, np.int64), {"n_windows": int(sp.n_windows)})
    return out


@dataclass(frozen=True)
class GivenSplit:
    """A split as read from a file, not yet checked against a run's windows."""

    test: dict[int, list[int]]
    n_windows: dict[int, int]
    source: str


def read_split_file(path: str | Path) -> GivenSplit:
    """A run log's /split group or a JSON split file (docs/data.md, "Split files")."""
    p = Path(path).expanduser()
    try:
        head = p.read_bytes()[:8]
    except OSError as e:
        raise ReliefError(f"--split-file {p}: {e.strerror or e}") from None
    if head == b"\x89HDF\r\n\x1a\n":
        return _from_log(p)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReliefError(f"--split-file {p}: neither a run log nor valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("test"), dict):
        raise ReliefError(f'--split-file {p}: a JSON split is an object with "test": {{subject: [window, ...]}}')
    test = {_subject(k, p): _windows(v, k, p) for k, v in doc["test"].items()}
    counts = doc.get("n_windows", {})
    if not isinstance(counts, dict):
        raise ReliefError(f'--split-file {p}: "n_windows" must be an object {{subject: count}}')
    n_windows = {}
    for k, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise ReliefError(f'--split-file {p}: "n_windows" of subject {k} must be an integer, got {v!r}')
        n_windows[_subject(k, p)] = v
    return GivenSplit(test, n_windows, str(p))


def _subject(key: str, p: Path) -> int:
    try:
        return int(key)
    except ValueError:
        raise ReliefError(f"--split-file {p}: subject {key!r} is not an integer subject id") from None


def _windows(v: object, key: str, p: Path) -> list[int]:
    if not isinstance(v, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in v):
        raise ReliefError(f"--split-file {p}: the test windows of subject {key} must be a list of integers")
    return list(v)


def _from_log(p: Path) -> GivenSplit:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            if "split" not in f or "subjects" not in f["split"]:
                raise ReliefError(f"--split-file {p}: this log has no /split group (a Dirichlet run, or one "
                                  "made before logs recorded their split)")
            g = f["split"]
            test, n_windows = {}, {}
            for s in np.asarray(g["subjects"][()], np.int64).tolist():
                d = g[str(s)]
                test[int(s)] = np.asarray(d[()], np.int64).tolist()
                n_windows[int(s)] = int(d.attrs["n_windows"])
    except (OSError, KeyError) as e:
        raise ReliefError(f"--split-file {p}: cannot read its /split group ({e})") from None
    return GivenSplit(test, n_windows, str(p))


def check_split(given: GivenSplit, counts: Sequence[tuple[int, int]]) -> list[SubjectSplit]:
    """The given split on this run's windows, or one ReliefError line saying what does not fit:
    an unknown subject or window, a client subject it leaves out, a window listed twice, a window
    count that differs from this run's, or a client left with no training window."""
    src = given.source
    n_of: Mapping[int, int] = dict(counts)
    unknown = sorted(set(given.test) - set(n_of))
    if unknown:
        raise ReliefError(f"--split-file {src}: subject {unknown[0]} is not a client subject of this run "
                          f"(its subjects: {', '.join(map(str, n_of))})")
    missing = [s for s in n_of if s not in given.test]
    if missing:
        raise ReliefError(f"--split-file {src}: no test windows given for subject {missing[0]} (list it with [] "
                          "to give it none)")
    out = []
    for s, n in counts:
        if s in given.n_windows and given.n_windows[s] != n:
            raise ReliefError(f"--split-file {src}: subject {s} has {given.n_windows[s]} windows there but {n} in "
                              "this run (other data or window settings)")
        idx = np.asarray(given.test[s], np.int64)
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.size:
            raise ReliefError(f"--split-file {src}: subject {s} has no window {int(bad[0])} (its windows are "
                              f"0..{n - 1})")
        uniq, times = np.unique(idx, return_counts=True)
        if (times > 1).any():
            raise ReliefError(f"--split-file {src}: subject {s} lists window {int(uniq[times > 1][0])} twice")
        if n and len(uniq) >= n:
            raise ReliefError(f"--split-file {src}: subject {s} keeps all {n} of its windows for testing, "
                              "leaving its client no training window")
        out.append(SubjectSplit(s, n, uniq))
    return out
