"""The clients' watchdog on the server: a silent rank 0 ends the job with one line (issue 22, case 6).

The round watchdog runs on rank 0 and names a client that stops answering; but a stopped rank 0
(SIGSTOP, a hung file system, a lost link) left every client waiting forever. So a client rank
bounds each of its waits on the server too: the round's bound (--round-timeout, or the auto bound
rank 0 uses: the first round's from the profiles, then 10x the longest round so far, at least 120 s)
plus the server's own work between two rounds (evaluation, log, checkpoint: at least GAP_FLOOR_S,
or 10x the longest time between two plans seen so far). When it passes, the client prints one line
naming rank 0 and its host and ends the job (exit 4, stops.EXIT_TIMEOUT). Client rank r waits
(r - 1) x STAGGER_S longer than rank 1, so one client speaks, not all of them.
"""

from __future__ import annotations

import time

from relief_mpi.errors import RoundTimeout

__all__ = ["FACTOR", "FLOOR_S", "GAP_FLOOR_S", "STAGGER_S", "ServerSilent", "ServerWatch"]

# The round bound rank 0's watchdog applies too (server.round_timeout, round_bound.first_round_limit):
# at least FLOOR_S, else FACTOR x the longest round so far. Defined here, the lowest module that needs it.
FLOOR_S = 120.0
FACTOR = 10.0
GAP_FLOOR_S = 30.0
STAGGER_S = 1.0


class ServerSilent(RoundTimeout):
    """Rank 0 did not answer a client within its bound: stopped, hung, or its link is gone."""


class ServerWatch:
    """One client rank's bound on the server's silence; `given` is --round-timeout (None: auto)."""

    def __init__(self, given: float | None, first_round_s: float, host: str, rank: int) -> None:
        self.given = given
        self.first_round_s = first_round_s
        self.host = host
        self.rank = rank
        self.longest = 0.0  # longest time between two plans so far
        self._last: float | None = None
        self._bound = 0.0

    def bound(self) -> float:
        """Seconds this rank waits for the server now (see the module docstring)."""
        if self.given is not None:
            rnd = self.given
        else:
            rnd = self.first_round_s if self.longest == 0.0 else max(FLOOR_S, FACTOR * self.longest)
        return rnd + max(GAP_FLOOR_S, FACTOR * self.longest) + STAGGER_S * max(0, self.rank - 1)

    def deadline(self) -> float:
        """time.monotonic() by which a wait that starts now must have completed."""
        self._bound = self.bound()
        return time.monotonic() + self._bound

    def plan_arrived(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            self.longest = max(self.longest, now - self._last)
        self._last = now

    def silent(self) -> ServerSilent:
        e = ServerSilent(f"rank 0 (the server) on {self.host} did not answer rank {self.rank} within "
                         f"{self._bound:.0f} s (stopped, hung or its link lost; --round-timeout); the job was ended; "
                         "the server's log keeps every round it completed")
        e.ranks = [0]
        return e

