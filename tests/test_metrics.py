"""Metrics against hand-computed numbers: per-class F1, ours and the authors' macro-F1, critical
classes and the rare-modality F1, the first round reaching a target."""

from __future__ import annotations

import math

import numpy as np
import pytest

from relief_mpi.metrics import (
    critical_classes,
    first_reached,
    macro_f1,
    per_class_f1,
    published_macro_f1,
    rare_modality_f1,
)

# 4 classes; class 3 never appears in the labels nor the predictions.
Y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
P = np.array([0, 0, 1, 1, 2, 2, 2, 0])
# class 0: tp 2, fp 1 (last), fn 1 -> 4/6; class 1: tp 1, fp 1, fn 1 -> 2/4; class 2: tp 2, fp 1, fn 1 -> 4/6.


def test_per_class_and_both_macro_f1():
    pc = per_class_f1(Y, P, 4)
    assert pc[:3] == pytest.approx([4 / 6, 0.5, 4 / 6])
    assert math.isnan(pc[3])
    assert macro_f1(Y, P, 4) == pytest.approx((4 / 6 + 0.5 + 4 / 6) / 3)  # ours: class 3 left out
    assert published_macro_f1(pc) == pytest.approx((4 / 6 + 0.5 + 4 / 6 + 0.0) / 4)  # theirs: class 3 counts 0
    assert math.isnan(macro_f1(np.zeros(0, int), np.zeros(0, int), 4))


def test_critical_classes_and_rare_modality_f1():
    reference = np.array([0.9, 0.49, 0.5, np.nan, 0.1])
    crit = critical_classes(reference)
    assert crit == (1, 3, 4)  # below 0.5 (0.5 itself is not), and a NaN class counts as F1 0
    assert critical_classes(reference, threshold=0.95) == (0, 1, 2, 3, 4)
    run = np.array([0.2, 0.7, 0.9, np.nan, 0.4])
    assert rare_modality_f1(run, crit) == pytest.approx((0.7 + 0.0 + 0.4) / 3)
    assert math.isnan(rare_modality_f1(run, ()))


def test_first_reached_skips_unevaluated_rounds():
    v = np.array([0.1, np.nan, 0.86, 0.84, 0.9])
    assert first_reached(v, 0.85) == 2
    assert first_reached(v, 0.95) == -1
    assert first_reached(v, 0.1) == 0
