"""The server's round loop, written once for the in-process and the MPI transport.

Server.run is THE loop: for each round it sets the watchdog's limit (round_timeout), plans,
exchanges through the transport, aggregates, evaluates when due (relief_mpi.evaluation) and
makes the round's record; then it logs the record, checkpoints when due, prints the round's
line, warns about rejected updates and stops a run that diverged. A stop (stops.RunStopped,
stops.Interrupted) leaves with the log closed, its end marker set and the facts the user needs
filled in (run.serve starts the run: the handshake, the log, a resumed run's state).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from relief_mpi import __version__, signals
from relief_mpi.checkpoint import Checkpoint, checkpoint_path, save_checkpoint
from relief_mpi.cli.output import Progress, eprint, format_round
from relief_mpi.client import inject
from relief_mpi.comm.transport import ServerTransport
from relief_mpi.comm.watchdog import FACTOR, FLOOR_S
from relief_mpi.debug import DebugHooks
from relief_mpi.device.energy import attribute_gpu_energy, modeled_energy
from relief_mpi.device.throttle import energy_gpus
from relief_mpi.evaluation import Evaluation, evaluate, tier_names
from relief_mpi.learning import LearningWatch
from relief_mpi.log.hdf5 import CLIENT_METRICS, RoundLogWriter, RoundRecord
from relief_mpi.model.registry import ParamRegistry
from relief_mpi.round_bound import first_round_limit
from relief_mpi.rounds import REPORT_FIELDS, PlanNotes, RoundPlan
from relief_mpi.run_setup import Model, RunSetup
from relief_mpi.stops import DIVERGED_ROUNDS, Diverged, Interrupted, LogWriteError, RunStopped
from relief_mpi.strategy.system import AnalyticRound

__all__ = ["ROUND_TIMEOUT_FACTOR", "ROUND_TIMEOUT_FLOOR_S", "Server", "ServingState", "every_client_rejected",
           "rejected_warning", "round_timeout"]


ROUND_TIMEOUT_FLOOR_S = FLOOR_S  # the clients' watch on the server uses the same bound (comm/watchdog.py)
ROUND_TIMEOUT_FACTOR = FACTOR


def round_timeout(given: float | None, longest_wall_s: float, real_clock: bool, per_rank: int = 1,
                  first_s: float | None = None) -> float | None:
    """The watchdog's limit for the next round (None: none): `given` (--round-timeout), else max(120 s,
    10x the longest round so far); before the first round, 120 s per client on the busiest rank
    (`per_rank`: a rank trains its clients in turn), or `first_s` where given (round_bound: with --clock
    real the clients sleep as long as the emulated device would take; without it that round has no limit)."""
    if given is not None:
        return given
    if longest_wall_s == 0.0:
        if first_s is not None:
            return first_s
        return None if real_clock else ROUND_TIMEOUT_FLOOR_S * per_rank
    return max(ROUND_TIMEOUT_FLOOR_S, ROUND_TIMEOUT_FACTOR * longest_wall_s)


def rejected_warning(rec: RoundRecord, streak: int) -> str | None:
    """One line when clients' updates were rejected (non-finite), None when none were."""
    rejected = np.flatnonzero(rec.clients["rejected"] > 0)
    if rejected.size == 0:
        return None
    active = int(np.count_nonzero(rec.alloc.any(axis=1)))
    rnd = int(rec.row["round"])
    ranks = ", ".join(str(k + 1) for k in rejected)
    if streak:
        return (f"warning: round {rnd}: every client's update was rejected (non-finite: the training diverged; "
                f"ranks {ranks}); the model did not change ({streak} of {DIVERGED_ROUNDS} rounds in a row before "
                "the run stops; a lower --lr may help)")
    return (f"warning: round {rnd}: {rejected.size} of {active} client updates rejected (non-finite), ranks "
            f"{ranks}; the others were aggregated")


def every_client_rejected(rec: RoundRecord) -> bool:
    active = int(np.count_nonzero(rec.alloc.any(axis=1)))
    return active > 0 and int(np.count_nonzero(rec.clients["rejected"] > 0)) >= active


@dataclass(frozen=True)
class _RoundFacts:
    """One exchanged round as the log sees it: the plan and its notes, the clients' report columns
    (rounds.REPORT_FIELDS), the analytic figures, and what the reports give: each client's span
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
    energy = modeled_energy(*setup.power(), col["busy_s"], round_s, nbytes)
    return _RoundFacts(plan, notes, col, ana, span, round_s, idle, energy)


def _client_metrics(facts: _RoundFacts) -> dict[str, np.ndarray]:
    """The round's per-client arrays (log.hdf5.CLIENT_METRICS)."""
    col, plan, notes, ana = facts.col, facts.plan, facts.notes, facts.ana
    clients = {
        "busy_s": col["busy_s"], "idle_s": facts.idle, "compute_wall_s": col["compute_wall_s"],
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


@dataclass
class ServingState:
    """What the loop knows about its run when it has to stop early, and the watchdog's and the
    divergence check's memory."""

    in_round: bool = False  # a round was started on every rank and has not finished
    checkpoint_round: int | None = None
    streak: int = 0  # consecutive rounds in which every client was rejected
    longest_wall_s: float = 0.0
    learning: LearningWatch = field(default_factory=lambda: LearningWatch(0))  # not-learning warnings


class Server:
    """Rank 0 once the log is open: the global model, the transport, the log writer and the loop's state."""

    def __init__(self, setup: RunSetup, transport: ServerTransport, model: Model, writer: RoundLogWriter,
                 base: np.ndarray, progress: Progress | None = None, debug: DebugHooks = DebugHooks(),
                 round_timeout_s: float | None = None, per_rank: int = 1) -> None:
        """`round_timeout_s`: --round-timeout (None: automatic); `per_rank`: the clients on the
        busiest client rank (the first round's automatic limit)."""
        self.setup = setup
        self.transport = transport
        self.model = model
        self.writer = writer
        self.base = base
        self.ckpt_path = checkpoint_path(writer.path)
        self.progress = progress
        self.debug = debug
        self.round_timeout_s = round_timeout_s
        self.per_rank = per_rank
        self.state = ServingState(learning=LearningWatch(len(setup.data.spec.classes)))
        # setup pairs the registry with its model (BlockRegistry: MultimodalNet, GroupRegistry: PaperNet)
        self.registry = cast(ParamRegistry[Any], setup.registry)
        self.blocks = [self.registry.get(model, b) for b in range(len(self.registry))]
        self.dump_dir = Path(debug.dump_dir) if debug.dump_dir else None
        self.wall_elapsed = 0.0
        self.virtual_elapsed = 0.0
        self.analytic_elapsed = 0.0
        self.analytic_energy = 0.0

    def sync_model(self) -> None:
        for b, vec in enumerate(self.blocks):
            self.registry.set(self.model, b, vec)

    def restore(self, checkpoint: Checkpoint, kept: list[RoundRecord]) -> None:
        """Continue from a checkpoint: its global groups, elapsed times and strategy state, and the
        analytic running totals of the last round the log keeps."""
        last = kept[-1].row if kept else {}
        self.blocks = [np.array(b, np.float32) for b in checkpoint.blocks]
        self.wall_elapsed, self.virtual_elapsed = checkpoint.wall_elapsed, checkpoint.virtual_elapsed
        self.analytic_elapsed = float(last.get("analytic_elapsed_s", 0.0))
        self.analytic_energy = float(last.get("analytic_energy_cum_j", 0.0))
        self.sync_model()
        self.setup.strategy.load_state(checkpoint.strategy)
        self.state.checkpoint_round = checkpoint.round

    def run(self, first: int = 1, resumed: bool = False) -> list[RoundRecord]:
        """Rounds `first`..cfg.rounds under the watchdog; the log's end marker says how they ended."""
        cfg, transport, state = self.setup.config, self.transport, self.state
        records = []
        try:
            for rnd in range(first, cfg.rounds + 1):
                transport.set_round_timeout(round_timeout(self.round_timeout_s, state.longest_wall_s,
                                                          cfg.device.clock == "real", self.per_rank,
                                                          first_round_limit(self.setup, self.per_rank)))
                state.in_round = True
                with signals.critical() if transport.atomic_rounds else nullcontext():
                    rec = self.run_round(rnd)
                    self._after_round(rec)
                records.append(rec)
            transport.set_round_timeout(None)
            transport.stop()
            with signals.critical():  # a signal in the final write waits for it, then is the program's end's
                self.writer.close("complete")
                signals.finished(f"the log {self.writer.path} is complete ({cfg.rounds} rounds)")
        except (RunStopped, Interrupted) as e:
            e.clean = not state.in_round
            if e.clean:
                transport.stop()
            _close_stopped(self.writer, e, resumed)
            e.checkpoint_round = state.checkpoint_round if self.ckpt_path.exists() else None
            raise
        except BaseException:
            with suppress(LogWriteError):
                self.writer.close("failed")
            raise
        return records

    def run_round(self, rnd: int) -> RoundRecord:
        """Plan, exchange, aggregate, evaluate when due: one round's record."""
        setup = self.setup
        t0 = time.perf_counter()
        strategy = setup.strategy
        plan = strategy.configure_round(rnd)
        notes = strategy.notes(plan)
        self._dump(rnd, "before")
        ex = self.transport.run_round(plan, self.blocks)
        col = {name: ex.reports[:, i] for i, name in enumerate(REPORT_FIELDS)}
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
        return RoundRecord(self._round_row(rnd, wall, facts, ev), _client_metrics(facts), np.asarray(div, np.float64),
                           plan.alloc.astype(np.uint8), tier_f1, class_f1=class_f1, tier_pooled_f1=tier_pooled,
                           tier_time_s=tier_time, tier_analytic_time_s=tier_analytic)

    def _after_round(self, rec: RoundRecord) -> None:
        """Log the round, checkpoint when due, print its line, warn about rejected updates, stop a
        run that diverged (and a test's server fault)."""
        cfg, state = self.setup.config, self.state
        state.in_round = False  # the exchange is over: every client waits for the next plan
        rnd = int(rec.row["round"])
        with signals.critical():
            self.writer.append(rec)
        finite = all(bool(np.isfinite(b).all()) for b in self.blocks)
        every = cfg.checkpoint_every
        if finite and every and (rnd % every == 0 or rnd == cfg.rounds):
            self._checkpoint(rnd)
        if self.progress is not None:
            self.progress(format_round(rec, cfg.rounds, cfg.data.protocol == "paper"))
        state.longest_wall_s = max(state.longest_wall_s, float(rec.row["wall_time_s"]))
        state.streak = state.streak + 1 if every_client_rejected(rec) else 0
        warning = rejected_warning(rec, state.streak)
        if warning:
            eprint(warning)
        for kind, line in state.learning.observe(rec.row):  # not learning: a line, and a /warnings row
            eprint(line)
            with signals.critical():
                self.writer.add_warning(rnd, kind, line)
        _raise_if_diverged(rnd, finite, state.streak)
        fault = self.debug.client_fault(0)
        if fault is not None and fault[1] == rnd and fault[0] in ("raise", "kill"):
            inject(fault[0], "the server")

    def _checkpoint(self, rnd: int) -> None:
        """Save round `rnd`'s global groups and strategy state, safe from a signal midway."""
        setup = self.setup
        with signals.critical():
            save_checkpoint(Checkpoint(rnd, setup.config.to_json(), __version__, setup.data.fingerprint, self.blocks,
                                       self.base, setup.strategy.state(), self.wall_elapsed,
                                       self.virtual_elapsed), self.ckpt_path)
        self.state.checkpoint_round = rnd

    def _round_row(self, rnd: int, wall: float, facts: _RoundFacts, ev: Evaluation | None) -> dict[str, float]:
        """The round's /rounds row: times, the evaluation (NaN in a round without one), traffic,
        energy, loss and the analytic model's figures with their running totals."""
        col, plan, notes, ana = facts.col, facts.plan, facts.notes, facts.ana
        losses = col["loss"][np.isfinite(col["loss"])]
        measured = col["energy_measured_j"]
        return {
            "round": rnd, "published_round": rnd - 1,  # the authors count their seeding round as 0
            "wall_time_s": wall, "wall_elapsed_s": self.wall_elapsed, "virtual_time_s": facts.round_s,
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
            "trained_pct": 100.0 * ana.trained_fraction, "trained_params_pct": 100.0 * ana.trained_param_fraction,
        }

    def _dump(self, rnd: int, when: str) -> None:
        if self.dump_dir is not None:
            for b, vec in enumerate(self.blocks):
                np.save(self.dump_dir / f"r{rnd}-{when}-b{b}.npy", vec)


def _raise_if_diverged(rnd: int, finite: bool, streak: int) -> None:
    """Stop a run that cannot recover: a non-finite global model, or every update rejected for
    DIVERGED_ROUNDS rounds in a row."""
    if not finite:  # a NaN model stays NaN: every later round would be wasted (no checkpoint of it was written)
        raise Diverged(f"stopped at round {rnd}: the global model's parameters are non-finite; the training "
                       "diverged (try a lower --lr)")
    if streak >= DIVERGED_ROUNDS:
        raise Diverged(f"stopped at round {rnd}: every client's update was rejected (non-finite) for "
                       f"{DIVERGED_ROUNDS} rounds in a row; the training diverged (try a lower --lr)")


def _close_stopped(writer: RoundLogWriter, e: RunStopped | Interrupted, resumed: bool) -> None:
    """Set the end marker and the log facts of a stop; a log with no complete round is removed
    (it would only block the rerun), unless it continues a resumed run."""
    if not writer.failed:
        try:
            if writer.n_complete == 0 and not resumed:
                writer.remove()
            else:
                writer.close(e.status)
        except LogWriteError:
            pass
    kept = writer.path.exists() and (writer.n_complete > 0 or resumed)
    e.log = writer.path if kept else None
    e.log_rounds = writer.n_complete
