"""`relief-mpi train`: one federated run, one HDF5 log."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from relief_mpi.bounds import check_clients_fit
from relief_mpi.cli.errors import abort_job, stop_here
from relief_mpi.cli.options import PARAM_KEYS, build_config, common_options, total_rounds
from relief_mpi.cli.output import Progress
from relief_mpi.cli.settings import register_command
from relief_mpi.cli.startup import loading_line, said_start
from relief_mpi.comm.watchdog import ServerSilent
from relief_mpi.config import RNG_STREAMS, RunConfig
from relief_mpi.debug import DebugHooks
from relief_mpi.errors import ReliefError
from relief_mpi.job import Resolved
from relief_mpi.log.lock import hold, mpi_launch_size, release_all
from relief_mpi.stops import Interrupted, RunStopped

__all__ = ["check_out", "check_writable", "default_out", "find_log", "parse_fault", "resolve_resume", "train"]


def default_out(strategy: str, dataset: str, seed: int) -> Path:
    return Path("runs") / f"{strategy}-{dataset}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}.h5"


def check_out(path: Path, overwrite: bool) -> Path:
    """The log path, refused before anything starts if it cannot be written. A 0-byte file (left by
    a start that was killed before it wrote anything) holds nothing and is replaced."""
    if path.suffix not in (".h5", ".hdf5"):
        raise ReliefError(f"--out {path}: the log is HDF5; give a path ending in .h5")
    if path.exists() and path.is_dir():
        raise ReliefError(f"--out {path} is a directory")
    check_writable(path, "--out")
    hold(path, "--out")  # one writer per log, for the whole run (log.lock)
    if path.exists() and not overwrite and path.stat().st_size > 0:
        raise ReliefError(f"--out {path} exists; pass --overwrite to replace it (or pick another path)")
    return path


def check_writable(path: Path, what: str) -> None:
    """Create the folder and a probe file beside `path`: a read-only or impossible path is one line now,
    not an error after every rank has started."""
    blocking = next((a for a in [path.parent, *path.parent.parents] if a.exists() and not a.is_dir()), None)
    if blocking is not None:
        raise ReliefError(f"{what} {path}: cannot write there ({blocking} is a file, not a folder)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(f".{path.name}.probe{os.getpid()}")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ReliefError(f"{what} {path}: cannot write there ({e.strerror or e})") from None


def parse_fault(value: str | None) -> tuple[str, int, int] | None:
    if not value:
        return None
    try:
        kind, rank, rnd = value.split(":")
        if kind not in ("nan", "raise", "kill", "version", "logfull"):
            raise ValueError
        return kind, int(rank), int(rnd)
    except ValueError:
        raise ReliefError(f"--fault {value!r}: use nan|raise|kill|version|logfull:RANK:ROUND") from None


def find_log(path: Path) -> Path:
    """--resume takes the log or the folder that holds it (exactly one .h5)."""
    if path.is_dir():
        logs = sorted(path.glob("*.h5"))
        if len(logs) != 1:
            raise ReliefError(f"--resume {path}: expected one .h5 log in the folder, found {len(logs)}; name the log")
        return logs[0]
    if not path.exists():
        raise ReliefError(f"--resume {path}: no such file")
    return path


def check_rng(rng: str, transport: str, resuming: bool) -> None:
    """--rng authors is one generator that the clients draw from in turn (relief_mpi/rng.py): it needs
    every client in this process, and it is not in a checkpoint."""
    if rng != "authors":
        return
    if transport != "inprocess":
        raise ReliefError("--rng authors needs --transport inprocess: it is the authors' single global generator, "
                          "drawn by the clients one after another, while under MPI each client rank owns its own "
                          "stream (use --rng ours, the default, under mpirun)")
    if resuming:
        raise ReliefError("a run with --rng authors cannot be resumed: the authors' global generator is not in the "
                          "checkpoint; rerun it from the start (same seed, same numbers)")


def resolve_resume(kw: dict[str, Any], given: set[str]) -> Resolved:
    """The run to continue: its own config, the last checkpoint, and nothing the user changed."""
    from relief_mpi.config import flatten
    from relief_mpi.log.check import saved_config
    from relief_mpi.log.hdf5 import read_log

    if kw["out"]:
        raise ReliefError("--resume continues the log it names; drop --out")
    path = find_log(Path(kw["resume"]))
    check_writable(path, "--resume")
    hold(path, "--resume")  # before reading: another run may be writing it (log.lock)
    log = read_log(path)  # a damaged or foreign file is one line (log.check.LogReadError)
    saved_json = log.attrs["config"]
    saved_config(path, saved_json)
    saved = json.loads(saved_json)
    from relief_mpi.checkpoint import (  # torch: only once the log is known to be one
        check_against_log,
        checkpoint_path,
        config_differences,
        describe_differences,
        load_checkpoint,
    )

    ck = load_checkpoint(checkpoint_path(path))
    diff = config_differences(json.loads(ck.config_json), saved)  # rounds may differ: an extended run
    if diff:
        raise ReliefError(f"--resume {path}: the checkpoint {checkpoint_path(path).name} belongs to another config "
                          f"(differs in {', '.join(diff)}); refusing to mix them")
    check_against_log(ck, log.rounds, path)  # a round the log keeps, with the times it logged
    given_cfg = flatten(build_config(kw).to_dict())
    # A log written before a setting existed ran with that setting's default.
    saved_cfg = RunConfig.from_dict(saved)
    flat = flatten(saved_cfg.to_dict())
    free = ("rounds", "device.device")  # an extended run; another device (numbers then within docs/devices.md#gpu)
    changed = sorted(PARAM_KEYS[p] for p in given if p in PARAM_KEYS and PARAM_KEYS[p] not in free
                     and given_cfg[PARAM_KEYS[p]] != flat[PARAM_KEYS[p]])
    if changed:
        raise ReliefError(f"--resume {path}: the checkpoint was made with another config: "
                          f"{describe_differences(saved_json, given_cfg, changed)}; drop those options to resume")
    rounds = total_rounds(kw["rounds"], saved_cfg.data) if "rounds" in given else int(saved["rounds"])
    if rounds <= ck.round:
        raise ReliefError(f"--resume {path}: the checkpoint is at round {ck.round} of {rounds}: nothing to do; "
                          "pass a larger --rounds to extend the run")
    cfg = dataclasses.replace(saved_cfg, rounds=rounds)
    if "device" in given:  # a resumed run may move to another device (docs/devices.md#gpu)
        cfg = dataclasses.replace(cfg, device=dataclasses.replace(cfg.device, device=kw["device"]))
    return Resolved(cfg, path, ck, world_size=int(log.attrs["world_size"]), n_clients=len(log.profiles))


def _round_timeout(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    del ctx, param
    if value == "auto":
        return None
    if value == "none":
        return math.inf
    try:
        v = float(value)
        if not (math.isfinite(v) and v > 0):
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r}: use auto, none or a number of seconds > 0") from None
    return v


@click.command()
@common_options
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="HDF5 log path; default runs/<strategy>-<dataset>-seed<seed>-<time>.h5.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--transport", type=click.Choice(["mpi", "inprocess"]), default="mpi", show_default=True,
              help="mpi: run under mpirun (rank 0 server, ranks 1..N-1 clients); inprocess: every client in "
                   "this one process (no MPI needed).")
@click.option("--rng", type=click.Choice(RNG_STREAMS), default="ours", show_default=True,
              help="Local batch order and dropout. ours: each client's own stream per (seed, round, client), "
                   "the same in-process and under MPI. authors (--transport inprocess, on the CPU): the "
                   "authors' simulator's single global torch generator in their order (model init, then per "
                   "client in turn its DataLoader shuffles and dropout, one draw per round's evaluation), so with "
                   "--protocol paper --split paper a run draws what their run of the same seed draws, with their "
                   "float32 z-score of the data and their float32 client-after-client sum of the uploads "
                   "(docs/bench.md 3.7).")
@click.option("--clients", type=click.IntRange(min=1), default=None,
              help="Number of clients. In-process: default 4. Under MPI (N ranks): default N-1, one per client "
                   "rank (or the highest client a fleet file's tier `ranks` name, if more). More clients than "
                   "client ranks (--clock virtual only) are spread round robin: client k (1..K) runs on rank "
                   "1 + (k-1) mod (N-1), and a rank trains its clients in turn, each with its own device "
                   "profile, sensors, data, seed stream, clock and energy account.")
@click.option("--quiet", is_flag=True, help="No start-up and per-round lines (warnings and errors still print).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Write a checkpoint (server state; clients are stateless between rounds) every K rounds and "
                   "after the last, atomically, as <log>.ckpt.pt beside the log; 0 = never.")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue RUN.h5 (or the folder holding it) from its last checkpoint, appending to the same "
                   "log; its config is reused (only --rounds may change, to extend the run).")
@click.option("--round-timeout", default="auto", show_default=True, callback=_round_timeout,
              help="Round watchdog (MPI): if a round has not finished after this many seconds (a client stopped, "
                   "hung or lost its link), rank 0 ends the job with one line naming the rank and host, keeps "
                   "the log and the last checkpoint, and exits 4. auto = max(120 s, 10x the longest round so "
                   "far; the first round: 120 s per client on the busiest rank, plus with --clock real 10x the "
                   "slowest client's emulated round from its profile); none = wait forever. The clients watch "
                   "rank 0 the same way (plus at least 30 s for its work between rounds): a silent server is "
                   "one line naming it, exit 4.")
@click.option("--fault", hidden=True, default=None,
              help="Test only: KIND:RANK:ROUND injects nan (client update), raise or kill (any rank), or "
                   "logfull (the log write of ROUND fails as on a full disk).")
@click.option("--debug-dump", hidden=True, default=None, type=click.Path(file_okay=False),
              help="Test only: save every client's block deltas and the server's blocks per round here.")
@click.pass_context
def train(ctx: click.Context, **kw: Any) -> None:
    """Run one federated training job and write its HDF5 round log.

    \b
    Under MPI:   mpirun -n 5 relief-mpi train [options]
    One process: relief-mpi train --transport inprocess --clients 4
    From a file: relief-mpi train --config run.toml [options override it]

    With no options it trains FedAvg for 20 rounds on the built-in synthetic dataset with the
    default three-tier fleet, prints one line per round, and ends with the log's path.

    \b
    Exit codes: 0 done; 2 bad input (nothing started); 1 the log or a checkpoint could not be
    written; 3 diverged: every client's update was rejected (non-finite) for 3 rounds in a row
    (a warning line names the rejected ranks each round); 4 the round watchdog ended the job;
    130/143 interrupted by SIGINT/SIGTERM (the log keeps every complete round and says how to resume).
    """
    given = {p for p in kw if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE}
    progress = None if kw["quiet"] else (lambda line: click.echo(line))
    if progress is not None and not said_start() and (line := loading_line(kw["transport"])) is not None:
        progress(line)  # before torch is imported on every rank (issue 22, case 18)
    debug = DebugHooks(parse_fault(kw["fault"]), kw["debug_dump"])

    def resolve() -> Resolved:
        if kw["resume"]:
            res = resolve_resume(kw, given)
        else:
            cfg = build_config(kw)
            p = Path(kw["out"]) if kw["out"] else default_out(cfg.strategy.name, cfg.data.dataset, cfg.seed)
            res = Resolved(cfg, check_out(p, kw["overwrite"]))
        check_rng(res.config.rng, kw["transport"], res.resume is not None)
        res.round_timeout = kw["round_timeout"]
        if kw["clients"] is not None:
            if res.n_clients is not None and kw["clients"] != res.n_clients:
                raise ReliefError(f"the run being resumed had {res.n_clients} clients, not {kw['clients']}")
            res.n_clients = kw["clients"]
            check_clients_fit(res.config, res.n_clients)  # before anything is allocated (issue 22, case 7)
        return res

    try:  # the log's writer lock (log.lock) is held from resolve() to the end of the run
        if kw["transport"] == "inprocess":
            refuse_inprocess_under_launcher()
            res = resolve()  # before torch is imported: a bad --out or --resume is one line at once
            from relief_mpi import signals
            from relief_mpi.run import run_inprocess

            n_clients = res.n_clients or 4
            signals.install("server")
            try:
                run_inprocess(res.config, n_clients, res.out, progress, debug, res.resume)
            except (RunStopped, Interrupted) as e:
                stop_here(e)
            click.echo(f"log: {res.out}")
            return
        _train_mpi(resolve, progress, debug)
    finally:
        release_all()


def refuse_inprocess_under_launcher() -> None:
    """`mpirun -n 3 relief-mpi train --transport inprocess` would start three whole runs on one log."""
    size = mpi_launch_size()
    if size is not None and size[1] > 1:
        raise ReliefError(f"--transport inprocess runs the whole job in one process, but this was started as "
                          f"{size[1]} MPI ranks ({size[0]}={size[1]}): each would run it on the same log; drop "
                          "mpirun, or drop --transport inprocess")


def _train_mpi(resolve: Callable[[], Resolved], progress: Progress | None, debug: DebugHooks) -> None:
    from relief_mpi.mpirun import StartupRefused, run_mpi

    try:
        out = run_mpi(resolve, progress, debug)
    except StartupRefused as e:
        if e.printable:
            click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except ServerSilent as e:  # a client rank: the server is gone; this line is the job's one line
        from relief_mpi.comm.world import abort

        click.echo(f"error: {e}", err=True)
        abort(e.exit_code, quiet=True)
    except BaseException:  # noqa: BLE001 - any failure on any rank must end the whole job, never hang
        abort_job(released_ok=True)
    if out is not None:
        click.echo(f"log: {out}")


register_command(train)  # its option names are known to --config files of other commands
