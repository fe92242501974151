"""PointNet encoder, segmentation style (Qi et al., CVPR 2017): PiCR's point encoder p(F') (Eq. 8).

A shared per-point MLP lifts each point's input features; the max over the (real) points of
the last layer is the global feature, concatenated back to every point. With ``concat_all`` every
layer's output is kept (the official PiCR: widths 65-128-128-128-512-2048, every layer plus the
global feature, 4992 channels a point).

The concatenation is kept as its parts (a list of (B, N, C_i) tensors and the (B, 1, C) global
feature): a layer that reads it, :class:`SplitLinear`, sums one linear map a part, which equals
a linear map of the concatenation without copying the global feature to every point.

Each layer is Linear -> LayerNorm -> ReLU applied to every point on its own: a point's feature
depends on the other points only through the max-pool, which ignores padded points, so padding
an object (or batching it with larger ones) changes nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from miho.checks import check_mask, check_tensor

__all__ = ["PointNetEncoder", "SplitLinear", "point_mlp"]


def point_mlp(widths: tuple[int, ...], final_activation: bool = True) -> nn.Sequential:
    """Per-point MLP (..., widths[0]) -> (..., widths[-1]): Linear, LayerNorm, ReLU per layer (the
    last layer bare unless ``final_activation``)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(widths) - 2:
            layers += [nn.LayerNorm(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SplitLinear(nn.Module):
    """A linear map of a concatenation given as its parts: ``parts`` (B, N or 1, C_i) -> (B, N, out),
    the same as ``nn.Linear(sum(C_i), out)`` applied to ``torch.cat`` of the parts broadcast to N
    points (one bias)."""

    def __init__(self, in_channels: tuple[int, ...], out: int) -> None:
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(c, out, bias=i == 0) for i, c in enumerate(in_channels))

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        out = self.maps[0](parts[0])
        for m, x in zip(self.maps[1:], parts[1:]):
            out = out + m(x)
        return out


class PointNetEncoder(nn.Module):
    """(B, N, widths[0]) point features and a (B, N) mask -> the per-point feature as its parts
    (see the module docstring): a list of (B, N, C_i) and the (B, 1, widths[-1]) global feature.

    Args:
        widths: the shared MLP's widths, input first.
        concat_all: keep every layer's output (official), else only the last one.
    """

    def __init__(self, widths: tuple[int, ...], concat_all: bool = True) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths needs at least an input and an output width, got {widths}")
        self.widths, self.concat_all = tuple(widths), concat_all
        self.layers = nn.ModuleList(point_mlp((a, b)) for a, b in zip(widths[:-1], widths[1:]))

    @property
    def part_channels(self) -> tuple[int, ...]:
        """Channels of each part of the output, the global feature last."""
        return (*(self.widths[1:] if self.concat_all else self.widths[-1:]), self.widths[-1])

    @property
    def out_channels(self) -> int:
        return sum(self.part_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        check_tensor("x", x, (None, None, self.widths[0]), finite=False)
        check_mask("mask", mask, tuple(x.shape[:2]))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        pooled = x.masked_fill(~mask[..., None], float("-inf")).amax(1)  # (B, C)
        pooled = torch.where(mask.any(1, keepdim=True), pooled, torch.zeros_like(pooled))  # no real point: zeros
        kept = outs if self.concat_all else outs[-1:]
        return [*kept, pooled[:, None]]
