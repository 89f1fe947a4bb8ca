"""The hourglass "skip" network used by deep image prior (Ulyanov et al.; used for SEM by Trampert et al.).

An encoder of strided convolutions, a decoder of bilinear upsampling + convolutions, and thin 1×1 skip branches from
each encoder level into the decoder. Sizes are free: inputs are reflect-padded to a multiple of ``2**levels`` and the
output is cropped back. The output goes through a sigmoid, so it lies in [0, 1] like our images.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.ReflectionPad2d(kernel // 2),
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2, inplace=True),
    )


class _Level(nn.Module):
    """One hourglass level: down (stride-2 conv, conv), the deeper part, then up (upsample, concat skip, convs)."""

    def __init__(self, in_ch: int, channels: int, skip_ch: int, deeper: nn.Module | None, deeper_out: int) -> None:
        super().__init__()
        self.skip = _conv(in_ch, skip_ch, 1) if skip_ch else None
        self.down = nn.Sequential(_conv(in_ch, channels, 3, stride=2), _conv(channels, channels, 3))
        self.deeper = deeper
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        merged = (deeper_out if deeper is not None else channels) + skip_ch
        self.merge = nn.Sequential(nn.BatchNorm2d(merged), _conv(merged, channels, 3), _conv(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        y = self.up(y)
        if self.skip is not None:
            y = torch.cat([y, self.skip(x)], dim=1)
        return self.merge(y)


class SkipNet(nn.Module):
    """Hourglass with skips: ``levels`` levels of ``channels`` channels and ``skip_channels``-wide skip branches."""

    def __init__(
        self, in_channels: int, out_channels: int = 1, levels: int = 5, channels: int = 128, skip_channels: int = 4
    ):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = levels
        level: nn.Module | None = None
        for depth in reversed(range(levels)):
            in_ch = in_channels if depth == 0 else channels
            level = _Level(in_ch, channels, skip_channels, level, channels)
        self.body = level
        self.head = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2**self.levels
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        y = torch.sigmoid(self.head(self.body(x)))
        return y[..., :height, :width]
