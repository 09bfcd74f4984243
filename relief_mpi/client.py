"""A client's local training for one round: train the allocated blocks, report what it cost.

Device emulation wraps this and nothing else: every step is charged FLOPs / profile speed on the
client's DeviceClock, and training stops at the round deadline (elastic budget).
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from relief_mpi.comm import wire
from relief_mpi.data.base import DatasetSpec, WindowSet
from relief_mpi.device.clock import DeviceClock
from relief_mpi.model.blocks import BlockRegistry
from relief_mpi.model.flops import FlopCosts
from relief_mpi.model.net import MultimodalNet
from relief_mpi.strategy.base import RoundPlan


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
    zero_fill: bool
    prox_mu: float
    lr: float
    momentum: float
    batch_size: int
    seed: int
    fault: tuple[str, int] | None = None  # test-only: ("nan" | "raise" | "kill", round)
    dump_dir: str | None = None  # test-only: save each trained block's delta and n per round
    width: float = 1.0  # HeteroFL sub-model width


def inject(kind: str, who: str) -> None:
    """Test-only fault injection: raise, or die like a kill -9."""
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected fault in {who}")


class LocalTrainer:
    def __init__(self, role: ClientRole, model: MultimodalNet, registry: BlockRegistry, spec: DatasetSpec,
                 data: WindowSet, clock: DeviceClock, costs: FlopCosts, ownership: np.ndarray) -> None:
        self.role = role
        self.model = model
        self.reg = registry
        self.spec = spec
        self.x = torch.from_numpy(data.x)
        self.y = torch.from_numpy(data.y)
        self.clock = clock
        self.costs = costs
        self.owned = [b for b in range(len(registry)) if ownership[role.client, b]]
        self.present = frozenset(range(len(spec.modalities))) if role.zero_fill else role.modalities
        self.energy_meter = None  # set by device emulation where a real meter exists

    def set_base(self, base: np.ndarray) -> None:
        if base.size:
            self.reg.set_base(self.model, base)

    def _trained_encoders(self, trained: frozenset[int]) -> frozenset[int]:
        if self.reg.mode == "lora":
            return frozenset()
        return frozenset(m for b in trained if (m := self.reg.modality_of(b)) is not None) & self.present

    def train(self, plan: RoundPlan, blocks: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray], np.ndarray]:
        role = self.role
        k = role.client
        for b, vec in blocks.items():
            self.reg.set(self.model, b, vec)
        trained = frozenset(int(b) for b in np.flatnonzero(plan.alloc[k]))
        bytes_down = wire.plan_nbytes(*plan.alloc.shape) + sum(4 * self.reg.sizes[b] for b in self.owned)
        bytes_up = sum(4 * (self.reg.sizes[b] + 2) for b in trained) + wire.report_nbytes()
        self.clock.reset()
        meter_start = self.energy_meter.read() if self.energy_meter is not None else None
        download_s = self.clock.transfer(bytes_down, up=False)
        upload_est = self.clock.profile.transfer_s(bytes_up, up=True)

        params = dict(self.model.named_parameters())
        masks = self.reg.grad_masks(self.model, trained)
        for name, p in params.items():
            p.requires_grad_(name in masks)
        train_params = [params[n] for n in masks]
        anchors = {n: params[n].detach().clone() for n in masks} if role.prox_mu > 0 else {}
        before = {b: blocks[b] if b in blocks else self.reg.get(self.model, b) for b in trained}
        enc_trained = self._trained_encoders(trained)
        no_grad = frozenset(range(len(self.spec.modalities))) - enc_trained
        step_flops = self.costs.step(self.present, enc_trained)

        seed = int(np.random.SeedSequence([role.seed, plan.round, k]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(seed)
        n = self.y.shape[0]
        order = torch.randperm(n, generator=gen)
        pos = 0
        steps_done, samples, loss_sum = 0, 0, 0.0
        opt = torch.optim.SGD(train_params, lr=role.lr, momentum=role.momentum) if train_params else None
        self.model.train()
        if role.fault is not None and role.fault[1] == plan.round and role.fault[0] in ("raise", "kill"):
            inject(role.fault[0], f"client {k}")
        for _ in range(int(plan.steps[k]) if train_params else 0):
            if (math.isfinite(plan.deadline_s) and steps_done > 0 and
                    download_s + self.clock.busy_s + self.clock.step_time(step_flops) + upload_est > plan.deadline_s):
                break
            t0 = time.perf_counter()
            if pos + role.batch_size > n:
                order = torch.randperm(n, generator=gen)
                pos = 0
            idx = order[pos:pos + role.batch_size]
            pos += role.batch_size
            xs = split_modalities(self.x[idx], self.spec, self.present, role.zero_fill)
            ce = F.cross_entropy(self.model(xs, no_grad, role.width), self.y[idx])
            loss = ce
            if anchors:
                loss = ce + 0.5 * role.prox_mu * sum(((params[nm] - a) ** 2).sum() for nm, a in anchors.items())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for name, mask in masks.items():
                g = params[name].grad
                if mask is not None and g is not None:
                    g.mul_(mask)
            opt.step()
            self.clock.account_step(step_flops, time.perf_counter() - t0)
            steps_done += 1
            samples += int(idx.numel())
            loss_sum += float(ce.detach())  # the task loss, comparable across strategies
        updates: dict[int, np.ndarray] = {}
        rejected = 0.0
        for b in sorted(trained):
            delta = self.reg.get(self.model, b) - before[b]
            if role.fault == ("nan", plan.round):
                delta[:] = np.nan
            updates[b] = wire.pack_update(delta, float(samples))
            if role.dump_dir:
                np.save(Path(role.dump_dir) / f"r{plan.round}-c{k}-b{b}.npy", np.append(delta, samples))
        if any(not np.all(np.isfinite(u)) for u in updates.values()):
            rejected = 1.0
            updates = {b: wire.zero_update(self.reg.sizes[b]) for b in updates}
        upload_s = self.clock.transfer(bytes_up, up=True)
        measured = math.nan
        if meter_start is not None:
            measured = self.energy_meter.read() - meter_start
        report = np.zeros(len(wire.REPORT_FIELDS), np.float64)
        vals = {"samples": 0.0 if rejected else samples, "steps": steps_done, "busy_s": self.clock.busy_s,
                "compute_wall_s": self.clock.compute_wall_s, "lag_s": self.clock.lag_s,
                "download_s": download_s, "upload_s": upload_s, "bytes_up": bytes_up, "bytes_down": bytes_down,
                "energy_measured_j": measured, "rejected": rejected,
                "loss": loss_sum / steps_done if steps_done else math.nan,
                "flops": steps_done * step_flops}
        for name, v in vals.items():
            report[wire.R[name]] = v
        return updates, report
