"""ResNet-18 layout (He et al., CVPR 2016), HoNet's image backbone (MeshRegNet of Hasson et al.,
CVPR 2020, as CPF §5.1 uses it).

A 7x7 stride-2 stem and a 3x3 stride-2 max-pool bring the image to 1/4 of its resolution; four
stages of two basic blocks (two 3x3 convolutions and a skip) follow at widths w, 2w, 4w, 8w, the
last three starting with stride 2 (1/32 of the input at the end); a global average pool gives the
image's feature vector of 8w channels. ``width`` 64 is the original; smaller widths fit a CPU.

Written here and trained from scratch: torchvision does not install beside the CPU torch of these
machines and no pretrained weights can be downloaded. Normalisation is GroupNorm, not BatchNorm,
for the reason :mod:`miho.nets.hourglass` gives (a sample's output does not depend on its batch,
so prediction is batch-independent and DistributedDataParallel equals one process).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet18"]


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class BasicBlock(nn.Module):
    """conv3x3 (stride) - norm - ReLU - conv3x3 - norm, plus the input (through a strided 1x1
    convolution and a norm when the width or resolution changes), then ReLU.
    (B, c_in, H, W) -> (B, c_out, H / stride, W / stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, groups: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), _norm(c_out, groups),
            nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _norm(c_out, groups),
        )  # fmt: skip
        self.skip = (
            nn.Identity() if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(c_out, groups))
        )  # fmt: skip
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class ResNet18(nn.Module):
    """Image (B, 3, H, W) -> pooled feature (B, 8 ``width``); H and W divisible by 32.

    Args:
        width: channels of the first stage (the original: 64).
        groups: GroupNorm groups.
    """

    def __init__(self, width: int = 64, groups: int = 8) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False), _norm(w, groups), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )  # fmt: skip
        widths = (w, 2 * w, 4 * w, 8 * w)
        stages, c_in = [], w
        for i, c in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c, stride, groups), BasicBlock(c, c, 1, groups)))
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.out_channels = widths[-1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] % 32 or image.shape[3] % 32:
            raise ValueError(f"image must have shape (B, 3, H, W) with H and W divisible by 32, "
                             f"got {tuple(image.shape)}")  # fmt: skip
        x = self.stages(self.stem(image.contiguous(memory_format=torch.channels_last)))
        return x.mean((2, 3))
