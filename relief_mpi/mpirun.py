"""The MPI job: every rank builds the same setup, rank 0 serves, ranks 1..N-1 are clients.

Start-up problems (bad options, unreadable data, a fleet that does not fit, an existing --out)
are found before any round: every rank reports its verdict, rank 0 prints the first problem as
one line, and every rank exits 2. A started run that stops early (a failed log write, a diverged
model, the round watchdog, SIGINT/SIGTERM) raises a stops exception on rank 0 (see cli.train);
anything else raised later aborts the whole job.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mpi4py import MPI

from relief_mpi import signals
from relief_mpi.comm.mpi import MpiClientTransport, MpiServerTransport
from relief_mpi.comm.transport import Handshake
from relief_mpi.comm.wait import wait_all
from relief_mpi.comm.wire import fixed_utf8, utf8_text
from relief_mpi.config import RunConfig
from relief_mpi.device.throttle import prepare_ranks
from relief_mpi.errors import ReliefError
from relief_mpi.mpirun_types import Resolved, StartupRefused
from relief_mpi.run import (
    DebugHooks,
    Progress,
    check_resumable,
    serve,
    server_model,
    setup_done_line,
    startup_line,
)
from relief_mpi.setup import RunSetup, build_setup

_MSG_LEN = 512


def mpi_library_line() -> str:
    """The MPI library's first version line (Open MPI ends the string with a NUL byte)."""
    return MPI.Get_library_version().replace("\0", "").splitlines()[0].strip()


def gather_hosts(world: MPI.Comm) -> list[str]:
    mine = fixed_utf8(socket.gethostname(), 64)
    allh = np.zeros((world.Get_size(), 64), np.uint8)
    wait_all([world.Iallgather(mine, allh)])
    return [utf8_text(r) for r in allh]


def agree_to_start(world: MPI.Comm, error: str | None) -> None:
    """Every rank states its start-up verdict; if any failed, all raise StartupRefused."""
    rank = world.Get_rank()
    mine = fixed_utf8(error or "", _MSG_LEN)
    flags = np.zeros(1, np.int64)
    allmsg = np.zeros((world.Get_size(), _MSG_LEN), np.uint8) if rank == 0 else None
    wait_all([world.Igather(mine, allmsg, root=0)])
    first = ""
    if rank == 0:
        for r, msg in enumerate(allmsg):
            if msg.any():
                text = utf8_text(msg)
                first = text if r == 0 or text.startswith("rank ") else f"rank {r}: {text}"
                break
        flags[0] = 1 if first else 0
    wait_all([world.Ibcast(flags, root=0)])
    if flags[0]:
        raise StartupRefused(first, printable=rank == 0)


def config_from_root(world: MPI.Comm, resolve: Callable[[], Resolved]) -> tuple[RunConfig, Resolved | None]:
    """Rank 0 resolves the run and sends the config to every rank as JSON bytes (no pickle);
    a problem there is one line from rank 0 and exit 2 everywhere."""
    rank = world.Get_rank()
    head = np.zeros(2, np.int64)
    payload = b""
    resolved = None
    if rank == 0:
        try:
            resolved = resolve()
            if resolved.world_size is not None and resolved.world_size != world.Get_size():
                raise ReliefError(f"the run being resumed had {resolved.world_size} ranks; relaunch with "
                                  f"-n {resolved.world_size} (this job has {world.Get_size()})")
            payload = resolved.config.to_json().encode()
        except ReliefError as e:
            head[0], payload = 1, str(e).encode()
        head[1] = len(payload)
    wait_all([world.Ibcast(head, root=0)])
    buf = np.frombuffer(payload, np.uint8).copy() if rank == 0 else np.zeros(int(head[1]), np.uint8)
    wait_all([world.Ibcast(buf, root=0)])
    text = bytes(buf).decode("utf-8")
    if head[0]:
        raise StartupRefused(text, printable=rank == 0)
    return RunConfig.from_json(text), resolved


def run_mpi(resolve: Callable[[], Resolved], progress: Progress | None,
            debug: DebugHooks = DebugHooks()) -> Path | None:
    """Run the job on COMM_WORLD; returns the log path on rank 0, None on clients.

    Rank 0 raises stops.RunStopped / stops.Interrupted when a started run stops early (the
    caller prints the line and, unless the clients were released, ends the job)."""
    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    if size < 2:
        raise StartupRefused(f"relief-mpi train needs at least 2 MPI ranks (1 server + 1 or more clients), got {size}; "
                          "run e.g. `mpirun -n 5 relief-mpi train`, or `relief-mpi train --transport inprocess`",
                             printable=rank == 0)
    signals.install("server" if rank == 0 else "client")
    say = progress if rank == 0 else None
    t0 = time.perf_counter()
    hosts = gather_hosts(world)
    cfg, resolved = config_from_root(world, resolve)
    error = None
    setup: RunSetup | None = None
    initial = None
    if say is not None:
        say(startup_line(cfg, size - 1))
    try:
        setup = build_setup(cfg, size - 1, hosts)
        if resolved is not None:
            check_resumable(setup, resolved.resume, resolved.out)
            if resolved.resume is None:
                initial = server_model(setup)  # a bad --base is a start-up error, not an abort
    except ReliefError as e:
        error = str(e)
    agree_to_start(world, error)
    assert setup is not None
    if say is not None:
        say(setup_done_line(setup, time.perf_counter() - t0))
    # Device emulation (issue 5): client ranks pin their cores, set torch threads (and GPU) from their
    # profile and find their energy meter; rank 0 gathers each client's settings for the log.
    setup.device_info.update(prepare_ranks(world, [d.profile for d in setup.devices], hosts))
    if rank == 0:
        assert resolved is not None
        transport = MpiServerTransport(setup.strategy.ownership(), setup.registry.sizes, world)
        serve(setup, transport, resolved.out, hosts, mpi_library_line(), size,
              progress, debug, resolved.resume, initial, resolved.round_timeout)
        return resolved.out
    transport_c = MpiClientTransport(setup.strategy.ownership(), setup.registry.sizes, world)
    trainer = setup.trainer(rank - 1, debug.client_fault(rank), debug.dump_dir)
    base = transport_c.start(Handshake(debug.version_for(rank), setup.data.fingerprint, hosts[rank]))
    if base is None:
        raise StartupRefused("the server refused to start", printable=False)
    trainer.set_base(base)
    while (plan := transport_c.next_plan()) is not None:
        blocks = transport_c.receive_blocks(plan)
        updates, report = trainer.train(plan, blocks)
        transport_c.send(plan, updates, report)
    return None
