"""Waiting that yields the core: Test() in a loop with a short sleep, optionally with a deadline.

A blocking MPI wait busy-polls; on an oversubscribed emulation host that steals the CPU of the
ranks that train (design.md section 4: 2.0 s vs 0.37 s for the same compute). The same loop is
where the server notices a late signal (signals.check_overdue) and a round that ran out of time
(the round watchdog): a blocking wait could do neither.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mpi4py import MPI

from relief_mpi import signals

POLL_S = 0.001


class WaitTimeout(Exception):
    """The requests did not all complete by the deadline; `pending` are their indices."""

    def __init__(self, pending: list[int]) -> None:
        super().__init__(f"{len(pending)} request(s) pending")
        self.pending = pending


def wait_all(requests: Sequence[MPI.Request], poll_s: float = POLL_S, deadline: float | None = None) -> None:
    """Wait for every request, sleeping `poll_s` between tests. With `deadline` (time.monotonic()),
    raise WaitTimeout naming the requests still pending when it passes (they stay posted)."""
    reqs = [r for r in requests if r != MPI.REQUEST_NULL]
    if not reqs:
        return
    while not MPI.Request.Testall(reqs):
        signals.check_overdue()
        if deadline is not None and time.monotonic() > deadline:
            raise WaitTimeout([i for i, r in enumerate(requests) if r != MPI.REQUEST_NULL and not r.Test()])
        time.sleep(poll_s)
