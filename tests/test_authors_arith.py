"""--rng authors repeats the authors' arithmetic, not only their draws: their float32 z-score of the
prepared data and their float32 client-after-client sum of the uploads (relief_mpi/rng.py). Each
is checked against a re-implementation of their code (RELIEF/data/har.py `zscore`,
RELIEF/algorithm/aggregation.py `aggregate` at cb76893), and shown to differ from our default
arithmetic on the same input, so the test fails if the authors' path falls back to ours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relief_mpi.data.base import Recording
from relief_mpi.data.preprocess import paper_subject_series
from relief_mpi.rng import AuthorsStream
from relief_mpi.rounds import pack_update


def _their_zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0, keepdims=True)) / (x.std(0, keepdims=True) + 1e-6)


@pytest.mark.parametrize("order", ["C", "F"])  # NumPy sums axis 0 row by row (C) or pairwise (F: SPAR's npz)
def test_float32_zscore_is_theirs_over_the_subjects_series(order: str) -> None:
    rng = np.random.default_rng(3)
    series = [np.asarray(9.81 + rng.normal(0, 2, (n, 4)), np.float32, order=order) for n in (700, 1300, 950)]
    recs = [Recording(1, s, np.zeros(len(s), np.int64), f"s{i}") for i, s in enumerate(series)]
    theirs = _their_zscore(np.concatenate(series).astype(np.float32))
    ours32 = np.concatenate([r.signals for r in paper_subject_series(recs, 1, "float32")])
    ours64 = np.concatenate([r.signals for r in paper_subject_series(recs, 1)])
    assert ours32.dtype == np.float32
    np.testing.assert_array_equal(ours32, theirs)
    assert (ours64 != theirs).any()  # the default (float64 moments) is a different rounding
    assert np.abs(ours64 - theirs).max() < 1e-5


def _their_aggregate(uploads: list[list[torch.Tensor]], w: list[float]) -> list[torch.Tensor]:
    """Their loop over one group's tensors: a float32 zero buffer, add_(upload, alpha=w_n) per client."""
    out = []
    for t in range(len(uploads[0])):
        delta = torch.zeros_like(uploads[0][t])
        for n, w_n in enumerate(w):
            if w_n:
                delta.add_(uploads[n][t], alpha=w_n)
        out.append(delta)
    return out


def test_float32_sum_client_after_client_is_theirs() -> None:
    gen = torch.Generator().manual_seed(5)
    shapes = [(6, 3, 5), (6,), (6,), (33,)]  # a conv weight, its bias, BatchNorm's two buffers
    k = 10
    uploads = [[torch.randn(s, generator=gen) * 1e-2 for s in shapes] for _ in range(k)]
    w = [2 / 15 if n < 5 else 1 / 15 for n in range(k)]
    w[3] = 0.0  # not among their weights (a non-owner in cohort mode)
    stream = AuthorsStream(torch.get_rng_state())
    for n in range(k):
        stream.add_upload(0, torch.cat([u.reshape(-1) for u in uploads[n]]), w[n])
    mine = stream.pop_sums()[0]
    theirs = torch.cat([t.reshape(-1) for t in _their_aggregate(uploads, w)]).numpy()
    assert mine.dtype == np.float32
    np.testing.assert_array_equal(mine, theirs)
    assert stream.pop_sums() == {}  # handed over once: the next round starts from zero
    # ours: float32 terms summed exactly in float64, rounded once, which is another rounding
    ours = sum(pack_update(torch.cat([u.reshape(-1) for u in uploads[n]]).numpy(), 0, w[n], False)[:mine.size]
               for n in range(k))
    assert (np.asarray(ours).astype(np.float32) != mine).any()
