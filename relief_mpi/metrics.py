"""Classification metrics without extra dependencies, ours and as the paper's code computes them.

Ours: `macro_f1` averages F1 over the classes present in the labels or the predictions.
Published (the authors' sklearn call, labels = every class, zero_division = 0): a class that
appears in neither counts as F1 0, and the macro-F1 is the mean over all C classes. On a test set
that holds every class (the pooled set of the paper's split) the two agree.

Critical classes (the paper's rare-modality F1): the classes whose F1 is below a threshold (0.5)
in a reference run (the same seed's FedAvg); the rare-modality F1 of any run is then the mean of
its per-class F1 over those classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "CRITICAL_F1", "TARGET_F1", "accuracy", "critical_classes", "first_reached", "macro_f1", "per_class_f1",
    "published_macro_f1", "rare_modality_f1"
]


CRITICAL_F1 = 0.5  # the authors' critical_f1_threshold
TARGET_F1 = 0.85  # the authors' tta_threshold


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of each class 0..C-1; NaN for a class that is neither in y_true nor predicted."""
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn:
            out[c] = 2 * tp / (2 * tp + fp + fn)
    return out


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the classes present in y_true or y_pred (NaN on no samples)."""
    if y_true.size == 0:
        return float("nan")
    f1 = per_class_f1(y_true, y_pred, n_classes)
    return float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")


def published_macro_f1(per_class: np.ndarray) -> float:
    """The authors' macro-F1: the mean over every class, a class absent from both sides counting 0."""
    pc = np.asarray(per_class, float)
    return float(np.nan_to_num(pc, nan=0.0).mean()) if pc.size else float("nan")


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def critical_classes(reference_per_class: np.ndarray, threshold: float = CRITICAL_F1) -> tuple[int, ...]:
    """Classes whose reference F1 is below `threshold` (a NaN, a class the reference never saw nor
    predicted, is F1 0 as in the authors' code, so it is critical)."""
    pc = np.nan_to_num(np.asarray(reference_per_class, float), nan=0.0)
    return tuple(int(c) for c in np.flatnonzero(pc < threshold))


def rare_modality_f1(per_class: np.ndarray, critical: Sequence[int]) -> float:
    """Mean F1 over the critical classes (NaN F1 counts 0); NaN when there is no critical class."""
    if not len(critical):
        return float("nan")
    pc = np.nan_to_num(np.asarray(per_class, float), nan=0.0)
    return float(pc[list(critical)].mean())


def first_reached(values: np.ndarray, target: float) -> int:
    """Index of the first finite value >= target, or -1 (NaN = not evaluated, never counts)."""
    v = np.asarray(values, float)
    hit = np.flatnonzero(np.isfinite(v) & (v >= target))
    return int(hit[0]) if hit.size else -1
