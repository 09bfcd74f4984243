"""Transport interface. The server side runs one round's exchange; the client side mirrors it.

Transports move buffers and never know which algorithm runs; strategies never see a transport.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from relief_mpi.rounds import GroupSums, RoundPlan

__all__ = ["ClientTransport", "Handshake", "HostedClients", "RoundExchange", "ServerTransport"]


@dataclass(frozen=True)
class Handshake:
    """What every rank states at start; the server refuses to run if they disagree."""

    version: str
    fingerprint: str
    host: str


class HostedClients(Protocol):
    """The clients one client rank hosts, as the in-process transport drives them (client.LocalClients):
    handed to the transport, so that comm/ does not import the client."""

    def set_base(self, base: np.ndarray) -> None:
        """The frozen base (LoRA) once per model."""

    def train(self, plan: RoundPlan, blocks: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """The per-group sums of the hosted clients' update buffers and their reports [clients, fields]."""
        ...

    def authors_sums(self) -> dict[int, np.ndarray]:
        """--rng authors (in-process only): per group, the float32 sum of w delta formed as the authors'
        aggregator forms it (GroupSums.authors), once per round; {} otherwise."""
        ...


@dataclass
class RoundExchange:
    sums: dict[int, GroupSums]  # per group that had at least one upload
    reports: np.ndarray  # float64 [K, len(REPORT_FIELDS)]


class ServerTransport(ABC):
    # A round started on every rank must end on every rank, else the job cannot be released
    # cleanly (MPI); the in-process transport has no other rank, so any point is safe.
    atomic_rounds = False
    deadline: float | None = None  # time.monotonic() by which the round in flight must finish (the watchdog)
    timeout_s = 0.0

    def set_round_timeout(self, timeout_s: float | None) -> None:
        """The next round must finish within timeout_s (None: no limit); a transport that can
        wait on other ranks raises errors.RoundTimeout (stops re-exports it), naming the ranks, when it does not."""
        self.timeout_s = timeout_s or 0.0
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s

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
        """The global value of every block this client owns: arrays to read, not to modify, valid
        until the next round's receive_blocks (the transport may reuse their memory)."""

    @abstractmethod
    def send(self, plan: RoundPlan, updates: dict[int, np.ndarray], report: np.ndarray) -> None:
        """Reduce this client's update buffers (one per trained block) and send its report."""
