"""One writer per log: the process that writes a log (and its checkpoint) holds a lock on it.

Two writers on one log lose data (each rewrites what the other wrote), so `train --out LOG` and
`train --resume LOG` take the log's writer lock before anything else and keep it until the
process ends; a second one is refused with one line naming the holder's host and pid.

The lock is fcntl.flock on a hidden file beside the log, `.<name>.lock`, not on the log itself:
HDF5 takes its own flock on the file it opens (a second flock on the log would make the writer's
own open fail), and a resume replaces the log with a rewritten file (a lock on the old inode
would be lost with it). flock is released by the kernel when the holder exits, however it
exits (kill -9 included), so a lock file left behind by a killed run holds nothing: the next
writer takes it at once. Readers (report, config show) never look at it.

flock is local to a host's kernel: two writers on two hosts sharing a log over NFS are not
kept apart (HDF5 logs are not meant for NFS writes anyway).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from relief_mpi.errors import ReliefError

__all__ = ["LogBusy", "hold", "mpi_launch_size", "lock_path", "release_all"]

_held: dict[Path, tuple[Path, int]] = {}  # log (resolved) -> (lock file, its descriptor)


class LogBusy(ReliefError):
    """Another process writes this log."""


_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def mpi_launch_size() -> tuple[str, int] | None:
    """(variable, number of ranks) as an MPI launcher announced them, None when not under one: an
    in-process run started as several ranks would be several writers of one log. Unlike
    launcher.launcher_size, Slurm's SLURM_NTASKS is not read: an `sbatch -n 4` script may well run
    one in-process job."""
    for var in _SIZE_VARS:
        try:
            return var, int(os.environ[var])
        except (KeyError, ValueError):
            continue
    return None


def lock_path(log: Path) -> Path:
    return log.with_name(f".{log.name}.lock")


def holder_of(fd: int) -> str:
    """Who holds the lock, as it wrote itself into the lock file ("pid 123 on host h, since ...")."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        d = json.loads(os.read(fd, 4096).decode() or "{}")
        return f"pid {int(d['pid'])} on host {d['host']} (since {d['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not said which yet)"


def hold(log: Path, what: str) -> None:
    """Take `log`'s writer lock for the rest of this process (a no-op if it holds it already), or
    raise LogBusy naming the holder. Never waits."""
    key = log.resolve()
    if key in _held:
        return
    path = lock_path(log)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ReliefError(f"{what} {log}: cannot create its lock file {path.name} ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder_of(fd)
            os.close(fd)
            raise LogBusy(f"{what} {log}: the log is being written by {who}; two writers would lose rounds: wait "
                          "for that run to end, or pick another path") from None
        try:  # the file locked must still be the one at the path: a holder that ended may have removed it
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with contextlib.suppress(OSError):  # who holds it is a courtesy for the refusal line (a full disk may refuse it)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
    _held[key] = (path, fd)


def release_all() -> None:
    """Give up every lock this process holds and remove the lock files (removed first: another
    writer that opened one before then finds it gone and takes a new one)."""
    while _held:
        _, (path, fd) = _held.popitem()
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            os.close(fd)


atexit.register(release_all)
