"""A small configurable U-Net (Ronneberger, Fischer & Brox, "U-Net: Convolutional networks for biomedical image
segmentation", MICCAI 2015).

``levels`` down-sampling steps (2×2 max pooling), each level two 3×3 convolutions (+ normalisation + ReLU) with the
channels doubling from ``base_channels``; the decoder up-samples (bilinear + 1×1 convolution, or a transposed
convolution), concatenates the encoder's features of the same level and applies two 3×3 convolutions again. A 1×1
head gives ``out_channels`` *logits* (no final activation: the caller applies a sigmoid or uses a loss on logits).
Inputs of any size work: they are reflect-padded to a multiple of ``2**levels`` inside :meth:`UNet.forward` and the
output is cropped back. The default (16 base channels, 3 levels) has about 0.47 M parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from napari_sparse_sem.params import Spec, param

NORMS = ("batch", "group", "none")
UPSAMPLING = ("bilinear", "transpose")


@dataclass
class UNetConfig(Spec):
    """Architecture of a :class:`UNet`; saved in model cards so the network can be rebuilt from its weights."""

    kind = "U-Net config"

    in_channels: int = param(low=1, widget=False, help="Input channels.")
    out_channels: int = param(low=1, widget=False, help="Output channels (logits).")
    base_channels: int = param(16, low=1, help="Channels of the first level; they double at every level down.")
    levels: int = param(3, low=1, high=8, help="Down-sampling steps (2×2 max pooling).")
    norm: str = param("batch", choices=NORMS, label="normalisation", help="batch, group (4 channels each) or none.")
    upsampling: str = param(
        "bilinear", choices=UPSAMPLING, help="Decoder up-sampling: bilinear + 1×1 convolution, or transposed."
    )
    dropout: float = param(0.0, low=0.0, high=1.0, high_open=True, help="Dropout probability in every block.")

    def validate(self) -> None:
        for name in ("in_channels", "out_channels", "base_channels", "levels"):
            value = getattr(self, name)
            if not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.norm == "group" and self.base_channels % 4:
            raise ValueError("norm='group' uses 4 channels per group: base_channels must be a multiple of 4")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 4), channels)
    return nn.Identity()


def _block(in_ch: int, out_ch: int, norm: str, dropout: float) -> nn.Sequential:
    bias = norm == "none"
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias),
        _norm(norm, out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias),
        _norm(norm, out_ch),
        nn.ReLU(inplace=True),
    ]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class _Up(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, mode: str) -> None:
        super().__init__()
        if mode == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(in_ch, out_ch, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class UNet(nn.Module):
    """U-Net of a :class:`UNetConfig`: (N, in_channels, H, W) → (N, out_channels, H, W) logits, any H and W."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config.base_channels
        widths = [c * 2**i for i in range(config.levels + 1)]
        self.down = nn.ModuleList()
        in_ch = config.in_channels
        for width in widths[:-1]:
            self.down.append(_block(in_ch, width, config.norm, 0.0))
            in_ch = width
        self.pool = nn.MaxPool2d(2)
        self.bottom = _block(widths[-2], widths[-1], config.norm, config.dropout)
        self.ups = nn.ModuleList()
        self.merge = nn.ModuleList()
        for deeper, width in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.ups.append(_Up(deeper, width, config.upsampling))
            self.merge.append(_block(2 * width, width, config.norm, 0.0))
        self.head = nn.Conv2d(widths[0], config.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2**self.config.levels
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, merge, skip in zip(self.ups, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)[..., :height, :width]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
