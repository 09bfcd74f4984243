"""Our divergence-guided elastic allocation (design.md section 5; used by relief-ucb).

Each client gets a time budget (the round deadline) and fills it greedily with the blocks it
owns, by UCB score per unit of cost; the groups of every client (no modality) are always in. The score of block b is
D_b / max(D) + beta * sqrt(2 ln t / n_b): the running mean of its observed, normalised cohort
divergence (scaled to [0, 1] so beta means the same on every model) plus an exploration bonus;
a block never trained scores infinity. The scale is the largest mean among the blocks chosen
between (not the always-trained shared block). Every block whose cohort can afford it gets at least one
trainer. Costs come from FlopCosts (measured FLOPs) and the client's profile speed and link.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from relief_mpi.rounds import FleetInfo, GroupInfo, plan_nbytes, report_nbytes, update_nbytes

__all__ = ["ClientCost", "UcbScores", "allocate", "resolve_deadline"]


class UcbScores:
    """Running mean of observed divergence per block and the UCB score built on it."""

    def __init__(self, n_blocks: int, beta: float, candidates: np.ndarray | None = None) -> None:
        self.beta = beta
        # Only blocks the allocator chooses between set the scale: the shared block is always
        # trained, and its divergence (head, biases) is orders larger than a modality block's.
        self.candidates = np.ones(n_blocks, bool) if candidates is None else np.asarray(candidates, bool)
        self.mean = np.zeros(n_blocks)
        self.count = np.zeros(n_blocks)
        self.t = 0

    def observe(self, b: int, value: float) -> None:
        self.count[b] += 1
        self.mean[b] += (value - self.mean[b]) / self.count[b]

    def tick(self) -> None:
        self.t += 1

    def scores(self) -> np.ndarray:
        top = self.mean[self.candidates].max() if self.candidates.any() else 0.0
        d = self.mean / top if top > 0 else np.zeros_like(self.mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = self.beta * np.sqrt(2.0 * math.log(max(self.t, 1)) / self.count)
        s = d + bonus
        s[self.count == 0] = math.inf
        return s

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean.copy(), "count": self.count.copy(), "t": np.array([self.t])}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.mean = np.array(st["mean"], float)
        self.count = np.array(st["count"], float)
        self.t = int(np.asarray(st["t"]).reshape(-1)[0])


@dataclass(frozen=True)
class ClientCost:
    """Emulated seconds for client k to run `steps` steps over a block set and move its bytes."""

    fleet: FleetInfo
    blocks: GroupInfo
    costs: object  # FlopCosts
    lora: bool
    ownership: np.ndarray

    def seconds(self, k: int, blocks: frozenset[int], steps: int) -> float:
        return steps * self.step_s(k, blocks) + self.transfer_s(k, blocks)

    def step_s(self, k: int, blocks: frozenset[int]) -> float:
        speed = self.fleet.flops[k]
        if math.isinf(speed):
            return 0.0  # a native device's speed is measured, not known in advance
        present = self.fleet.modality_sets[k]
        enc: set[int] = set()
        if not self.lora:  # LoRA: encoders frozen, no group adds encoder backward
            enc = {m for b in blocks if (m := self.blocks.modality[b]) is not None
                   and self.blocks.kinds[b] in ("block", "enc")} & present
        return self.costs.step(present, enc) / speed  # type: ignore[attr-defined]

    def transfer_s(self, k: int, blocks: frozenset[int]) -> float:
        """The same bytes a client counts: its update buffers + report up, plan + owned blocks down."""
        up = sum(update_nbytes(self.blocks.sizes[b], False) for b in blocks) + report_nbytes()
        owned = np.flatnonzero(self.ownership[k])
        down = plan_nbytes(*self.ownership.shape) + sum(4 * self.blocks.sizes[b] for b in owned)
        lat = self.fleet.latency_ms[k] / 1000.0
        return (2 * lat + up * 8 / (self.fleet.uplink_mbps[k] * 1e6)
                + down * 8 / (self.fleet.downlink_mbps[k] * 1e6))


def resolve_deadline(spec: str, full_times: list[float]) -> float:
    """'auto' = median client's time to train all its blocks; 'none' = no deadline; else seconds."""
    if spec == "none":
        return math.inf
    if spec == "auto":
        return float(np.median(full_times)) if full_times else math.inf
    return float(spec)


def allocate(cost: ClientCost, owned: list[list[int]], shared: frozenset[int], deadline: float, local_steps: int,
             priority: Callable[[int, list[int]], list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Greedy budget fill per client, then coverage of every affordable block.

    `priority(k, candidates)` orders a client's candidate blocks (best first); it is where UCB
    (relief) or randomness (relief-random) enters. Returns alloc [K, B] uint8 and steps [K].
    """
    fill = _BudgetFill(cost, owned, shared, deadline, local_steps, priority)
    k_n = len(owned)
    b_n = len(cost.blocks.names)
    chosen = [fill.greedy(k) for k in range(k_n)]
    for b in range(b_n):
        if b not in shared and not any(b in s for s in chosen):
            fill.cover(b, chosen)
    alloc = np.zeros((k_n, b_n), np.uint8)
    steps = np.full(k_n, local_steps, np.int64)
    for k, sel in enumerate(chosen):
        for b in sel:
            alloc[k, b] = 1
        steps[k] = fill.steps_within_deadline(k, frozenset(sel))
    return alloc, steps


@dataclass(frozen=True)
class _BudgetFill:
    """One round's allocation problem (allocate's arguments) and the moves that solve it."""

    cost: ClientCost
    owned: list[list[int]]
    shared: frozenset[int]
    deadline: float
    local_steps: int
    priority: Callable[[int, list[int]], list[int]]

    def _seconds(self, k: int, blocks: set[int]) -> float:
        return self.cost.seconds(k, frozenset(blocks), self.local_steps)

    def greedy(self, k: int) -> set[int]:
        """Client k's shared groups plus, in priority order, each owned block that still fits."""
        sel = set(self.shared)
        for b in self.priority(k, [b for b in self.owned[k] if b not in self.shared]):
            if self._seconds(k, sel | {b}) <= self.deadline:
                sel.add(b)
        return sel

    def cover(self, b: int, chosen: list[set[int]]) -> None:
        """Coverage: a block nobody picked goes to an owner that can afford it, adding it where there is
        slack (the least loaded owner first), else swapping out blocks that stay covered by someone else."""
        owners = [k for k in range(len(self.owned)) if b in self.owned[k]]
        owners.sort(key=lambda k: self._seconds(k, chosen[k]))
        for k in owners:
            if self._seconds(k, chosen[k] | {b}) <= self.deadline:
                chosen[k].add(b)
                return
        self._swap_in(b, owners, chosen)

    def _swap_in(self, b: int, owners: list[int], chosen: list[set[int]]) -> None:
        """The first owner that can afford b with its sole-covered blocks keeps those and b, then
        refills its budget in priority order (never uncovering another block)."""
        for k in owners:
            sole = {c for c in chosen[k]
                    if c not in self.shared and not any(c in chosen[j] for j in range(len(chosen)) if j != k)}
            keep = set(self.shared) | {b} | sole
            if self._seconds(k, keep) > self.deadline:
                continue
            for c in self.priority(k, [c for c in chosen[k] if c not in keep]):
                if self._seconds(k, keep | {c}) <= self.deadline:
                    keep.add(c)
            chosen[k] = keep
            return

    def steps_within_deadline(self, k: int, sel: frozenset[int]) -> int:
        """The full local steps, or fewer for a client that cannot fit even its minimum set at full steps."""
        if not (math.isfinite(self.deadline) and self.cost.seconds(k, sel, self.local_steps) > self.deadline):
            return self.local_steps
        per = self.cost.step_s(k, sel)
        room = self.deadline - self.cost.transfer_s(k, sel)
        return max(1, min(self.local_steps, int(room // per))) if per > 0 else self.local_steps
