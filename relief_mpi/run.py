"""Run a configured job: in one process (tests, laptops) or as rank 0 / a client rank under MPI."""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from relief_mpi import __version__, signals
from relief_mpi.checkpoint import Checkpoint, check_fits_setup, checkpoint_path, save_checkpoint
from relief_mpi.client import inject
from relief_mpi.comm.placement import clients_of
from relief_mpi.comm.transport import Handshake, ServerTransport
from relief_mpi.config import RunConfig
from relief_mpi.errors import ReliefError
from relief_mpi.log.hdf5 import RoundLogWriter, RoundRecord, read_log
from relief_mpi.model.pretrain import load_base, pretrain
from relief_mpi.run_setup import Model, RunSetup
from relief_mpi.server import Server, tier_names
from relief_mpi.stops import DIVERGED_ROUNDS, Diverged, Interrupted, LogWriteError, RunStopped

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DebugHooks:
    """Test-only hooks; never part of the config, so they cannot change a run's identity."""

    fault: tuple[str, int, int] | None = None  # (nan | raise | kill | version | logfull, rank, round)
    dump_dir: str | None = None  # clients' deltas and the server's blocks, per round, as .npy

    def version_for(self, rank: int) -> str:
        """The version a rank states at start (a test can make one rank lie about it)."""
        if self.fault is not None and self.fault[0] == "version" and self.fault[1] == rank:
            return "0.0.0-test"
        return __version__

    def log_fail_after(self) -> int | None:
        """logfull:0:R: the log write of round R fails as on a full disk (ENOSPC)."""
        if self.fault is None or self.fault[0] != "logfull":
            return None
        return self.fault[2] - 1

    def client_fault(self, rank: int) -> tuple[str, int] | None:
        if self.fault is None or self.fault[1] != rank:
            return None
        return self.fault[0], self.fault[2]


def server_model(setup: RunSetup) -> tuple[Model, np.ndarray]:
    """The initial global model and the frozen base vector (LoRA: pretrained or loaded)."""
    cfg = setup.config
    model = setup.make_model()
    if cfg.model.mode == "lora":
        if cfg.model.base:
            load_base(model, setup.data.spec, Path(cfg.model.base).expanduser())
        else:
            # the base's own optimizer settings, never the clients' --lr: the same data, model and seed
            # give the same base whatever the strategy or --lr; a diverged base stops the run before round 1
            m = cfg.model
            pretrain(model, setup.data.spec, setup.data.server_train, m.pretrain_epochs, cfg.strategy.batch_size,
                     m.pretrain_lr, cfg.seed, m.pretrain_optimizer)
    return model, setup.registry.get_base(model)


def log_attrs(setup: RunSetup, hosts: list[str], mpi_library: str, world_size: int) -> dict[str, object]:
    names = setup.data.spec.modality_names()
    profiles = [{
        "client": d.client, "rank": d.rank, "tier": d.tier, "profile": d.profile.name,
        "flops": d.profile.flops if np.isfinite(d.profile.flops) else "native",
        "p_busy_w": d.profile.p_busy_w, "p_idle_w": d.profile.p_idle_w,
        "uplink_mbps": d.profile.uplink_mbps, "downlink_mbps": d.profile.downlink_mbps,
        "modalities": list(setup.data.modality_sets[d.client]),
        "n_train": len(setup.data.clients_train[d.client]), "n_test": len(setup.data.clients_test[d.client]),
        # device emulation (issue 5): memory cap (recorded), latency, J/bit, meter and throttle settings
        "memory_mb": d.profile.memory_mb, "latency_ms": d.profile.latency_ms,
        "energy_per_bit_nj": d.profile.energy_per_bit_nj, "compute": d.profile.compute,
        "energy_source": setup.device_info.get(d.client, {}).get("energy_source", "none"),
        "throttle": {k: v for k, v in setup.device_info.get(d.client, {}).items() if k != "energy_source"},
    } for d in setup.devices]
    return {
        "relief_mpi_version": __version__, "config": setup.config.to_json(), "mpi_library": mpi_library,
        "world_size": world_size, "hosts": json.dumps(hosts), "profiles": json.dumps(profiles),
        "strategy": setup.config.strategy.name, "dataset": setup.data.spec.name,
        "modalities": json.dumps(list(names)), "classes": json.dumps(list(setup.data.spec.classes)),
        "rare_modality": names[setup.rare_modality] if setup.rare_modality is not None else "",
        "data_fingerprint": setup.data.fingerprint, "block_sizes": json.dumps(list(setup.registry.sizes)),
        "group_kinds": json.dumps(list(setup.registry.kinds)),
        "group_n_params": json.dumps(list(setup.registry.n_params)),
        "group_flops_per_sample": json.dumps(list(setup.strategy.ctx.groups.flops)),
        "flops_per_step": json.dumps({"enc_fwd": setup.costs.enc_fwd, "enc_bwd": setup.costs.enc_bwd,
                                      "top_fwd": setup.costs.top_fwd, "top_bwd": setup.costs.top_bwd}),
        "torch_version": torch.__version__, "python_version": platform.python_version(),
        "clock": setup.config.device.clock, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # who writes the log: `report` tells a run still going from one that ended without closing it
        "writer_pid": os.getpid(), "writer_host": socket.gethostname(),
        # measured-energy meter per client ("ina3221", "rapl", "nvml", "rapl+nvml" or "none"); modeled always
        "energy_source": json.dumps([p["energy_source"] for p in profiles]),
    }


def check_resumable(setup: RunSetup, resume: Checkpoint | None, out: Path) -> None:
    if resume is not None and resume.fingerprint != setup.data.fingerprint:
        raise ReliefError(f"cannot resume {out}: the data differ from the checkpoint's (fingerprint "
                          f"{setup.data.fingerprint}, checkpoint {resume.fingerprint}); use the same dataset files")
    if resume is not None:
        check_fits_setup(resume, setup, out)  # every field, before the log is touched (checkpoint.check_against_run)


def format_round(rec: RoundRecord, rounds: int) -> str:
    r = rec.row
    return (f"round {int(r['round']):>3}/{rounds}  acc {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}  "
            f"rare-F1 {r['rare_f1']:.3f}  round {r['wall_time_s']:.2f} s wall, {r['virtual_time_s']:.2f} s emulated")


ROUND_TIMEOUT_FLOOR_S = 120.0
ROUND_TIMEOUT_FACTOR = 10.0


def round_timeout(given: float | None, longest_wall_s: float, real_clock: bool, per_rank: int = 1) -> float | None:
    """The watchdog's limit for the next round (None: none): `given` (--round-timeout), else max(120 s,
    10x the longest round so far); before the first round, 120 s per client on the busiest rank
    (`per_rank`: a rank trains its clients in turn). With --clock real the clients sleep as long as
    the emulated device would take, which is not known before the first round: that round has no limit."""
    if given is not None:
        return given
    if longest_wall_s == 0.0:
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


@dataclass
class _RunState:
    """What serve knows about its run when it has to stop early."""

    in_round: bool = False  # a round was started on every rank and has not finished
    checkpoint_round: int | None = None
    streak: int = 0  # consecutive rounds in which every client was rejected
    longest_wall_s: float = 0.0


def serve(setup: RunSetup, transport: ServerTransport, out: Path, hosts: list[str], mpi_library: str,
          world_size: int, progress: Progress | None, debug: DebugHooks = DebugHooks(),
          resume: Checkpoint | None = None, initial: tuple[Model, np.ndarray] | None = None,
          timeout_s: float | None = None) -> list[RoundRecord]:
    """Rank 0's whole job: start the clients, run every round, log each one, checkpoint.

    A stop (stops.RunStopped, stops.Interrupted) leaves with the log closed, its end marker set
    and the facts the user needs filled in; if no round was in flight the clients were released
    (e.clean), else the caller must end the job."""
    cfg = setup.config
    t_start = time.perf_counter()
    check_resumable(setup, resume, out)
    model, base = _starting_model(setup, resume, initial)
    if progress is not None:
        progress(f"start: connecting {setup.n_clients} client(s) (handshake, communicators)")
    me = Handshake(debug.version_for(0), setup.data.fingerprint, hosts[0] if hosts else socket.gethostname())
    handshakes = transport.start(base, me)
    hosts = [h.host for h in handshakes]
    kept = read_log(out).records()[:resume.round] if resume is not None else None
    writer = _open_log(setup, transport, out, log_attrs(setup, hosts, mpi_library, world_size), resume, kept, debug)
    server = Server(setup, transport, model, None, debug.dump_dir)
    state = _RunState(checkpoint_round=resume.round if resume is not None else None)
    if resume is not None:
        last = kept[-1].row if kept else {}
        server.restore(resume.blocks, resume.wall_elapsed, resume.virtual_elapsed,
                       (float(last.get("analytic_elapsed_s", 0.0)), float(last.get("analytic_energy_cum_j", 0.0))))
        setup.strategy.load_state(resume.strategy)
    serving = _Serving(setup, transport, server, writer, base, checkpoint_path(out), progress, debug, state)
    server.on_round = serving.on_round
    first = resume.round + 1 if resume is not None else 1
    if progress is not None:
        progress(f"start: ready after {time.perf_counter() - t_start:.1f} s; rounds {first}..{cfg.rounds}")
    return serving.run_rounds(first, world_size, timeout_s, resumed=resume is not None)


def _starting_model(setup: RunSetup, resume: Checkpoint | None,
                    initial: tuple[Model, np.ndarray] | None) -> tuple[Model, np.ndarray]:
    """The global model and frozen base the run starts from: a resumed run's base on a fresh
    model, else `initial` (built by the caller) or a new one."""
    if resume is not None:
        model = setup.make_model()
        base = resume.base
        if base.size:
            setup.registry.set_base(model, base)
        return model, base
    return initial if initial is not None else server_model(setup)


def _open_log(setup: RunSetup, transport: ServerTransport, out: Path, attrs: dict[str, object],
              resume: Checkpoint | None, kept: list[RoundRecord] | None, debug: DebugHooks) -> RoundLogWriter:
    """The round log, new or (resume) rewritten with the complete rounds up to the checkpoint. If
    it cannot be written no round has started: the clients are released and the stop is clean."""
    tmp = out.with_name(out.name + ".resume.tmp") if resume is not None else out
    try:
        writer = RoundLogWriter(tmp, attrs, setup.n_clients, setup.registry.names, tier_names(setup), existing=kept)
        writer.fail_after = debug.log_fail_after()
        if resume is not None:
            os.replace(tmp, out)  # the rewritten log (complete rounds up to the checkpoint) takes the old one's place
            writer.path = out
    except (LogWriteError, OSError) as e:
        transport.stop()
        stop = e if isinstance(e, LogWriteError) else LogWriteError(f"replacing {out} failed: {e.strerror or e}")
        stop.clean = True
        if resume is not None:
            stop.log, stop.log_rounds, stop.checkpoint_round = out, resume.round, resume.round
        raise stop from None
    return writer


@dataclass(frozen=True)
class _Serving:
    """Rank 0 once the log is open: runs the rounds, and after each one logs it, checkpoints when
    due, reports it and stops the run if the training diverged."""

    setup: RunSetup
    transport: ServerTransport
    server: Server
    writer: RoundLogWriter
    base: np.ndarray
    ckpt_path: Path
    progress: Progress | None
    debug: DebugHooks
    state: _RunState

    def run_rounds(self, first: int, world_size: int, timeout_s: float | None, resumed: bool) -> list[RoundRecord]:
        """Rounds `first`..cfg.rounds under the watchdog; the log's end marker says how they ended."""
        cfg, transport, state = self.setup.config, self.transport, self.state
        records = []
        busiest = len(clients_of(1, self.setup.n_clients, max(1, world_size - 1)))  # rank 1 hosts the most
        try:
            for rnd in range(first, cfg.rounds + 1):
                transport.set_round_timeout(round_timeout(timeout_s, state.longest_wall_s, cfg.device.clock == "real",
                                                          busiest))
                state.in_round = True
                with signals.critical() if transport.atomic_rounds else nullcontext():
                    records.append(self.server.run_round(rnd))
            transport.set_round_timeout(None)
            transport.stop()
            self.writer.close("complete")
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

    def on_round(self, rec: RoundRecord) -> None:
        """The server's hook after each round (see the class)."""
        cfg, state = self.setup.config, self.state
        state.in_round = False  # the exchange is over: every client waits for the next plan
        rnd = int(rec.row["round"])
        with signals.critical():
            self.writer.append(rec)
        finite = all(bool(np.isfinite(b).all()) for b in self.server.blocks)
        every = cfg.checkpoint_every
        if finite and every and (rnd % every == 0 or rnd == cfg.rounds):
            self._checkpoint(rnd)
        if self.progress is not None:
            self.progress(format_round(rec, cfg.rounds))
        state.longest_wall_s = max(state.longest_wall_s, float(rec.row["wall_time_s"]))
        state.streak = state.streak + 1 if every_client_rejected(rec) else 0
        warning = rejected_warning(rec, state.streak)
        if warning:
            eprint(warning)
        _raise_if_diverged(rnd, finite, state.streak)
        fault = self.debug.client_fault(0)
        if fault is not None and fault[1] == rnd and fault[0] in ("raise", "kill"):
            inject(fault[0], "the server")

    def _checkpoint(self, rnd: int) -> None:
        """Save round `rnd`'s global groups and strategy state, safe from a signal midway."""
        setup, server = self.setup, self.server
        with signals.critical():
            save_checkpoint(Checkpoint(rnd, setup.config.to_json(), __version__, setup.data.fingerprint, server.blocks,
                                       self.base, setup.strategy.state(), server.wall_elapsed,
                                       server.virtual_elapsed), self.ckpt_path)
        self.state.checkpoint_round = rnd


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


def set_process_threads() -> int:
    """Torch intra-op threads for a process that trains alone: OMP_NUM_THREADS if set, else 1.
    torch's default (every core) slowed a process 5-6x on a host loaded by other jobs."""
    try:
        n = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        n = 1
    torch.set_num_threads(n)
    return n


def startup_line(cfg: RunConfig, n_clients: int) -> str:
    return f"start: data ({cfg.data.dataset}) and model ({cfg.model.model}, {cfg.model.mode}) for {n_clients} client(s)"


def setup_done_line(setup: RunSetup, seconds: float) -> str:
    n = sum(len(w) for w in setup.data.clients_train)
    return (f"start: data and model ready in {seconds:.1f} s ({n} training windows, {len(setup.registry)} "
            f"parameter groups, strategy {setup.config.strategy.name})")


def run_inprocess(cfg: RunConfig, n_clients: int, out: Path, progress: Progress | None = None,
                  debug: DebugHooks = DebugHooks(), resume: Checkpoint | None = None,
                  n_ranks: int | None = None) -> list[RoundRecord]:
    """Server and every client in this process (one model), through the in-process transport;
    the clients' update buffers are summed as if they sat on `n_ranks` client ranks (default one
    each), as the MPI transport places them."""
    set_process_threads()
    from relief_mpi.comm.inprocess import InProcessServerTransport
    from relief_mpi.run_setup import build_setup

    n_ranks = n_ranks or n_clients
    t0 = time.perf_counter()
    if progress is not None:
        progress(startup_line(cfg, n_clients))
    host = socket.gethostname()
    setup = build_setup(cfg, n_clients, None, n_ranks)
    if progress is not None:
        progress(setup_done_line(setup, time.perf_counter() - t0))
    faults = {r - 1: f for r in range(1, n_ranks + 1) if (f := debug.client_fault(r)) is not None}
    clients = setup.local_clients(list(range(n_clients)), faults, debug.dump_dir)
    transport = InProcessServerTransport(clients.trainers, setup.strategy.ownership(), setup.registry.sizes, n_ranks)
    return serve(setup, transport, out, [host] * (n_ranks + 1), "none (in-process)", n_ranks + 1, progress,
                 debug, resume)


def eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
