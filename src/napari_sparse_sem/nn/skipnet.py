"""The hourglass "skip" network used by deep image prior (Ulyanov et al.; used for SEM by Trampert et al.).

An encoder of strided convolutions, a decoder of bilinear upsampling + convolutions, and thin 1×1 skip branches from
each encoder level into the decoder. Sizes are free: inputs are reflect-padded to a multiple of ``2**levels`` and the
output is cropped back. The output goes through a sigmoid, so it lies in [0, 1] like our images.

:func:`grouped_forward` runs ``B`` networks of one architecture at once (independent weights, one grouped convolution
per layer, batch normalisation per network), for fitting several deep image priors together on a GPU.
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


def grouped_forward(net: SkipNet, weights: dict[str, torch.Tensor], x: torch.Tensor, channels_last: bool = False):
    """``B`` independent networks with ``net``'s architecture, run at once: ``weights[name]`` is the stack
    ``(B, *shape)`` of parameter ``name`` of :meth:`SkipNet.named_parameters` (``net``'s own values are not used),
    ``x`` is ``(B, C, H, W)``; returns ``(B, out_channels, H, W)``.

    The networks sit side by side in the channels of one ``(1, B * C, H, W)`` tensor: every convolution is grouped
    (``groups = B``), every batch normalisation normalises each channel, hence each network, on its own (training
    mode, batch statistics, no running statistics), and skip branches are concatenated network by network. Network
    ``j``'s output equals ``net`` in training mode with ``weights[...][j]`` on ``x[j:j+1]`` up to float rounding.
    ``channels_last`` lays the activations out channels-last (faster convolutions on CUDA under mixed precision).
    """
    batch, _, height, width = x.shape
    multiple = 2**net.levels
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    y = x.reshape(1, -1, height, width)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        y = nn.functional.pad(y, (0, pad_w, 0, pad_h), mode=mode)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    y = _grouped(net.body, "body.", y, weights, batch, channels_last)
    y = torch.sigmoid(_grouped(net.head, "head.", y, weights, batch, channels_last))
    return y[..., :height, :width].reshape(batch, -1, height, width)


def _grouped(module: nn.Module, prefix: str, x: torch.Tensor, weights: dict, groups: int, channels_last: bool):
    """``module`` of a :class:`SkipNet` applied to ``groups`` networks side by side in the channels of ``x``."""
    functional = nn.functional
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            x = _grouped(child, f"{prefix}{name}.", x, weights, groups, channels_last)
        return x
    if isinstance(module, nn.ReflectionPad2d):
        return functional.pad(x, module.padding, mode="reflect")
    if isinstance(module, nn.Conv2d):
        weight = weights[prefix + "weight"]
        bias = weights.get(prefix + "bias")
        return functional.conv2d(
            x,
            weight.reshape(-1, *weight.shape[2:]),
            None if bias is None else bias.reshape(-1),
            module.stride,
            module.padding,
            module.dilation,
            groups,
        )
    if isinstance(module, nn.BatchNorm2d):
        scale, shift = weights[prefix + "weight"].reshape(-1), weights[prefix + "bias"].reshape(-1)
        return functional.batch_norm(x, None, None, scale, shift, True, 0.0, module.eps)
    if isinstance(module, nn.LeakyReLU):
        return functional.leaky_relu(x, module.negative_slope)
    if isinstance(module, nn.Upsample):
        return functional.interpolate(
            x, scale_factor=module.scale_factor, mode=module.mode, align_corners=module.align_corners
        )
    if isinstance(module, _Level):
        y = _grouped(module.down, prefix + "down.", x, weights, groups, channels_last)
        if module.deeper is not None:
            y = _grouped(module.deeper, prefix + "deeper.", y, weights, groups, channels_last)
        y = _grouped(module.up, prefix + "up.", y, weights, groups, channels_last)
        if module.skip is not None:
            skip = _grouped(module.skip, prefix + "skip.", x, weights, groups, channels_last)
            n, _, height, width = y.shape
            parts = [y.reshape(n, groups, -1, height, width), skip.reshape(n, groups, -1, height, width)]
            y = torch.cat(parts, dim=2).reshape(n, -1, height, width)
            if channels_last:
                y = y.contiguous(memory_format=torch.channels_last)
        return _grouped(module.merge, prefix + "merge.", y, weights, groups, channels_last)
    raise TypeError(f"grouped_forward does not know {type(module).__name__}")
