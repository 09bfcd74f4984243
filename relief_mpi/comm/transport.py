"""Transport interface. The server side runs one round's exchange; the client side mirrors it.

Transports move buffers and never know which algorithm runs; strategies never see a transport.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from relief_mpi.rounds import GroupSums, RoundPlan


@dataclass(frozen=True)
class Handshake:
    """What every rank states at start; the server refuses to run if they disagree."""

    version: str
    fingerprint: str
    host: str


@dataclass
class RoundExchange:
    sums: dict[int, GroupSums]  # per group that had at least one upload
    reports: np.ndarray  # float64 [K, len(REPORT_FIELDS)]


class ServerTransport(ABC):
    @abstractmethod
    def start(self, base: np.ndarray, me: Handshake) -> list[Handshake]:
        """Check every rank's handshake, send the frozen base; return handshakes by rank."""

    @abstractmethod
    def run_round(self, plan: RoundPlan, blocks: list[np.ndarray]) -> RoundExchange:
        """Send the plan and the blocks, collect the reduced updates and the clients' reports."""

    @abstractmethod
    def stop(self) -> None:
        """Tell clients the run is over."""

    def fail(self, message: str) -> None:
        """Tell clients that start-up failed (they exit quietly); the server raises."""


class ClientTransport(ABC):
    @abstractmethod
    def start(self, me: Handshake) -> np.ndarray | None:
        """Send the handshake; return the base vector, or None if the server refused to start."""

    @abstractmethod
    def next_plan(self) -> RoundPlan | None:
        """Wait (without spinning) for the next round's plan; None = the run is over."""

    @abstractmethod
    def receive_blocks(self, plan: RoundPlan) -> dict[int, np.ndarray]:
        """The global value of every block this client owns."""

    @abstractmethod
    def send(self, plan: RoundPlan, updates: dict[int, np.ndarray], report: np.ndarray) -> None:
        """Reduce this client's update buffers (one per trained block) and send its report."""
