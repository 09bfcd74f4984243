"""Cohort aggregation and divergence from the reduced sums match direct NumPy computations."""

import math

import numpy as np

from relief_mpi.comm import wire
from relief_mpi.strategy.base import cohort_update


def test_divergence_from_sums_equals_weighted_variance() -> None:
    rng = np.random.default_rng(1)
    size = 257
    deltas = [rng.normal(0, s, size).astype(np.float32) for s in (0.1, 0.5, 1.0)]
    weights = [32.0, 96.0, 320.0]
    acc = wire.zero_update(size)
    for d, w in zip(deltas, weights, strict=True):
        acc += wire.pack_update(d, w)
    g = rng.normal(size=size).astype(np.float32)
    new, div = cohort_update(g, wire.unpack_sums(acc))
    d64 = np.array(deltas, np.float64)
    w = np.array(weights)
    mean = (w[:, None] * d64).sum(0) / w.sum()
    np.testing.assert_allclose(new, g + mean, rtol=1e-5, atol=1e-6)
    direct = (w * ((d64 - mean) ** 2).sum(1)).sum() / w.sum() / size
    assert math.isclose(div, direct, rel_tol=1e-4)


def test_untrained_block_is_returned_unchanged() -> None:
    g = np.arange(10, dtype=np.float32)
    new, div = cohort_update(g, wire.unpack_sums(wire.zero_update(10)))
    assert new is g and math.isnan(div)
