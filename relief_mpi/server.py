"""The server's round loop: plan, exchange (through any transport), aggregate, evaluate, log."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from relief_mpi.client import split_modalities
from relief_mpi.comm import wire
from relief_mpi.comm.transport import ServerTransport
from relief_mpi.log.hdf5 import CLIENT_METRICS, RoundRecord
from relief_mpi.metrics import accuracy, macro_f1
from relief_mpi.setup import Model, RunSetup, modeled_energy
from relief_mpi.strategy.system import analytic_round


@dataclass
class Evaluation:
    accuracy: float
    macro_f1: float
    rare_f1: float
    tier_f1: dict[str, float]


def evaluate(setup: RunSetup, model: Model, batch: int = 512) -> Evaluation:
    """Each client's test windows, seen with that client's own sensors (as the fleet would use it)."""
    model.eval()
    spec = setup.data.spec
    n_classes = len(spec.classes)
    preds, trues = [], []
    zero_fill = setup.strategy.zero_fill
    with torch.no_grad():
        for k, ws in enumerate(setup.data.clients_test):
            present = frozenset(range(len(spec.modalities))) if zero_fill else setup.client_modalities(k)
            out = []
            for i in range(0, len(ws), batch):
                x = torch.from_numpy(ws.x[i:i + batch])
                out.append(model(split_modalities(x, spec, present, zero_fill)).argmax(1).numpy())
            preds.append(np.concatenate(out) if out else np.zeros(0, np.int64))
            trues.append(ws.y)

    def score(clients: list[int]) -> tuple[float, float]:
        if not clients:
            return math.nan, math.nan
        y = np.concatenate([trues[k] for k in clients])
        p = np.concatenate([preds[k] for k in clients])
        return accuracy(y, p), macro_f1(y, p, n_classes)

    everyone = list(range(setup.n_clients))
    acc, f1 = score(everyone)
    tiers = {}
    for t in tier_names(setup):
        tiers[t] = score([k for k in everyone if setup.devices[k].tier == t])[1]
    rare = setup.rare_modality
    rare_f1 = score([k for k in everyone if rare is not None and rare in setup.client_modalities(k)])[1]
    return Evaluation(acc, f1, rare_f1, tiers)


def tier_names(setup: RunSetup) -> list[str]:
    seen: list[str] = []
    for d in setup.devices:
        if d.tier not in seen:
            seen.append(d.tier)
    return seen


class Server:
    def __init__(self, setup: RunSetup, transport: ServerTransport, model: Model,
                 on_round: Callable[[RoundRecord], None] | None = None, dump_dir: str | None = None) -> None:
        self.setup = setup
        self.transport = transport
        self.model = model
        reg = setup.registry
        self.blocks = [reg.get(model, b) for b in range(len(reg))]
        self.on_round = on_round
        self.dump_dir = Path(dump_dir) if dump_dir else None
        self.wall_elapsed = 0.0
        self.virtual_elapsed = 0.0
        self.analytic_elapsed = 0.0
        self.analytic_energy = 0.0

    def sync_model(self) -> None:
        for b, vec in enumerate(self.blocks):
            self.setup.registry.set(self.model, b, vec)

    def run_round(self, rnd: int) -> RoundRecord:
        setup = self.setup
        t0 = time.perf_counter()
        strategy = setup.strategy
        plan = strategy.configure_round(rnd)
        notes = strategy.notes(plan)
        self._dump(rnd, "before")
        ex = self.transport.run_round(plan, self.blocks)
        rep = ex.reports
        col = {name: rep[:, i] for i, name in enumerate(wire.REPORT_FIELDS)}
        agg = strategy.aggregate(rnd, plan, self.blocks, ex.sums, col["samples"])
        self.blocks, div = agg.groups, agg.divergence
        self._dump(rnd, "after")
        samples = notes.samples if notes.samples is not None else plan.steps * setup.config.strategy.batch_size
        ana = analytic_round(strategy.ctx.groups, strategy.ctx.fleet, plan.alloc, notes.accessible, samples)
        self.analytic_elapsed += ana.time_s
        self.analytic_energy += ana.energy_j
        wall = time.perf_counter() - t0
        span = col["download_s"] + col["busy_s"] + col["upload_s"]
        round_s = float(span.max()) if span.size else 0.0
        idle = np.maximum(0.0, round_s - span)
        nbytes = col["bytes_up"] + col["bytes_down"]
        energy = modeled_energy(setup, col["busy_s"], round_s, nbytes)
        self.wall_elapsed += wall
        self.virtual_elapsed += round_s
        ev = None
        if rnd % max(1, setup.config.eval_every) == 0 or rnd == setup.config.rounds:
            self.sync_model()
            ev = evaluate(setup, self.model)
        clients = {
            "busy_s": col["busy_s"], "wait_s": idle, "idle_s": idle, "compute_wall_s": col["compute_wall_s"],
            "lag_s": col["lag_s"], "download_s": col["download_s"], "upload_s": col["upload_s"],
            "bytes_up": col["bytes_up"], "bytes_down": col["bytes_down"], "energy_j": energy,
            "energy_measured_j": col["energy_measured_j"], "steps": col["steps"], "samples": col["samples"],
            "rejected": col["rejected"], "loss": col["loss"], "flops": col["flops"],
            "budget": (notes.budget if notes.budget is not None else plan.alloc.sum(axis=1)).astype(np.float64),
            "n_groups": plan.alloc.sum(axis=1).astype(np.float64), "analytic_time_s": ana.compute_s + ana.comm_s,
            "analytic_energy_j": ana.client_energy_j,
        }
        assert set(clients) == set(CLIENT_METRICS)
        losses = col["loss"][np.isfinite(col["loss"])]
        measured = col["energy_measured_j"]
        row = {
            "round": rnd, "wall_time_s": wall, "wall_elapsed_s": self.wall_elapsed, "virtual_time_s": round_s,
            "virtual_elapsed_s": self.virtual_elapsed,
            "accuracy": ev.accuracy if ev else math.nan, "macro_f1": ev.macro_f1 if ev else math.nan,
            "rare_f1": ev.rare_f1 if ev else math.nan,
            "bytes_up": float(col["bytes_up"].sum()), "bytes_down": float(col["bytes_down"].sum()),
            "energy_j": float(energy.sum()),
            "energy_measured_j": float(measured.sum()) if np.all(np.isfinite(measured)) else math.nan,
            "train_loss": float(losses.mean()) if losses.size else math.nan,
            "deadline_s": plan.deadline_s if math.isfinite(plan.deadline_s) else math.nan,
            "rejected": int(col["rejected"].sum()),
            "t_star": notes.t_star, "analytic_time_s": ana.time_s, "analytic_elapsed_s": self.analytic_elapsed,
            "analytic_energy_j": ana.energy_j, "analytic_energy_cum_j": self.analytic_energy,
            "analytic_mb_up": ana.up_bytes / 1e6, "analytic_mb_down": ana.down_bytes / 1e6,
            "trained_pct": 100.0 * ana.trained_fraction,
        }
        names = tier_names(setup)
        tier_f1 = np.array([ev.tier_f1[t] if ev else math.nan for t in names])
        rec = RoundRecord(row, clients, np.asarray(div, np.float64), plan.alloc.astype(np.uint8), tier_f1)
        if self.on_round is not None:
            self.on_round(rec)
        return rec

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
