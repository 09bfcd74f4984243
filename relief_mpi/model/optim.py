"""SGD (with momentum) and Adam as plain tensor updates, the same numbers as torch.optim on CPU.

Why not torch.optim: its first use (Optimizer.add_param_group, step, zero_grad) imports
torch._dynamo, which costs about 2.5 s of CPU in every process, as much again as `import torch`.
An emulation job starts one process per rank, so on a 2-core host an 11-rank job spent about 14 s
of its start-up on a compiler it never uses. These classes run the single-tensor update that
torch.optim runs on CPU tensors (foreach and fused kernels are only chosen for accelerators),
operation for operation, so a client trains bit for bit as before
(tests/model/test_optim.py compares them with torch.optim step by step).

Only what the clients and the pre-training use: SGD with momentum (no dampening, Nesterov or
weight decay) and Adam with the default betas and eps (no weight decay, AMSGrad or maximize).
Parameters whose .grad is None are skipped, as torch.optim does.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["Adam", "Optimizer", "Sgd"]


class Sgd:
    """torch.optim.SGD(params, lr, momentum) on CPU."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self._buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            if self.momentum != 0:
                buf = self._buffers[i]
                if buf is None:
                    buf = self._buffers[i] = grad.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(grad, alpha=1.0)  # alpha = 1 - dampening
                grad = buf
            p.add_(grad, alpha=-self.lr)


class Adam:
    """torch.optim.Adam(params, lr) on CPU: betas (0.9, 0.999), eps 1e-8."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self._steps = [0] * len(self.params)
        self._moments: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.beta1, self.beta2
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            moments = self._moments[i]
            if moments is None:
                moments = self._moments[i] = (torch.zeros_like(p, memory_format=torch.preserve_format),
                                              torch.zeros_like(p, memory_format=torch.preserve_format))
            exp_avg, exp_avg_sq = moments
            self._steps[i] += 1
            step = float(self._steps[i])  # torch keeps it in a float32 tensor: exact for any count here
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = self.lr / (1 - beta1**step)
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)


Optimizer = Sgd | Adam
