"""The built-in synthetic data are simulated once per seed and read back bit for bit (data/cache.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from relief_mpi.data import synthetic
from relief_mpi.data.simulator import builtin_sessions


def _same(a, b) -> None:
    assert len(a.recordings) == len(b.recordings)
    for ra, rb in zip(a.recordings, b.recordings, strict=True):
        assert ra.subject == rb.subject and ra.source == rb.source
        assert ra.signals.dtype == rb.signals.dtype and np.array_equal(ra.signals, rb.signals)
        assert np.array_equal(ra.labels, rb.labels)


def test_cached_equals_simulated_and_a_bad_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIEF_MPI_CACHE_DIR", "off")
    simulated = synthetic.generate(seed=4, n_subjects=3)
    monkeypatch.setenv("RELIEF_MPI_CACHE_DIR", str(tmp_path))
    first = synthetic.generate(seed=4, n_subjects=3)  # simulates and writes
    files = list(tmp_path.glob("synthetic-*.npz"))
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes()[:100])  # a truncated file reads as missing
    rebuilt = synthetic.generate(seed=4, n_subjects=3)
    calls = []
    monkeypatch.setattr(synthetic, "builtin_sessions", lambda *a: calls.append(a) or builtin_sessions(*a))
    read = synthetic.generate(seed=4, n_subjects=3)
    assert calls == []  # read from the file, not simulated
    for other in (first, rebuilt, read):
        _same(simulated, other)
    assert not np.array_equal(synthetic.generate(seed=5, n_subjects=3).recordings[0].signals,
                              read.recordings[0].signals)  # another seed, another file
    assert len(list(tmp_path.glob("synthetic-*.npz"))) == 2
