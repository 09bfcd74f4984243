"""Non-IID client shards: Dirichlet(alpha) label skew with subject locality.

For every class the windows are ordered by (subject, time) and cut into contiguous chunks whose
sizes follow proportions p_c ~ Dirichlet(alpha): a client's windows of a class come from few
subjects, as on a real fleet where a device belongs to a person. Small alpha = strong skew.
Test windows are split with the same proportions so each client has a local test set. The
draw is repeated (same seeded stream) until every client has >= min_train training windows and,
when there are enough, at least one test window.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dirichlet_proportions", "label_skew", "partition", "split_by_proportions"]


def dirichlet_proportions(n_classes: int, n_clients: int, alpha: float,
                          rng: np.random.Generator) -> np.ndarray:
    """(n_classes, n_clients) rows summing to 1."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return rng.dirichlet(np.full(n_clients, alpha), size=n_classes)


def split_by_proportions(y: np.ndarray, order_key: np.ndarray, props: np.ndarray) -> list[np.ndarray]:
    """Indices per client: class c's windows, sorted by order_key, cut by props[c]."""
    n_clients = props.shape[1]
    out: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for c in range(props.shape[0]):
        idx = np.flatnonzero(y == c)
        idx = idx[np.argsort(order_key[idx], kind="stable")]
        bounds = np.round(np.cumsum(props[c]) * len(idx)).astype(int)
        bounds[-1] = len(idx)
        start = 0
        for k in range(n_clients):
            out[k].append(idx[start:bounds[k]])
            start = bounds[k]
    return [np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64) for parts in out]


def partition(y_train: np.ndarray, key_train: np.ndarray, y_test: np.ndarray, key_test: np.ndarray,
              n_classes: int, n_clients: int, alpha: float, seed: int,
              min_train: int = 8, max_tries: int = 200) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Client index lists for train and test; redraws until every client has >= min_train windows."""
    if n_clients < 1:
        raise ValueError("need at least one client")
    if len(y_train) < n_clients * min_train:
        raise ValueError(f"{len(y_train)} training windows cannot give {n_clients} clients "
                         f"{min_train} windows each; use fewer clients or a larger dataset")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD1C]))
    min_test = 1 if len(y_test) >= 4 * n_clients else 0
    for _ in range(max_tries):
        props = dirichlet_proportions(n_classes, n_clients, alpha, rng)
        train = split_by_proportions(y_train, key_train, props)
        if min(len(t) for t in train) >= min_train:
            test = split_by_proportions(y_test, key_test, props)
            if min(len(t) for t in test) >= min_test:
                return train, test
    # Very small alpha on few classes: fall back to mixing in a uniform share until it fits.
    mix = 0.5
    while True:
        props = (1 - mix) * dirichlet_proportions(n_classes, n_clients, alpha, rng) + mix / n_clients
        train = split_by_proportions(y_train, key_train, props)
        if min(len(t) for t in train) >= min_train or mix >= 1.0:
            return train, split_by_proportions(y_test, key_test, props)
        mix = min(1.0, mix + 0.25)


def label_skew(client_labels: list[np.ndarray], n_classes: int) -> float:
    """Mean total-variation distance between client label histograms and the pooled one."""
    pooled = np.bincount(np.concatenate(client_labels), minlength=n_classes).astype(float)
    pooled /= pooled.sum()
    tv = []
    for y in client_labels:
        h = np.bincount(y, minlength=n_classes).astype(float)
        if h.sum() > 0:
            tv.append(0.5 * np.abs(h / h.sum() - pooled).sum())
    return float(np.mean(tv))
