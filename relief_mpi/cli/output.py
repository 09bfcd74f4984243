"""What a run prints and how its process exits: the progress lines (start-up, one per round),
warnings on stderr, and the exit after a stop. The round loop (server.Server) and the job
(run, mpirun) call these; `Progress` is the callable they print through (None: --quiet)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from relief_mpi.comm import mpi_loaded

if TYPE_CHECKING:  # types only: printing a line imports neither torch nor h5py
    from relief_mpi.config import RunConfig
    from relief_mpi.log.hdf5 import RoundRecord
    from relief_mpi.run_setup import RunSetup

__all__ = ["Progress", "connecting_line", "eprint", "exit_process", "format_round", "ready_line",
           "setup_done_line", "startup_line"]

Progress = Callable[[str], None]


def eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def format_round(rec: RoundRecord, rounds: int, paper: bool = False) -> str:
    """One progress line. Under the paper protocol the published round number (ours - 1) is beside
    ours and macro-F1 is marked as the paper's metric; cohort-F1 is ours (the rare modality's
    clients on their own windows), not the paper's rare-modality F1 (`bench` computes that)."""
    r = rec.row
    rnd = int(r["round"])
    published = f" (published {rnd - 1}/{rounds - 1})" if paper else ""
    mark = (" (the paper's metric)", " (ours)") if paper else ("", "")
    return (f"round {rnd:>3}/{rounds}{published}  acc {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}{mark[0]}  "
            f"rare-cohort-F1 {r['rare_f1']:.3f}{mark[1]}  round {r['wall_time_s']:.2f} s wall, "
            f"{r['virtual_time_s']:.2f} s emulated")


def startup_line(cfg: RunConfig, n_clients: int) -> str:
    return f"start: data ({cfg.data.dataset}) and model ({cfg.model.model}, {cfg.model.mode}) for {n_clients} client(s)"


def setup_done_line(setup: RunSetup, seconds: float) -> str:
    n = sum(len(w) for w in setup.data.clients_train)
    return (f"start: data and model ready in {seconds:.1f} s ({n} training windows, {len(setup.registry)} "
            f"parameter groups, strategy {setup.config.strategy.name})")


def connecting_line(n_clients: int) -> str:
    return f"start: connecting {n_clients} client(s) (handshake, communicators)"


def ready_line(seconds: float, first: int, rounds: int, paper: bool = False) -> str:
    """Under the paper protocol the round range also in published numbers (ours - 1)."""
    published = f" (published {first - 1}..{rounds - 1})" if paper else ""
    return f"start: ready after {seconds:.1f} s; rounds {first}..{rounds}{published}"


def exit_process(code: int) -> None:
    """Exit with `code`. After a failed log write, HDF5 holds data it can never flush and retries
    (and may crash) at interpreter shutdown, so such a process leaves with os._exit once its
    output is flushed. Under MPI a non-zero exit waits for the clients (released by then) to be
    gone: MPICH's launcher kills every rank still running when one exits non-zero, and prints
    its BAD TERMINATION banner for them (exit 9 instead of ours)."""
    from relief_mpi.log.hdf5 import write_failed

    sys.stdout.flush()
    sys.stderr.flush()
    if mpi_loaded():
        from relief_mpi.comm.world import finalize, world_size

        several = world_size() > 1
        if (code != 0 and several) or write_failed():
            finalize()  # a barrier: every rank is leaving; released clients exit with 0 right after it
            if several:
                time.sleep(1.0)
    if not write_failed():
        sys.exit(code)
    os._exit(code)
