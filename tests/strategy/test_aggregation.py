"""Sample-weighted aggregation and divergence from the reduced sums match direct NumPy computations."""

import math

import numpy as np

from relief_mpi.rounds import GroupSums, pack_update, zero_update
from relief_mpi.strategy.base import weighted_divergence, weighted_mean_update


def reduce(deltas: list[np.ndarray], weights: list[float], plain: bool = False) -> GroupSums:
    acc = zero_update(deltas[0].size, plain)
    for d, w in zip(deltas, weights, strict=True):
        acc += pack_update(d, d.size, w, plain)
    return GroupSums.unpack(acc, deltas[0].size, plain)


def test_divergence_from_sums_equals_weighted_variance() -> None:
    rng = np.random.default_rng(1)
    size = 257
    deltas = [rng.normal(0, s, size).astype(np.float32) for s in (0.1, 0.5, 1.0)]
    weights = [32.0, 96.0, 320.0]
    sums = reduce(deltas, weights)
    g = rng.normal(size=size).astype(np.float32)
    new = weighted_mean_update(g, sums)
    div = weighted_divergence(sums, size)
    d64 = np.array(deltas, np.float64)
    w = np.array(weights)
    mean = (w[:, None] * d64).sum(0) / w.sum()
    np.testing.assert_allclose(new, g + mean, rtol=1e-5, atol=1e-6)
    direct = (w * ((d64 - mean) ** 2).sum(1)).sum() / w.sum() / size
    assert math.isclose(div, direct, rel_tol=1e-4)
    assert sums.count == 3.0


def test_plain_sum_is_carried_when_coefficients_differ() -> None:
    rng = np.random.default_rng(2)
    deltas = [rng.normal(size=20).astype(np.float32) for _ in range(3)]
    sums = reduce(deltas, [0.2, 0.3, 0.5], plain=True)
    np.testing.assert_allclose(sums.unweighted(), np.sum(deltas, axis=0), rtol=1e-5, atol=1e-6)
    assert math.isclose(sums.plain_sq, sum(float(d.astype(np.float64) @ d) for d in deltas), rel_tol=1e-5)


def test_equal_coefficients_recover_the_plain_sum_without_carrying_it() -> None:
    rng = np.random.default_rng(3)
    deltas = [rng.normal(size=20).astype(np.float32) for _ in range(4)]
    sums = reduce(deltas, [0.25] * 4, plain=False)
    assert sums.plain is None
    np.testing.assert_allclose(sums.unweighted(), np.sum(deltas, axis=0), rtol=1e-5, atol=1e-6)


def test_untrained_group_is_returned_unchanged() -> None:
    g = np.arange(10, dtype=np.float32)
    sums = GroupSums.unpack(zero_update(10, False), 10, False)
    assert weighted_mean_update(g, sums) is g
    assert sums.count == 0.0
