"""Benchmarks behind ``miho bench`` (results go in the README with the command that made them)."""

from __future__ import annotations

import statistics
import time

import torch

from miho.anchors import hand_regions
from miho.hand import load_hand


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench_hand(batch: int = 256, device: str = "cpu", repeats: int = 20, warmup: int = 2) -> float:
    """Median seconds of one forward + backward pass of ``batch`` posed hands.

    The pass computes vertices, the 21 joints and the 32 anchors, and back-propagates a scalar
    of all three to pose, shape and translation.
    """
    hand = load_hand(device=device)
    regions = hand_regions(hand)
    g = torch.Generator().manual_seed(0)
    pose = (0.3 * torch.randn(batch, 16, 3, generator=g)).to(device).requires_grad_(True)
    shape = torch.zeros(batch, hand.num_shape, device=device, requires_grad=True)
    trans = torch.zeros(batch, 3, device=device, requires_grad=True)
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = hand(pose, shape, trans)
        loss = out.vertices.square().sum() + out.joints21.sum() + regions.anchors(out.vertices).sum()
        loss.backward()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        pose.grad = shape.grad = trans.grad = None
    return statistics.median(times)
