"""The global model scored on every test set the data offer: the headline (the pooled
full-modality set when the data have one), each client's own windows with its own sensors, the
rare modality's cohort, and each tier's sensors on the pooled set. The server calls evaluate()
when an evaluation is due; the CLI's pretraining and the tests call predict()."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from relief_mpi.client import split_modalities
from relief_mpi.data.base import DatasetSpec, WindowSet
from relief_mpi.metrics import accuracy, macro_f1, per_class_f1, published_macro_f1
from relief_mpi.run_setup import Model, RunSetup

__all__ = ["EVAL_BATCH", "Evaluation", "evaluate", "predict", "tier_modalities", "tier_names"]


@dataclass
class Evaluation:
    """One evaluation of the global model. `accuracy`, `macro_f1` and `class_f1` are the headline:
    the pooled full-modality test set whenever the data have one (one client per subject, as the
    paper's protocol; the authors' macro-F1 over every class), else ours. Ours (`own_*`, `rare_f1`,
    `tier_f1`): each client's own test windows seen with its own sensors. Pooled (`pooled_*`,
    `tier_pooled_f1`): every test window with every sensor, and once with each tier's sensors only.
    NaN where a set has no window."""

    accuracy: float
    macro_f1: float
    rare_f1: float
    tier_f1: dict[str, float]
    own_accuracy: float = math.nan
    own_macro_f1: float = math.nan
    pooled_accuracy: float = math.nan
    pooled_macro_f1: float = math.nan
    class_f1: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tier_pooled_f1: dict[str, float] = field(default_factory=dict)


EVAL_BATCH = 128  # windows per forward pass: 1.5-2x faster than 512 on the lab's 2-core host (activations fit in cache)


def predict(model: Model, spec: DatasetSpec, ws: WindowSet, present: frozenset[int], zero_fill: bool,
            batch: int = EVAL_BATCH) -> np.ndarray:
    """The model's labels for `ws` seen with the sensors in `present`: an absent sensor's channels
    are zeros (zero-fill strategies) or its encoder is not run (the others), as in training."""
    drop = [c for m, mod in enumerate(spec.modalities) if m not in present for c in mod.channels]
    out = []
    dev = next(model.parameters()).device  # rank 0 evaluates where its model is (--device)
    with torch.no_grad():
        for i in range(0, len(ws), batch):
            x = torch.from_numpy(ws.x[i:i + batch]).to(dev)
            if zero_fill and drop:
                x = x.clone()
                x[:, drop, :] = 0.0
            out.append(model(split_modalities(x, spec, present, zero_fill)).argmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def tier_modalities(setup: RunSetup) -> dict[str, frozenset[int]]:
    """Each tier's sensors: those of its first client (every shipped fleet gives a tier one sensor set)."""
    out: dict[str, frozenset[int]] = {}
    for d in setup.devices:
        out.setdefault(d.tier, setup.client_modalities(d.client))
    return out


def evaluate(setup: RunSetup, model: Model, batch: int = EVAL_BATCH) -> Evaluation:
    """The global model on every test set the data offer (see Evaluation). On the pooled set each
    sensor set is scored once; a client's own windows are its slice of the pooled set when the
    pooled set holds them (one client per subject), so ours costs no extra pass."""
    model.eval()
    data = setup.data
    spec = data.spec
    n_classes = len(spec.classes)
    zero_fill = setup.strategy.zero_fill
    everything = frozenset(range(len(spec.modalities)))
    pooled = data.pooled_test if data.pooled_test is not None and len(data.pooled_test) else None
    cache: dict[frozenset[int], np.ndarray] = {}

    def on_pooled(present: frozenset[int]) -> np.ndarray:
        if present not in cache:
            assert pooled is not None
            cache[present] = predict(model, spec, pooled, present, zero_fill, batch)
        return cache[present]

    preds, trues = [], []
    for k, ws in enumerate(data.clients_test):
        present = setup.client_modalities(k)
        idx = _slice_of(pooled, data.client_subjects, k, ws)
        if idx is not None:
            preds.append(on_pooled(present)[idx])
        else:
            preds.append(predict(model, spec, ws, everything if zero_fill else present, zero_fill, batch))
        trues.append(ws.y)

    def score(clients: list[int]) -> tuple[float, float, np.ndarray]:
        y = np.concatenate([trues[k] for k in clients]) if clients else np.zeros(0, np.int64)
        p = np.concatenate([preds[k] for k in clients]) if clients else np.zeros(0, np.int64)
        if not y.size:
            return math.nan, math.nan, np.full(n_classes, math.nan)
        return accuracy(y, p), macro_f1(y, p, n_classes), per_class_f1(y, p, n_classes)

    everyone = list(range(setup.n_clients))
    own_acc, own_f1, own_pc = score(everyone)
    tiers = {t: score([k for k in everyone if setup.devices[k].tier == t])[1] for t in tier_names(setup)}
    rare = setup.rare_modality
    rare_f1 = score([k for k in everyone if rare is not None and rare in setup.client_modalities(k)])[1]
    ev = Evaluation(own_acc, own_f1, rare_f1, tiers, own_acc, own_f1, class_f1=own_pc)
    if pooled is not None:
        p = on_pooled(everything)
        ev.pooled_accuracy = accuracy(pooled.y, p)
        pc = per_class_f1(pooled.y, p, n_classes)
        ev.pooled_macro_f1 = published_macro_f1(pc)
        ev.tier_pooled_f1 = {t: published_macro_f1(per_class_f1(pooled.y, on_pooled(s), n_classes))
                             for t, s in tier_modalities(setup).items()}
        ev.accuracy, ev.macro_f1, ev.class_f1 = ev.pooled_accuracy, ev.pooled_macro_f1, pc
    return ev


def _slice_of(pooled: WindowSet | None, subjects: tuple[int, ...], k: int, ws: WindowSet) -> np.ndarray | None:
    """Where client k's test windows sit in the pooled set (its subject's windows, in order), if
    they are exactly those; None otherwise (then they are scored on their own)."""
    if pooled is None or k >= len(subjects):
        return None
    idx = np.flatnonzero(pooled.subject == subjects[k])
    if len(idx) != len(ws) or not np.array_equal(pooled.y[idx], ws.y):
        return None
    for mine, theirs in ((ws.start, pooled.start), (ws.rec, pooled.rec)):
        if mine is not None and theirs is not None and not np.array_equal(theirs[idx], mine):
            return None
    return idx


def tier_names(setup: RunSetup) -> list[str]:
    seen: list[str] = []
    for d in setup.devices:
        if d.tier not in seen:
            seen.append(d.tier)
    return seen
