"""The MPI job: every rank builds the same setup, rank 0 serves, ranks 1..N-1 host the clients.

With --clients K (default N-1) the clients are spread round robin over the N-1 client ranks
(comm.placement: client k on rank 1 + k mod (N-1)); a rank trains its clients in turn on one
model. --clock real keeps one client per rank (emulating devices concurrently in real time needs
a process each).

Start-up problems (bad options, unreadable data, a fleet that does not fit, an existing --out)
are found before any round: every rank reports its verdict, rank 0 prints the first problem as
one line, and every rank exits 2. A started run that stops early (a failed log write, a diverged
model, the round watchdog, SIGINT/SIGTERM) raises a stops exception on rank 0 (see cli.train);
anything else raised later aborts the whole job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from relief_mpi import signals
from relief_mpi.cli.output import Progress, setup_done_line, startup_line
from relief_mpi.comm.mpi import MpiClientTransport, MpiServerTransport
from relief_mpi.comm.placement import clients_of, host_rank
from relief_mpi.comm.transport import Handshake
from relief_mpi.comm.watchdog import ServerWatch
from relief_mpi.comm.world import World, library_line
from relief_mpi.config import RunConfig
from relief_mpi.debug import DebugHooks
from relief_mpi.device.throttle import REPORT_LEN, process_device, rank_report, read_reports
from relief_mpi.errors import ReliefError, StartupRefused
from relief_mpi.job import Resolved, check_clients
from relief_mpi.round_bound import server_watch
from relief_mpi.run import check_resumable, serve, server_model
from relief_mpi.run_setup import Model, RunSetup, build_setup

__all__ = ["StartupRefused", "run_mpi"]


def run_mpi(resolve: Callable[[], Resolved], progress: Progress | None,
            debug: DebugHooks = DebugHooks()) -> Path | None:
    """Run the job on COMM_WORLD; returns the log path on rank 0, None on clients.

    Rank 0 raises stops.RunStopped / stops.Interrupted when a started run stops early (the
    caller prints the line and, unless the clients were released, ends the job)."""
    world = World()
    rank, size = world.rank, world.size
    if size < 2:
        raise StartupRefused(f"relief-mpi train needs at least 2 MPI ranks (1 server + 1 or more clients), got {size}; "
                          "run e.g. `mpirun -n 5 relief-mpi train`, or `relief-mpi train --transport inprocess`",
                             printable=rank == 0)
    signals.install("server" if rank == 0 else "client")
    say = progress if rank == 0 else None
    t0 = time.perf_counter()
    hosts = world.hosts()
    resolved: Resolved | None = None

    def on_root() -> tuple[str, int]:
        nonlocal resolved
        resolved = check_clients(resolve(), size)
        if resolved.world_size is not None and resolved.world_size != size:
            raise ReliefError(f"the run being resumed had {resolved.world_size} ranks; relaunch with "
                              f"-n {resolved.world_size} (this job has {size})")
        return resolved.config.to_json(), resolved.n_clients or 0

    text, n_clients = world.config_from_root(on_root)
    cfg = RunConfig.from_json(text)
    n_clients = n_clients or size - 1
    if say is not None:
        say(startup_line(cfg, n_clients) + (f" on {size - 1} client ranks" if n_clients > size - 1 else ""))
    setup, initial = _start_up(world, cfg, n_clients, hosts, resolved)
    if say is not None:
        say(setup_done_line(setup, time.perf_counter() - t0))
    local = clients_of(rank, n_clients, size - 1) if rank else []
    _gather_device_info(world, setup, hosts, local, n_clients)
    given = resolved.round_timeout if resolved is not None else None
    timeout = world.bcast_f64(np.array([np.nan if given is None else given]))[0]  # the clients' watch (case 6)
    if rank == 0:
        assert resolved is not None
        transport = MpiServerTransport(setup.strategy.ownership(), setup.registry.sizes, world.comm)
        serve(setup, transport, resolved.out, hosts, library_line(), size,
              progress, debug, resolved.resume, initial, resolved.round_timeout)
        return resolved.out
    _host_clients(world, setup, hosts, local, debug, server_watch(setup, timeout, hosts, rank))
    return None


def _start_up(world: World, cfg: RunConfig, n_clients: int, hosts: list[str],
              resolved: Resolved | None) -> tuple[RunSetup, tuple[Model, np.ndarray] | None]:
    """Every rank's setup, and on rank 0 (`resolved`) the initial model of a new run. A start-up
    error on any rank stops every rank before a round (World.agree_to_start)."""
    error = None
    setup: RunSetup | None = None
    initial = None
    try:
        setup = build_setup(cfg, n_clients, hosts, world.size - 1)
        first = clients_of(world.rank, n_clients, world.size - 1)[:1] if world.rank else []
        setup.rank_device = process_device(cfg.device.device, setup.devices[first[0]].profile if first else None,
                                           hosts, world.rank)  # --device cuda with no GPU: a start-up error
        if resolved is not None:
            check_resumable(setup, resolved.resume, resolved.out)
            if resolved.resume is None:
                initial = server_model(setup)  # a bad --base is a start-up error, not an abort
    except ReliefError as e:
        error = str(e)
    world.agree_to_start(error)
    assert setup is not None
    return setup, initial


def _gather_device_info(world: World, setup: RunSetup, hosts: list[str], local: list[int], n_clients: int) -> None:
    """Device emulation (issue 5): client ranks pin their cores, set torch threads (and GPU) from their
    profile and find their energy meter; rank 0 gathers each client's settings for the log.
    A rank hosting several clients (--clock virtual only) is throttled by its first client's profile."""
    rank, size = world.rank, world.size
    reports = world.gather_text(rank_report(setup.devices[local[0]].profile, hosts, rank, setup.rank_device)
                                if rank else "", REPORT_LEN)
    if reports is not None:
        by_rank = read_reports(reports, hosts)
        setup.device_info.update({k: by_rank[host_rank(k, size - 1)] for k in range(n_clients)})


def _host_clients(world: World, setup: RunSetup, hosts: list[str], local: list[int], debug: DebugHooks,
                  watch: ServerWatch | None = None) -> None:
    """A client rank: train its clients on every plan the server sends until it sends none."""
    rank = world.rank
    transport = MpiClientTransport(setup.strategy.ownership(), setup.registry.sizes, world.comm)
    transport.watch = watch
    fault = debug.client_fault(rank)
    clients = setup.local_clients(local, {local[0]: fault} if fault is not None else None, debug.dump_dir)
    base = transport.start(Handshake(debug.version_for(rank), setup.data.fingerprint, hosts[rank]))
    if base is None:
        raise StartupRefused("the server refused to start", printable=False)
    clients.set_base(base)
    while (plan := transport.next_plan()) is not None:
        blocks = transport.receive_blocks(plan)
        updates, table = clients.train(plan, blocks)
        transport.send(plan, updates, table)
    signals.finished("released by the server")  # a signal now ends this rank at once (cli.entry)
