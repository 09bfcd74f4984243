"""SIGINT/SIGTERM: one line from the server, a clean log, no traceback from any rank.

Under mpiexec a Ctrl-C (or a SIGTERM to the launcher) reaches the launcher, which forwards it to
every rank at once. The server (rank 0, or the one in-process rank) raises `Interrupted` at the
next safe point: at once, except inside a `critical()` section, which finishes first. A log row
and a checkpoint are critical sections, and so is a whole round under MPI: a round that was
started on every rank must end on every rank, or the clients cannot be released cleanly. If the
round in flight does not finish within GRACE_S (a client is hung), the next wait raises anyway
(check_overdue) and the job is ended without releasing the clients.

A client does not react at all: if it left first, the launcher would kill the server before it
had printed its line and closed the log. The server ends the job within GRACE_S; only if it does
not (the signal was sent to this one client, `kill PID`) does the client leave quietly on its own
after CLIENT_GRACE_S.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from relief_mpi.stops import Interrupted

__all__ = ["CLIENT_GRACE_S", "GRACE_S", "SIGNALS", "check_overdue", "critical", "install"]

GRACE_S = 5.0
CLIENT_GRACE_S = 10.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_role: str | None = None
_critical = 0
_pending: int | None = None
_pending_at = 0.0
_raised = False
_done: str | None = None  # set once the run's log is complete: a signal then ends the process at once


def install(role: str) -> None:
    """Handle SIGINT and SIGTERM on this rank from now on; role is "server" or "client"."""
    global _role, _pending, _raised, _critical
    if threading.current_thread() is not threading.main_thread():
        return
    _role, _pending, _raised, _critical = role, None, False, 0
    for s in SIGNALS:
        signal.signal(s, _handler)


def _handler(signum: int, frame: FrameType | None) -> None:
    del frame
    global _pending, _raised, _pending_at
    if _role == "client":
        if _pending is None and _done is not None:  # released: end_process leaves with its code
            _pending = signum
        elif _pending is None:
            _pending = signum
            t = threading.Timer(CLIENT_GRACE_S, _client_leave, (signum,))
            t.daemon = True
            t.start()
        return
    if _done is not None:  # the log is complete: kept for end_process, nothing to stop
        if _pending is None:
            _pending = signum
        return
    if _raised:
        return  # already stopping: let the clean-up finish (the launcher's second Ctrl-C forces it)
    if _critical:
        if _pending is None:
            _pending, _pending_at = signum, time.monotonic()
        return
    _raised = True
    raise Interrupted(signum)


def finished(what: str | None) -> None:
    """The run's log is complete (`what` says so, e.g. "the log runs/r.h5 is complete"): from now
    on a signal does not raise into the clean-up that is left (the last lines, closing MPI, where an
    exception became a traceback and exit 0 or 1); it is kept, and the program's end (cli.entry ->
    end_process) prints one line and exits with its code. None: a new run starts (bench)."""
    global _done
    _done = what


def done() -> bool:
    """Whether a run's log is complete (finished() was called since the last run started)."""
    return _done is not None


def ignore() -> None:
    """No more signals: the process is leaving with its code (a second Ctrl-C in the interpreter's
    shutdown would kill it with no line and the signal's status)."""
    if threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def end_process() -> None:
    """The end of a program whose run completed: the line of a signal that came after the log was
    complete (the server's; a client says nothing), then exit with its code (0 if none came).
    Signals are ignored from here on: the interpreter's shutdown puts the default handlers back,
    and a Ctrl-C there killed the process with no line (under MPI: the launcher's banner). A
    normal exit (not os._exit): MPICH's launcher takes a rank that skips its exit handlers for a
    crash, banner and exit 9."""
    ignore()
    signum = _pending
    if signum is not None and _role == "server":
        sys.stdout.flush()
        sys.stderr.write(f"interrupted by {signal.Signals(signum).name} after the run completed; {_done}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(0 if signum is None else 128 + signum)


def _client_leave(signum: int) -> None:
    """The server did not end the job: leave quietly with the signal's exit status."""
    sys.stderr.flush()
    os._exit(128 + signum)


def check_overdue() -> None:
    """Called while the server waits: a signal deferred by a section that has not ended within
    GRACE_S (a round whose client is hung) is raised now."""
    global _pending, _raised
    if _role == "server" and _pending is not None and not _raised and time.monotonic() - _pending_at > GRACE_S:
        signum, _pending, _raised = _pending, None, True
        raise Interrupted(signum)


@contextmanager
def critical() -> Iterator[None]:
    """A section a signal must not cut short (a log row, a checkpoint, an MPI round); the signal
    is raised after it."""
    global _critical, _pending, _raised
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
    if _critical == 0 and _pending is not None and _role == "server" and not _raised:
        if _done is not None:  # the section completed the run's log: the signal is for end_process
            return
        signum, _pending, _raised = _pending, None, True
        raise Interrupted(signum)
