"""Run a configured job: in one process (tests, laptops) or as rank 0 / a client rank under MPI.

serve() starts rank 0's side of a run (the handshake, the log, a resumed run's state) and hands
it to the one round loop, server.Server.run; run_inprocess() builds the in-process job around it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import torch

from relief_mpi import signals
from relief_mpi.checkpoint import Checkpoint, check_fits_setup
from relief_mpi.cli.output import Progress, connecting_line, ready_line, setup_done_line, startup_line
from relief_mpi.client import LocalClients
from relief_mpi.comm.inprocess import InProcessServerTransport
from relief_mpi.comm.placement import clients_of
from relief_mpi.comm.transport import Handshake, HostedClients, ServerTransport
from relief_mpi.config import RunConfig
from relief_mpi.data.split import log_datasets
from relief_mpi.debug import DebugHooks
from relief_mpi.device.throttle import process_device
from relief_mpi.errors import ReliefError
from relief_mpi.evaluation import tier_names
from relief_mpi.log.attrs import log_attrs
from relief_mpi.log.hdf5 import RoundLogWriter, RoundRecord, read_log
from relief_mpi.model.pretrain import load_base, pretrain
from relief_mpi.run_setup import Model, RunSetup, build_setup
from relief_mpi.server import Server
from relief_mpi.stops import LogWriteError

__all__ = ["check_resumable", "run_inprocess", "serve", "server_model", "set_process_threads"]


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


def check_resumable(setup: RunSetup, resume: Checkpoint | None, out: Path) -> None:
    if resume is not None and resume.fingerprint != setup.data.fingerprint:
        raise ReliefError(f"cannot resume {out}: the data differ from the checkpoint's (fingerprint "
                          f"{setup.data.fingerprint}, checkpoint {resume.fingerprint}); use the same dataset files")
    if resume is not None:
        check_fits_setup(resume, setup, out)  # every field, before the log is touched (checkpoint.check_against_run)


def serve(setup: RunSetup, transport: ServerTransport, out: Path, hosts: list[str], mpi_library: str,
          world_size: int, progress: Progress | None, debug: DebugHooks = DebugHooks(),
          resume: Checkpoint | None = None, initial: tuple[Model, np.ndarray] | None = None,
          timeout_s: float | None = None) -> list[RoundRecord]:
    """Rank 0's whole job: start the clients, open the log, then Server.run runs every round.

    A stop (stops.RunStopped, stops.Interrupted) leaves with the log closed, its end marker set
    and the facts the user needs filled in; if no round was in flight the clients were released
    (e.clean), else the caller must end the job."""
    cfg = setup.config
    t_start = time.perf_counter()
    signals.finished(None)  # a signal stops this run through Interrupted again (a bench runs several)
    check_resumable(setup, resume, out)
    model, base = _starting_model(setup, resume, initial)
    if progress is not None:
        progress(connecting_line(setup.n_clients))
    me = Handshake(debug.version_for(0), setup.data.fingerprint, hosts[0] if hosts else socket.gethostname())
    handshakes = transport.start(base, me)
    hosts = [h.host for h in handshakes]
    kept = read_log(out).records()[:resume.round] if resume is not None else None
    writer = _open_log(setup, transport, out, log_attrs(setup, hosts, mpi_library, world_size), resume, kept, debug)
    busiest = len(clients_of(1, setup.n_clients, max(1, world_size - 1)))  # rank 1 hosts the most
    server = Server(setup, transport, model, writer, base, progress, debug, timeout_s, busiest)
    if resume is not None:
        server.restore(resume, kept or [])
    first = resume.round + 1 if resume is not None else 1
    if progress is not None:
        progress(ready_line(time.perf_counter() - t_start, first, cfg.rounds, cfg.data.protocol == "paper"))
    return server.run(first, resumed=resume is not None)


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
        split = log_datasets(setup.data.split, setup.config.data.split) if setup.data.split else None
        writer = RoundLogWriter(tmp, attrs, setup.n_clients, setup.registry.names, tier_names(setup), existing=kept,
                                extra=split)
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


def set_process_threads() -> int:
    """Torch intra-op threads for a process that trains alone: OMP_NUM_THREADS if set, else 1.
    torch's default (every core) slowed a process 5-6x on a host loaded by other jobs."""
    try:
        n = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        n = 1
    torch.set_num_threads(n)
    return n


def run_inprocess(cfg: RunConfig, n_clients: int, out: Path, progress: Progress | None = None,
                  debug: DebugHooks = DebugHooks(), resume: Checkpoint | None = None,
                  n_ranks: int | None = None) -> list[RoundRecord]:
    """Server and every client in this process (one model), through the in-process transport;
    the clients' update buffers are summed as if they sat on `n_ranks` client ranks (default one
    each), as the MPI transport places them."""
    set_process_threads()
    n_ranks = n_ranks or n_clients
    t0 = time.perf_counter()
    host = socket.gethostname()
    rdev = process_device(cfg.device.device, None, [host], 0)  # one device for every client here
    if progress is not None:
        progress(startup_line(cfg, n_clients))
    setup = build_setup(cfg, n_clients, None, n_ranks)
    setup.rank_device = rdev
    if progress is not None:
        progress(setup_done_line(setup, time.perf_counter() - t0))
    faults = {r - 1: f for r in range(1, n_ranks + 1) if (f := debug.client_fault(r)) is not None}
    trainers = setup.local_clients(list(range(n_clients)), faults, debug.dump_dir).trainers
    ranks: list[HostedClients] = [LocalClients([trainers[c] for c in clients_of(r, n_clients, n_ranks)])
                                  for r in range(1, n_ranks + 1)]
    transport = InProcessServerTransport(ranks, n_clients, setup.strategy.ownership(), setup.registry.sizes)
    return serve(setup, transport, out, [host] * (n_ranks + 1), "none (in-process)", n_ranks + 1, progress,
                 debug, resume)
