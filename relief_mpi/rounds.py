"""Round types that strategy/, comm/, the client and the server all import (and nothing else).

A round is: the server's plan (who trains which parameter group, with which upload coefficient,
for how many steps), each client's recipe (how it trains: inputs, optimizer, proximal term,
width), and per group the sums the transport reduces. Keeping them here, away from any
algorithm and any transport, is what lets a strategy never import MPI and a transport never
know which algorithm runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["HEADER_LEN", "REPORT_FIELDS", "REPORT_INDEX", "UPDATE_DTYPE", "ClientRecipe", "FleetInfo", "GroupInfo",
           "GroupSums", "PlanNotes", "RoundPlan", "add_updates", "pack_update", "plan_nbytes", "report_nbytes",
           "update_len", "update_nbytes", "zero_update"]


@dataclass(frozen=True)
class GroupInfo:
    """The model's parameter groups as a strategy sees them (no tensors)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]  # paper model: "A", "B", "enc", "head"; small model: "block", "shared"
    modality: tuple[int | None, ...]  # None = every client's group (B, head, shared)
    sizes: tuple[int, ...]  # float32 values on the wire: parameters, then float buffers
    n_params: tuple[int, ...]  # of those, parameters (divergence is measured over these)
    flops: tuple[float, ...]  # training FLOPs per sample: 6 x the group's forward MACs (published model)
    # The authors' count of each group's values (parameters and every buffer, BatchNorm's integer
    # num_batches_tracked included) and of the model's parameters: the published payload and
    # % trained (strategy/system.py). Empty / 0: the same as sizes / sum(n_params).
    counted: tuple[int, ...] = ()
    n_model_params: int = 0

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class FleetInfo:
    """What a strategy knows of the clients (index k = client k = rank k+1)."""

    modality_sets: tuple[frozenset[int], ...]
    tiers: tuple[str, ...]
    flops: tuple[float, ...]  # profile speed, FLOP/s (inf = native)
    uplink_mbps: tuple[float, ...]
    downlink_mbps: tuple[float, ...]
    latency_ms: tuple[float, ...]
    n_train: tuple[int, ...]
    p_busy_w: tuple[float, ...] = ()

    @property
    def n_clients(self) -> int:
        return len(self.modality_sets)


@dataclass(frozen=True)
class ClientRecipe:
    """How a client trains, from its strategy's hooks (the client has no per-algorithm flags)."""

    zero_fill: bool = False  # absent sensors: zero inputs through their encoders (True) or not encoded
    optimizer: Literal["sgd", "adam"] = "sgd"  # created fresh every round
    lr: float = 0.05
    momentum: float = 0.0
    prox_mu: float = 0.0  # FedProx proximal weight
    width: float = 1.0  # HeteroFL sub-model width
    sample_weighted: bool = True  # upload weight = coefficient x samples processed (else the coefficient)
    # Absent sensors' encoders (run on zeros under zero_fill) stay in eval mode, so a client never
    # changes the BatchNorm statistics of a sensor it lacks (fedavg-fair).
    freeze_absent_bn: bool = False


@dataclass(frozen=True)
class RoundPlan:
    round: int
    alloc: np.ndarray  # uint8 [K, G]: 1 = client k trains group g this round
    coef: np.ndarray  # float64 [K, G]: client k's upload coefficient for g; 0 = trains but does not upload
    steps: np.ndarray  # int64 [K]: local optimizer steps
    deadline_s: float  # emulated seconds from round start; inf = none
    plain: np.ndarray  # uint8 [G]: 1 = the update buffer also carries the unweighted sum of deltas

    @property
    def uploads(self) -> np.ndarray:
        """bool [K, G]: who sends an update buffer for which group."""
        return (self.alloc > 0) & (self.coef > 0)


@dataclass(frozen=True)
class PlanNotes:
    """Server-side facts about a plan, for the log only (never on the wire)."""

    t_star: float = math.nan
    budget: np.ndarray | None = None  # int64 [K]: k_n, the group budget of each client
    accessible: tuple[tuple[int, ...], ...] = ()  # G_n, for the published cost model
    samples: np.ndarray | None = None  # float [K]: samples a client processes per round (cost model)


REPORT_FIELDS = (
    "samples", "steps", "busy_s", "compute_wall_s", "lag_s", "download_s", "upload_s",
    "bytes_up", "bytes_down", "energy_measured_j", "rejected", "loss", "flops",
)
REPORT_INDEX = {name: i for i, name in enumerate(REPORT_FIELDS)}  # a report field's column
HEADER_LEN = 4  # plan header: int64 [round, stop, K, G]


def plan_nbytes(k: int, g: int) -> int:
    """Plan header + body: float64 [K + 1, 2G + 2] (alloc, coef, steps, deadline; last row: plain)."""
    return HEADER_LEN * 8 + (k + 1) * (2 * g + 2) * 8


def report_nbytes() -> int:
    return len(REPORT_FIELDS) * 8


# Update buffers hold float32 values (what a device sends; the link model charges 4 bytes each)
# and are reduced in float64. A sum of a few float32 terms is exact in float64, so it does not
# depend on the order in which the reduction tree adds them (MPI's algorithm, the in-process
# loop): in-process and MPI runs give the same numbers bit for bit, even for an optimizer such as
# Adam that turns a 1-ulp difference into a different run within a round or two.
UPDATE_DTYPE = np.float64


def update_nbytes(size: int, plain: bool) -> int:
    """Bytes a device sends for one group's update (float32 values), as the link model charges them."""
    return 4 * update_len(size, plain)


def update_len(size: int, plain: bool) -> int:
    """Floats in one group's update buffer: w*delta, [delta], w, count, w*|delta_p|^2, |delta_p|^2."""
    return size * (2 if plain else 1) + 4


def pack_update(delta: np.ndarray, n_params: int, weight: float, plain: bool) -> np.ndarray:
    """One client's update buffer; every term rounded to float32 (see UPDATE_DTYPE)."""
    buf = np.zeros(update_len(delta.size, plain), UPDATE_DTYPE)
    d64 = delta.astype(np.float32).astype(np.float64)
    sq = float(d64[:n_params] @ d64[:n_params])
    buf[:delta.size] = (weight * d64).astype(np.float32)
    if plain:
        buf[delta.size:2 * delta.size] = d64
    buf[-4:] = np.array((weight, 1.0, weight * sq, sq), np.float32)
    return buf


def zero_update(size: int, plain: bool) -> np.ndarray:
    return np.zeros(update_len(size, plain), UPDATE_DTYPE)


def add_updates(sums: dict[int, np.ndarray], updates: dict[int, np.ndarray]) -> None:
    """Add per-group update buffers into `sums` in place (float32 terms in float64: exact in any
    order). A group seen first takes the buffer itself: callers pass fresh buffers they give up."""
    for b, buf in updates.items():
        if b in sums:
            sums[b] += buf
        else:
            sums[b] = buf


@dataclass(frozen=True)
class GroupSums:
    """One group's reduced update buffers: sums over the clients that uploaded it."""

    weighted: np.ndarray  # sum_k w_k delta_k
    plain: np.ndarray | None  # sum_k delta_k, where the plan asked for it
    weight: float  # sum_k w_k
    count: float  # number of uploads
    weighted_sq: float  # sum_k w_k ||delta_k (parameters)||^2
    plain_sq: float  # sum_k ||delta_k (parameters)||^2
    # --rng authors (in-process only): sum_k w_k delta_k as the authors' aggregator forms it, a float32
    # buffer that adds each client's term in turn (rng.AuthorsStream.add_upload); None otherwise
    authors: np.ndarray | None = None

    @staticmethod
    def unpack(buf: np.ndarray, size: int, plain: bool) -> GroupSums:
        """A group's buffer (rounds.update_len long) read as its sums (views of `buf`)."""
        weight, count, weighted_sq, plain_sq = buf[-4:].tolist()
        return GroupSums(buf[:size], buf[size:2 * size] if plain else None, weight, count, weighted_sq, plain_sq)

    def unweighted(self) -> np.ndarray:
        """sum_k delta_k: carried, or recovered when every uploader had the same coefficient."""
        if self.plain is not None:
            return self.plain.astype(np.float64)
        if self.weight == 0:
            return np.zeros(self.weighted.size)
        return self.weighted.astype(np.float64) * (self.count / self.weight)
