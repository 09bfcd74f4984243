"""The server's round loop: plan, exchange (through any transport), aggregate, evaluate, log."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from relief_mpi.client import split_modalities
from relief_mpi.comm import wire
from relief_mpi.comm.transport import ServerTransport
from relief_mpi.data.base import DatasetSpec, WindowSet
from relief_mpi.device.energy import attribute_gpu_energy
from relief_mpi.device.throttle import energy_gpus
from relief_mpi.log.hdf5 import CLIENT_METRICS, RoundRecord
from relief_mpi.metrics import accuracy, macro_f1, per_class_f1, published_macro_f1
from relief_mpi.rounds import PlanNotes, RoundPlan
from relief_mpi.run_setup import Model, RunSetup, modeled_energy
from relief_mpi.strategy.system import AnalyticRound


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


@dataclass(frozen=True)
class _RoundFacts:
    """One exchanged round as the log sees it: the plan and its notes, the clients' report columns
    (wire.REPORT_FIELDS), the analytic figures, and what the reports give: each client's span
    (download + busy + upload), the round's emulated length (the longest span), the idle time
    and the modeled energy of each client."""

    plan: RoundPlan
    notes: PlanNotes
    col: dict[str, np.ndarray]
    ana: AnalyticRound
    span: np.ndarray
    round_s: float
    idle: np.ndarray
    energy: np.ndarray


def _round_facts(setup: RunSetup, plan: RoundPlan, notes: PlanNotes, col: dict[str, np.ndarray],
                 ana: AnalyticRound) -> _RoundFacts:
    """The round's emulated times and modeled energy from the clients' reports."""
    span = col["download_s"] + col["busy_s"] + col["upload_s"]
    round_s = float(span.max()) if span.size else 0.0
    idle = np.maximum(0.0, round_s - span)
    nbytes = col["bytes_up"] + col["bytes_down"]
    energy = modeled_energy(setup, col["busy_s"], round_s, nbytes)
    return _RoundFacts(plan, notes, col, ana, span, round_s, idle, energy)


def _client_metrics(facts: _RoundFacts) -> dict[str, np.ndarray]:
    """The round's per-client arrays (log.hdf5.CLIENT_METRICS)."""
    col, plan, notes, ana = facts.col, facts.plan, facts.notes, facts.ana
    clients = {
        "busy_s": col["busy_s"], "wait_s": facts.idle, "idle_s": facts.idle, "compute_wall_s": col["compute_wall_s"],
        "lag_s": col["lag_s"], "download_s": col["download_s"], "upload_s": col["upload_s"],
        "bytes_up": col["bytes_up"], "bytes_down": col["bytes_down"], "energy_j": facts.energy,
        "energy_measured_j": col["energy_measured_j"], "steps": col["steps"], "samples": col["samples"],
        "rejected": col["rejected"], "loss": col["loss"], "flops": col["flops"],
        "budget": (notes.budget if notes.budget is not None else plan.alloc.sum(axis=1)).astype(np.float64),
        "n_groups": plan.alloc.sum(axis=1).astype(np.float64), "analytic_time_s": ana.compute_s + ana.comm_s,
        "analytic_energy_j": ana.client_energy_j,
    }
    assert set(clients) == set(CLIENT_METRICS)
    return clients


_TierArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _tier_arrays(setup: RunSetup, facts: _RoundFacts, ev: Evaluation | None) -> _TierArrays:
    """RoundRecord's per-tier and per-class arrays: tier F1, class F1, tier pooled F1 (NaN without
    an evaluation), and each tier's longest emulated span and longest analytic time."""
    names = tier_names(setup)
    tier_f1 = np.array([ev.tier_f1[t] if ev else math.nan for t in names])
    tier_pooled = np.array([ev.tier_pooled_f1.get(t, math.nan) if ev else math.nan for t in names])
    n_classes = len(setup.data.spec.classes)
    class_f1 = ev.class_f1 if ev is not None and ev.class_f1.size == n_classes else np.full(n_classes, math.nan)
    tiers = np.array([d.tier for d in setup.devices])
    span = facts.span
    analytic_s = facts.ana.compute_s + facts.ana.comm_s
    tier_time = np.array([float(span[tiers == t].max()) if span.size else math.nan for t in names])
    tier_analytic = np.array([float(analytic_s[tiers == t].max()) if analytic_s.size else math.nan for t in names])
    return tier_f1, class_f1, tier_pooled, tier_time, tier_analytic


class Server:
    def __init__(self, setup: RunSetup, transport: ServerTransport, model: Model,
                 on_round: Callable[[RoundRecord], None] | None = None, dump_dir: str | None = None) -> None:
        self.setup = setup
        self.transport = transport
        self.model = model
        # setup pairs the registry with its model (BlockRegistry: MultimodalNet, GroupRegistry: PaperNet)
        self.registry: Any = cast(Any, setup.registry)
        self.blocks = [self.registry.get(model, b) for b in range(len(self.registry))]
        self.on_round = on_round
        self.dump_dir = Path(dump_dir) if dump_dir else None
        self.wall_elapsed = 0.0
        self.virtual_elapsed = 0.0
        self.analytic_elapsed = 0.0
        self.analytic_energy = 0.0

    def sync_model(self) -> None:
        for b, vec in enumerate(self.blocks):
            self.registry.set(self.model, b, vec)

    def run_round(self, rnd: int) -> RoundRecord:
        """Plan, exchange, aggregate, evaluate when due, and log one round (on_round sees the record)."""
        setup = self.setup
        t0 = time.perf_counter()
        strategy = setup.strategy
        plan = strategy.configure_round(rnd)
        notes = strategy.notes(plan)
        self._dump(rnd, "before")
        ex = self.transport.run_round(plan, self.blocks)
        col = {name: ex.reports[:, i] for i, name in enumerate(wire.REPORT_FIELDS)}
        if any(gpus := energy_gpus(setup.device_info, setup.n_clients)):  # ranks sharing a GPU split its energy
            col["energy_measured_j"] = attribute_gpu_energy(col["energy_measured_j"], col["compute_wall_s"],
                                                            np.array([d.rank for d in setup.devices]), gpus)
        agg = strategy.aggregate(rnd, plan, self.blocks, ex.sums, col["samples"])
        self.blocks, div = agg.groups, agg.divergence
        self._dump(rnd, "after")
        ana = strategy.analytic(plan, notes)  # under the run's --cost-model
        self.analytic_elapsed += ana.time_s
        self.analytic_energy += ana.energy_j
        wall = time.perf_counter() - t0
        facts = _round_facts(setup, plan, notes, col, ana)
        self.wall_elapsed += wall
        self.virtual_elapsed += facts.round_s
        ev = None
        if rnd % max(1, setup.config.eval_every) == 0 or rnd == setup.config.rounds:
            self.sync_model()
            ev = evaluate(setup, self.model)
        tier_f1, class_f1, tier_pooled, tier_time, tier_analytic = _tier_arrays(setup, facts, ev)
        rec = RoundRecord(self._round_row(rnd, wall, facts, ev), _client_metrics(facts), np.asarray(div, np.float64),
                          plan.alloc.astype(np.uint8), tier_f1, class_f1=class_f1, tier_pooled_f1=tier_pooled,
                          tier_time_s=tier_time, tier_analytic_time_s=tier_analytic)
        if self.on_round is not None:
            self.on_round(rec)
        return rec

    def _round_row(self, rnd: int, wall: float, facts: _RoundFacts, ev: Evaluation | None) -> dict[str, float]:
        """The round's /rounds row: times, the evaluation (NaN in a round without one), traffic,
        energy, loss and the analytic model's figures with their running totals."""
        col, plan, notes, ana = facts.col, facts.plan, facts.notes, facts.ana
        losses = col["loss"][np.isfinite(col["loss"])]
        measured = col["energy_measured_j"]
        return {
            "round": rnd, "wall_time_s": wall, "wall_elapsed_s": self.wall_elapsed, "virtual_time_s": facts.round_s,
            "virtual_elapsed_s": self.virtual_elapsed,
            "accuracy": ev.accuracy if ev else math.nan, "macro_f1": ev.macro_f1 if ev else math.nan,
            "rare_f1": ev.rare_f1 if ev else math.nan,
            "own_accuracy": ev.own_accuracy if ev else math.nan, "own_macro_f1": ev.own_macro_f1 if ev else math.nan,
            "pooled_accuracy": ev.pooled_accuracy if ev else math.nan,
            "pooled_macro_f1": ev.pooled_macro_f1 if ev else math.nan,
            "bytes_up": float(col["bytes_up"].sum()), "bytes_down": float(col["bytes_down"].sum()),
            "energy_j": float(facts.energy.sum()),
            "energy_measured_j": float(measured.sum()) if np.all(np.isfinite(measured)) else math.nan,
            "train_loss": float(losses.mean()) if losses.size else math.nan,
            "deadline_s": plan.deadline_s if math.isfinite(plan.deadline_s) else math.nan,
            "rejected": int(col["rejected"].sum()),
            "t_star": notes.t_star, "analytic_time_s": ana.time_s, "analytic_elapsed_s": self.analytic_elapsed,
            "analytic_energy_j": ana.energy_j, "analytic_energy_cum_j": self.analytic_energy,
            "analytic_mb_up": ana.up_bytes / 1e6, "analytic_mb_down": ana.down_bytes / 1e6,
            "trained_pct": 100.0 * ana.trained_fraction,
        }

    def _dump(self, rnd: int, when: str) -> None:
        if self.dump_dir is not None:
            for b, vec in enumerate(self.blocks):
                np.save(self.dump_dir / f"r{rnd}-{when}-b{b}.npy", vec)

    def restore(self, blocks: list[np.ndarray], wall_elapsed: float, virtual_elapsed: float,
                analytic: tuple[float, float] = (0.0, 0.0)) -> None:
        """Continue from a checkpoint's global groups and elapsed times."""
        self.blocks = [np.array(b, np.float32) for b in blocks]
        self.wall_elapsed, self.virtual_elapsed = wall_elapsed, virtual_elapsed
        self.analytic_elapsed, self.analytic_energy = analytic
        self.sync_model()

    def run(self, first_round: int = 1) -> list[RoundRecord]:
        recs = [self.run_round(r) for r in range(first_round, self.setup.config.rounds + 1)]
        self.transport.stop()
        return recs
