"""Optimisers for a batch of independent problems: every sample has its own learning rate.

GeO and the joint fitting of A-MANO optimise B samples at once whose losses do not interact. With
a per-sample (B,) learning rate and a per-sample plateau schedule, a sample's trajectory does not
depend on which other samples share its batch; with equal learning rates :class:`BatchAdam` gives
exactly ``torch.optim.Adam``'s steps. Its state lives on the parameters' device (torch's own Adam
keeps a step counter on the default device in some versions).
"""

from __future__ import annotations

import torch

__all__ = ["BatchAdam", "BatchPlateau"]


class BatchAdam:
    """Adam whose learning rate is a per-sample (B,) tensor; every parameter has batch dim 0."""

    def __init__(self, params: list[torch.Tensor], scales: list[float], lr: torch.Tensor,
                 betas=(0.9, 0.999), eps=1e-8) -> None:  # fmt: skip
        self.params, self.scales, self.lr = params, scales, lr
        self.betas, self.eps, self.t = betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, s, m, v in zip(self.params, self.scales, self.m, self.v):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step = (m / (1 - b1**self.t)) / ((v / (1 - b2**self.t)).sqrt() + self.eps)
            p.sub_(step * (self.lr * s).reshape(-1, *[1] * (p.dim() - 1)))
            p.grad = None


class BatchPlateau:
    """ReduceLROnPlateau (mode min, relative threshold) for each sample of a batch."""

    def __init__(self, lr: torch.Tensor, factor: float, patience: int, threshold: float, min_lr: float,
                 frozen: torch.Tensor | None = None) -> None:  # fmt: skip
        self.lr, self.factor, self.patience, self.threshold, self.min_lr = lr, factor, patience, threshold, min_lr
        self.frozen = torch.zeros_like(lr, dtype=torch.bool) if frozen is None else frozen  # lr stays 0
        self.best = torch.full_like(lr, float("inf"))
        self.bad = torch.zeros_like(lr, dtype=torch.long)

    @torch.no_grad()
    def step(self, loss: torch.Tensor) -> None:
        better = loss < self.best * (1 - self.threshold)
        self.best = torch.where(better, loss, self.best)
        self.bad = torch.where(better, torch.zeros_like(self.bad), self.bad + 1)
        reduce = self.bad > self.patience
        new = torch.where(reduce, (self.lr * self.factor).clamp_min(self.min_lr), self.lr)
        self.lr.copy_(torch.where(self.frozen, torch.zeros_like(new), new))
        self.bad = torch.where(reduce, torch.zeros_like(self.bad), self.bad)
