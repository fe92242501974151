"""Stacked hourglass network (Newell, Yang and Deng, ECCV 2016), PiCR's image backbone b(I) (Eq. 8).

A stem brings the image to 1/4 of its resolution; each stack is an hourglass (residual
bottlenecks, max-pool down, nearest-neighbour up, a skip branch at every scale) followed by a
residual block and a 1x1 convolution that give the stack's feature map. Between stacks the
feature map is mapped back by a 1x1 convolution and added to the stack's input (the original's
intermediate supervision path; PiCR has no heatmaps, so only the features are fed back).

A convolution followed by a normalisation has no bias (the normalisation would remove it).
Normalisation is GroupNorm, not BatchNorm: a sample's features do not depend on the other
samples of its batch, so prediction is batch-independent and DistributedDataParallel with b
samples a process trains exactly as one process with the whole batch (BatchNorm would
normalise each process's slice on its own).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Bottleneck", "Hourglass", "StackedHourglass"]


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class Bottleneck(nn.Module):
    """Pre-activation residual bottleneck: norm-ReLU-1x1 (c/2), norm-ReLU-3x3 (c/2), norm-ReLU-1x1 (c),
    plus the input (through a 1x1 convolution when the widths differ). (B, c_in, H, W) -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, groups: int = 8) -> None:
        super().__init__()
        mid = max(c_out // 2, 1)
        self.body = nn.Sequential(
            _norm(c_in, groups), nn.ReLU(inplace=True), nn.Conv2d(c_in, mid, 1, bias=False),
            _norm(mid, groups), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            _norm(mid, groups), nn.ReLU(inplace=True), nn.Conv2d(mid, c_out, 1),
        )  # fmt: skip
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels at ``channels`` channels: (B, c, H, W) -> (B, c, H, W);
    H and W must be divisible by 2**depth."""

    def __init__(self, depth: int, channels: int, groups: int = 8) -> None:
        super().__init__()
        self.skip = Bottleneck(channels, channels, groups)
        self.down = nn.Sequential(nn.MaxPool2d(2), Bottleneck(channels, channels, groups))
        self.inner = Hourglass(depth - 1, channels, groups) if depth > 1 else Bottleneck(channels, channels, groups)
        self.up = nn.Sequential(Bottleneck(channels, channels, groups), nn.Upsample(scale_factor=2, mode="nearest"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.up(self.inner(self.down(x)))


class StackedHourglass(nn.Module):
    """Image (B, 3, H, W) -> a list of ``stacks`` feature maps, each (B, channels, H/4, W/4).

    Args:
        stacks: number of hourglasses (the paper: 2).
        channels: feature channels (the official code: 64).
        depth: levels of each hourglass (the original: 4 at 64x64 features).
        groups: GroupNorm groups.
    """

    def __init__(self, stacks: int = 2, channels: int = 64, depth: int = 4, groups: int = 8) -> None:
        super().__init__()
        if stacks < 1 or channels < 2 or depth < 1:
            raise ValueError(f"need stacks >= 1, channels >= 2, depth >= 1; got {stacks}, {channels}, {depth}")
        self.depth = depth
        half = max(channels // 2, 1)
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 7, stride=2, padding=3, bias=False), _norm(half, groups), nn.ReLU(inplace=True),
            Bottleneck(half, channels, groups), nn.MaxPool2d(2), Bottleneck(channels, channels, groups),
        )  # fmt: skip
        self.hourglasses = nn.ModuleList(Hourglass(depth, channels, groups) for _ in range(stacks))
        self.heads = nn.ModuleList(
            nn.Sequential(Bottleneck(channels, channels, groups), nn.Conv2d(channels, channels, 1, bias=False),
                          _norm(channels, groups), nn.ReLU(inplace=True))
            for _ in range(stacks)
        )  # fmt: skip
        self.feedback = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(stacks - 1))

    @property
    def stride(self) -> int:
        """Input pixels per feature-map cell."""
        return 4

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        multiple = self.stride * 2**self.depth
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] % multiple or image.shape[3] % multiple:
            raise ValueError(f"image must have shape (B, 3, H, W) with H and W divisible by {multiple}, "
                             f"got {tuple(image.shape)}")  # fmt: skip
        x = self.stem(image)
        features = []
        for i, (hourglass, head) in enumerate(zip(self.hourglasses, self.heads)):
            f = head(hourglass(x))
            features.append(f)
            if i < len(self.feedback):
                x = x + self.feedback[i](f)
        return features
