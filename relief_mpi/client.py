"""A client's local training for one round: train the allocated groups, report what it cost.

How it trains (inputs, optimizer, proximal term, width, upload weights) comes from its
strategy's recipe (rounds.ClientRecipe), what it trains from the plan. Device emulation wraps
this and nothing else: every step is charged FLOPs / profile speed on the client's DeviceClock,
and training stops at the round deadline (elastic budget).
"""

from __future__ import annotations

import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from relief_mpi.data.base import DatasetSpec, WindowSet
from relief_mpi.device.clock import DeviceClock
from relief_mpi.device.gpu import DeviceWindows
from relief_mpi.model.flops import FlopCosts
from relief_mpi.model.optim import Adam, Optimizer, Sgd
from relief_mpi.model.registry import ParamRegistry
from relief_mpi.rng import AuthorsStream, ClientStream, OursStream
from relief_mpi.rounds import (
    REPORT_FIELDS,
    REPORT_INDEX,
    ClientRecipe,
    RoundPlan,
    add_updates,
    pack_update,
    plan_nbytes,
    report_nbytes,
    update_nbytes,
    zero_update,
)

__all__ = ["ClientRole", "LocalClients", "LocalTrainer", "inject", "split_modalities"]


def split_modalities(x: torch.Tensor, spec: DatasetSpec, present: frozenset[int],
                     zero_fill: bool) -> list[torch.Tensor | None]:
    """Per-modality inputs: absent ones are None (not encoded) or, under zero-fill, zeros."""
    out: list[torch.Tensor | None] = []
    for m, mod in enumerate(spec.modalities):
        if m in present or zero_fill:
            out.append(x[:, list(mod.channels), :])
        else:
            out.append(None)
    return out


@dataclass(frozen=True)
class ClientRole:
    client: int
    modalities: frozenset[int]
    recipe: ClientRecipe
    batch_size: int
    seed: int
    fault: tuple[str, int] | None = None  # test-only: ("nan" | "raise" | "kill", round)
    dump_dir: str | None = None  # test-only: save each uploaded group's delta and weight per round


def inject(kind: str, who: str) -> None:
    """Test-only fault injection: raise, or die like a kill -9."""
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected fault in {who}")


@dataclass(frozen=True)
class _RoundLink:
    """A round's traffic: the bytes each way, the download's and the estimated upload's emulated
    seconds (the deadline check needs both), and the energy meter's reading at the start."""

    bytes_down: int
    bytes_up: int
    download_s: float
    upload_est_s: float
    meter_start: float | None


@dataclass(frozen=True)
class _Trainables:
    """What a round trains: the model's parameters by name, the gradient masks of those that
    train (None: the whole tensor) and the FedProx anchors (empty without a proximal term)."""

    params: dict[str, torch.nn.Parameter]
    masks: dict[str, torch.Tensor | None]
    anchors: dict[str, torch.Tensor]
    prox_mu: float

    def loss(self, ce: torch.Tensor) -> torch.Tensor:
        """The task loss plus FedProx's proximal term when there is one."""
        if not self.anchors:
            return ce
        return ce + 0.5 * self.prox_mu * sum(((self.params[nm] - a) ** 2).sum() for nm, a in self.anchors.items())

    def mask_gradients(self) -> None:
        """Zero the gradient of entries outside the allocated groups of a partly trained tensor."""
        for name, mask in self.masks.items():
            g = self.params[name].grad
            if mask is not None and g is not None:
                g.mul_(mask)


@dataclass(frozen=True)
class _StepTally:
    """What the local steps did: how many, over how many samples, their summed task loss, and
    the FLOPs one step is charged."""

    steps: int
    samples: int
    loss_sum: float
    step_flops: float


class LocalTrainer:
    """One client: its role, windows, clock and energy account. The model is the process's (shared
    by every client it hosts: a client keeps no parameters between rounds, since it receives every
    group it owns at the start of each round and its training changes only those groups)."""

    def __init__(self, role: ClientRole, model: Any, registry: ParamRegistry[Any], spec: DatasetSpec,
                 data: WindowSet, clock: DeviceClock, costs: FlopCosts, ownership: np.ndarray,
                 keep_windows: bool = True, device: torch.device | None = None,
                 windows_cap_bytes: float = math.inf) -> None:
        self.role = role
        self.model = model
        self.reg = registry
        self.spec = spec
        self.data = data
        # keep_windows False: the windows are cut from the prepared data (memory or cache) when the
        # client trains and dropped after, so a rank hosting many clients holds one client's at a time
        self.keep_windows = keep_windows
        self.y = torch.from_numpy(data.y)
        self.clock = clock
        self.costs = costs
        self.owned = [b for b in range(len(registry)) if ownership[role.client, b]]
        self.owned_nbytes = sum(4 * registry.sizes[b] for b in self.owned)  # the blocks it receives every round
        self.present = frozenset(range(len(spec.modalities))) if role.recipe.zero_fill else role.modalities
        self.energy_meter: Any = None  # set by device emulation where a real meter exists
        # where it trains (the model is already there): windows, optimizer state and deltas too
        self.device = device if device is not None else torch.device("cpu")
        self.windows_cap_bytes = windows_cap_bytes  # device memory its windows may keep (device/gpu.py)
        self._device_windows: DeviceWindows | None = None
        self.stream: ClientStream = OursStream()  # batch order and dropout (rng.py); --rng authors shares one

    def set_base(self, base: np.ndarray) -> None:
        if base.size:
            self.reg.set_base(self.model, base)

    def windows(self) -> torch.Tensor:
        """This client's training windows (N, C, L)."""
        if self.keep_windows or self.data.materialised:
            return torch.from_numpy(self.data.x)
        return torch.from_numpy(self.data.take(np.arange(len(self.data))).x)

    def device_windows(self) -> DeviceWindows:
        """The training windows for the device: resident there when they fit under the cap, else
        moved a batch at a time; kept between rounds when the windows are (keep_windows)."""
        if self._device_windows is not None:
            return self._device_windows
        dw = DeviceWindows(self.windows(), self.y, self.device, self.windows_cap_bytes)
        if self.keep_windows or self.data.materialised:
            self._device_windows = dw
        return dw

    def _trained_encoders(self, trained: frozenset[int]) -> frozenset[int]:
        """Encoders that back-propagate: those with a trained group that holds encoder weights."""
        if self.reg.mode == "lora":
            return frozenset()
        return frozenset(m for b in trained if (m := self.reg.modality_of(b)) is not None
                         and self.reg.kinds[b] in ("block", "enc")) & self.present

    def _optimizer(self, params: list[torch.nn.Parameter]) -> Optimizer | None:
        r = self.role.recipe
        if not params:
            return None
        if r.optimizer == "adam":
            return Adam(params, lr=r.lr)
        return Sgd(params, lr=r.lr, momentum=r.momentum)

    def train(self, plan: RoundPlan, blocks: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """One round on the device: receive the owned groups, train the allocated ones until the
        steps or the deadline run out, and return the upload buffers and the round's report."""
        k = self.role.client
        for b, vec in blocks.items():
            self.reg.set(self.model, b, vec)
        trained = frozenset(int(b) for b in np.flatnonzero(plan.alloc[k]))
        upload = [int(b) for b in np.flatnonzero(plan.uploads[k])]
        link = self._start_round(plan, upload)
        trainables = self._trainables(trained)
        before = {b: self.reg.get_tensor(self.model, b) for b in trained}  # on the device, as the deltas
        tally = self._train_steps(plan, trained, trainables, link)
        updates, rejected = self._updates(plan, upload, before, tally.samples)
        upload_s = self.clock.transfer(link.bytes_up, up=True)
        return updates, self._report(link, tally, upload_s, rejected)

    def _start_round(self, plan: RoundPlan, upload: list[int]) -> _RoundLink:
        """Reset the clock, read the energy meter and charge the download: the round's cost starts here."""
        bytes_down = plan_nbytes(*plan.alloc.shape) + self.owned_nbytes
        bytes_up = sum(update_nbytes(self.reg.sizes[b], bool(plan.plain[b])) for b in upload) + report_nbytes()
        self.clock.reset()
        meter_start = self.energy_meter.read() if self.energy_meter is not None else None
        download_s = self.clock.transfer(bytes_down, up=False)
        upload_est = self.clock.profile.transfer_s(bytes_up, up=True)
        return _RoundLink(bytes_down, bytes_up, download_s, upload_est, meter_start)

    def _trainables(self, trained: frozenset[int]) -> _Trainables:
        """Only the allocated groups' parameters take gradients; FedProx anchors them at their start."""
        params = dict(self.model.named_parameters())
        masks = self.reg.grad_masks(self.model, trained)
        for name, p in params.items():
            p.requires_grad_(name in masks)
        mu = self.role.recipe.prox_mu
        anchors = {n: params[n].detach().clone() for n in masks} if mu > 0 else {}
        return _Trainables(params, masks, anchors, mu)

    def _train_steps(self, plan: RoundPlan, trained: frozenset[int], trainables: _Trainables,
                     link: _RoundLink) -> _StepTally:
        """The local optimizer steps; the batch order and dropout come from the client's stream
        (rng.py: by default seeded by (seed, round, client), the same in-process and under MPI)."""
        role, recipe = self.role, self.role.recipe
        k = role.client
        enc_trained = self._trained_encoders(trained)
        no_grad = frozenset(range(len(self.spec.modalities))) - enc_trained
        n = self.y.shape[0]
        windows = self.device_windows()
        batch = min(role.batch_size, n)
        step_flops = self.costs.step(self.present, enc_trained, batch)

        batches = self.stream.batches(role.seed, plan.round, k, n, batch)
        steps_done, samples, loss_sum = 0, 0, 0.0
        opt = self._optimizer([trainables.params[name] for name in trainables.masks])
        self._enter_train_mode()
        if role.fault is not None and role.fault[1] == plan.round and role.fault[0] in ("raise", "kill"):
            inject(role.fault[0], f"client {k}")
        for _ in range(int(plan.steps[k]) if opt is not None else 0):
            if steps_done > 0 and self._next_step_misses_deadline(plan, link, step_flops):
                break
            t0 = self.clock.start_step()
            idx = next(batches)
            xb, yb = windows.batch(idx)
            xs = split_modalities(xb, self.spec, self.present, recipe.zero_fill)
            ce = F.cross_entropy(self.model(xs, no_grad, recipe.width), yb)
            loss = trainables.loss(ce)
            assert opt is not None
            opt.zero_grad()
            loss.backward()
            trainables.mask_gradients()
            opt.step()
            self.clock.end_step(step_flops, t0)
            steps_done += 1
            samples += int(idx.numel())
            loss_sum += float(ce.detach())  # the task loss, comparable across strategies
        self.stream.done()
        return _StepTally(steps_done, samples, loss_sum, step_flops)

    def _enter_train_mode(self) -> None:
        """Train mode, except (freeze_absent_bn) the encoders of sensors this client lacks."""
        self.model.train()
        if self.role.recipe.freeze_absent_bn:
            for m in range(len(self.spec.modalities)):
                if m not in self.role.modalities:
                    self.model.encoders[m].eval()

    def _next_step_misses_deadline(self, plan: RoundPlan, link: _RoundLink, step_flops: float) -> bool:
        """Elastic budget: would one more step, plus the upload, end after the round deadline?"""
        return (math.isfinite(plan.deadline_s) and
                link.download_s + self.clock.busy_s + self.clock.step_time(step_flops) + link.upload_est_s
                > plan.deadline_s)

    def _updates(self, plan: RoundPlan, upload: list[int], before: dict[int, torch.Tensor],
                 samples: int) -> tuple[dict[int, np.ndarray], float]:
        """The packed update of every uploaded group, and 1.0 if they were rejected: one non-finite
        delta zeroes them all, so a diverged client cannot poison the global model."""
        role, k = self.role, self.role.client
        updates: dict[int, np.ndarray] = {}
        deltas: dict[int, np.ndarray] = {}
        for b in upload:
            # the delta on the device; only the packed update buffer comes back to host memory
            delta = (self.reg.get_tensor(self.model, b) - before[b]).cpu().numpy()
            if role.fault == ("nan", plan.round):
                delta[:] = np.nan
            w = float(plan.coef[k, b]) * (samples if role.recipe.sample_weighted else 1.0)
            updates[b] = pack_update(delta, self.reg.n_params[b], w, bool(plan.plain[b]))
            deltas[b] = delta
            if role.dump_dir:
                np.save(Path(role.dump_dir) / f"r{plan.round}-c{k}-b{b}.npy", np.append(delta, w))
        if any(not np.all(np.isfinite(u)) for u in updates.values()):
            return {b: zero_update(self.reg.sizes[b], bool(plan.plain[b])) for b in updates}, 1.0
        if isinstance(self.stream, AuthorsStream):  # --rng authors: also their float32 running sum
            for b, delta in deltas.items():
                self.stream.add_upload(b, torch.from_numpy(delta), float(plan.coef[k, b]))
        return updates, 0.0

    def _report(self, link: _RoundLink, tally: _StepTally, upload_s: float, rejected: float) -> np.ndarray:
        """The round's report row (REPORT_FIELDS), as the server logs it."""
        measured = math.nan
        if link.meter_start is not None:
            measured = self.energy_meter.read() - link.meter_start
        steps_done = tally.steps
        report = np.zeros(len(REPORT_FIELDS), np.float64)
        vals = {"samples": 0.0 if rejected else tally.samples, "steps": steps_done, "busy_s": self.clock.busy_s,
                "compute_wall_s": self.clock.compute_wall_s, "lag_s": self.clock.lag_s,
                "download_s": link.download_s, "upload_s": upload_s, "bytes_up": link.bytes_up,
                "bytes_down": link.bytes_down, "energy_measured_j": measured, "rejected": rejected,
                "loss": tally.loss_sum / steps_done if steps_done else math.nan,
                "flops": steps_done * tally.step_flops}
        for name, v in vals.items():
            report[REPORT_INDEX[name]] = v
        return report


class LocalClients:
    """The clients one process hosts (an MPI client rank, or every client in-process), trained in
    turn on the process's one model. Their update buffers are added up per group here (float32
    terms in float64: exact, rounds.UPDATE_DTYPE), so the process sends one buffer per group."""

    def __init__(self, trainers: list[LocalTrainer]) -> None:
        self.trainers = trainers

    def set_base(self, base: np.ndarray) -> None:
        """The frozen base (LoRA) once per model, not once per client."""
        for t in {id(t.model): t for t in self.trainers}.values():
            t.set_base(base)

    def train(self, plan: RoundPlan, blocks: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """Train every hosted client on the groups it owns; the per-group sums of their update
        buffers and their reports (float64 [clients, fields], in training order)."""
        sums: dict[int, np.ndarray] = {}
        reports = np.zeros((len(self.trainers), len(REPORT_FIELDS)), np.float64)
        for i, t in enumerate(self.trainers):
            updates, reports[i] = t.train(plan, {b: blocks[b] for b in t.owned})
            add_updates(sums, updates)  # fresh buffers from pack_update: summed in place from here on
        return sums, reports

    def authors_sums(self) -> dict[int, np.ndarray]:
        """--rng authors: the float32 sums its clients' shared stream formed (rng.AuthorsStream.add_upload),
        handed over once (every in-process rank shares the one stream: the first call takes them); {} otherwise."""
        out: dict[int, np.ndarray] = {}
        for s in {id(t.stream): t.stream for t in self.trainers}.values():
            if isinstance(s, AuthorsStream):
                out.update(s.pop_sums())
        return out
