"""Networks of the partial-scan GAN: a two-stage generator and multi-scale discriminators.

After J. M. Ede and R. Beanland, "Partial scanning transmission electron microscopy with deep learning" (Scientific
Reports 10, 2020; poster in ``../shared/papers/002``). The generator completes a partial scan in two stages:

* the **inner** network sees the input at half size, goes down four stride-2 convolutions to 1/32 of the full size,
  applies residual blocks there (a large receptive field for large-scale structure), and comes back up with four
  transposed convolutions to half size. An auxiliary **trainer** head turns these features into a half-size
  restoration, trained against the half-size ground truth, which guides the inner network (Ede: more stable and a lower
  error than training the stages one after the other);
* the **outer** network encodes the full-size input to half size with a stride-2 convolution, adds the inner
  features, applies residual blocks, and decodes with a transposed convolution to the full-size restoration.

Both stages see two channels per slice: the partial scan (unscanned pixels filled, see :data:`FILLS`) and the scan
mask (Ede: concatenating the beam path lowers the error). Their outputs are added to the filled input of the slice
being restored, so with ``fill="zeros"`` (Ede's input) they predict the image and with ``fill="nearest"`` a correction
of the nearest-neighbour fill. ``context = k > 0`` is our extension for FIB-SEM stacks: the partial scans of the ``k``
slices on each side come in as further channel pairs (slices in z order, the restored one in the middle), so a
generator can use what the neighbours' masks saw — the lever that makes ``linear3d`` the best classical method.

Discriminators (one per scale) see random crops of side ``d``, ``2d`` and ``4d`` of a full-size image, each resized to
``d`` (Ede: d = 70 on 512² images): four stride-2 4×4 convolutions with spectral normalisation and leaky ReLU, the
mean of the last map is the score (least-squares GAN). Differences from the public TensorFlow code: plain convolutions
with biases instead of weight normalisation with mean-only batch normalisation, and each residual block's last
convolution starts at zero, which keeps the deep un-normalised stack stable from the first step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from napari_sparse_sem.params import Spec, param

FILLS = ("zeros", "nearest")
"""How unscanned pixels are filled before the generator sees them: ``zeros`` (Ede) or the nearest scanned value."""

PRESETS: dict[str, dict[str, Any]] = {
    # Widths of the public reference code (gen_features 32/64/64/32, inner 128-768, 6 + 3 residual blocks,
    # discriminators 64-512 on 70-px crops): a 110 M-parameter generator, for a GPU.
    "paper": {
        "outer_widths": (32, 64, 32),
        "inner_stem": 64,
        "inner_widths": (128, 256, 512, 768),
        "inner_blocks": 6,
        "outer_blocks": 3,
        "trainer_width": 64,
        "disc_widths": (64, 128, 256, 512),
        "disc_crop": 70,
    },
    # The same shape with far fewer channels, for a 2-core CPU: a 2.0 M-parameter generator (see docs/benchmarks.md).
    "compact": {
        "outer_widths": (16, 32, 16),
        "inner_stem": 32,
        "inner_widths": (48, 64, 96, 128),
        "inner_blocks": 3,
        "outer_blocks": 2,
        "trainer_width": 32,
        "disc_widths": (32, 64, 128, 128),
        "disc_crop": 32,
    },
}

INNER_LEVELS = 4
"""Stride-2 steps of the inner network; with its half-size input an image side must be a multiple of 2**5 (padded)."""

SIZE_MULTIPLE = 2 ** (INNER_LEVELS + 1)


def _positive_ints(name: str, values: Any, count: int | None = None) -> tuple[int, ...]:
    values = tuple(values)
    if count is not None and len(values) != count:
        raise ValueError(f"{name} needs {count} widths, got {list(values)}")
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be positive integers, got {list(values)}")
    return values


@dataclass
class GANConfig(Spec):
    """Architecture of the generator and discriminators; saved in the model card so weights can be rebuilt.

    ``outer_widths``: (full-size stem, half-size features, decoder); ``inner_widths``: the four down-sampling widths
    (up-sampling mirrors them); ``disc_crop``: side ``d`` of the smallest discriminator crop (crops of d, 2d, 4d);
    ``context``: neighbour slices on each side in the input (0: Ede's 2D generator).
    """

    kind = "GAN config"

    @property
    def in_channels(self) -> int:
        """Input channels: (filled scan, mask) for each of the 2 × context + 1 slices."""
        return 2 * (2 * self.context + 1)

    @property
    def center_channel(self) -> int:
        """The channel of the filled scan of the slice being restored."""
        return 2 * self.context

    fill: str = param("nearest", choices=FILLS, help="How unscanned pixels are filled: zeros (Ede) or nearest.")
    outer_widths: tuple[int, int, int] = param(
        (16, 32, 16), widget=False, help="Channels of the outer network: (full-size stem, half-size features, decoder)."
    )
    inner_stem: int = param(32, low=1, widget=False, help="Channels of the inner network's stem.")
    inner_widths: tuple[int, int, int, int] = param(
        (48, 64, 96, 128), widget=False, help="Channels of the inner network's four down-sampling steps."
    )
    inner_blocks: int = param(3, low=0, widget=False, help="Residual blocks of the inner network (at 1/32 size).")
    outer_blocks: int = param(2, low=0, widget=False, help="Residual blocks of the outer network (at half size).")
    trainer_width: int = param(32, low=1, widget=False, help="Channels of the auxiliary trainer head.")
    disc_widths: tuple[int, int, int, int] = param(
        (32, 64, 128, 128), widget=False, help="Channels of the discriminators' four stride-2 convolutions."
    )
    disc_crop: int = param(
        32, low=16, unit="px", widget=False, help="Side d of the smallest discriminator crop (crops of d, 2d, 4d)."
    )
    context: int = param(0, low=0, high=8, help="Neighbour slices on each side in the input (0: a 2D generator).")

    def validate(self) -> None:
        if not isinstance(self.context, int):
            raise ValueError(f"context must be a whole number of neighbour slices in 0..8, got {self.context!r}")
        self.outer_widths = _positive_ints("outer_widths", self.outer_widths, 3)  # type: ignore[assignment]
        self.inner_widths = _positive_ints("inner_widths", self.inner_widths, INNER_LEVELS)  # type: ignore[assignment]
        self.disc_widths = _positive_ints("disc_widths", self.disc_widths, 4)  # type: ignore[assignment]
        for name in ("inner_stem", "trainer_width", "disc_crop"):
            _positive_ints(name, [getattr(self, name)])
        for name in ("inner_blocks", "outer_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def gan_config(preset: str = "compact", **overrides: Any) -> GANConfig:
    """A :class:`GANConfig` from a preset (``compact`` or ``paper``) with some fields replaced."""
    if preset not in PRESETS:
        raise ValueError(f"unknown GAN preset {preset!r}; choose one of {sorted(PRESETS)}")
    return GANConfig(**{**PRESETS[preset], **overrides})


def _conv(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class _Residual(nn.Module):
    """Three 3×3 convolutions with a skip; the last starts at zero, so the block starts as the identity."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(width, width), _act(), _conv(width, width), _act(), _conv(width, width))
        last = self.body[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _up(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1), _act())


class Generator(nn.Module):
    """(N, C, H, W) input ((filled partial scan, mask) per slice, C = ``config.in_channels``) → ((N, 1, H, W)
    restoration, (N, 1, H/2, W/2) trainer output).

    Any H and W: the input is reflect-padded to a multiple of :data:`SIZE_MULTIPLE` and the outputs are cropped back.
    """

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        stem, half, decoder = config.outer_widths
        widths = config.inner_widths
        self.center = config.center_channel
        down: list[nn.Module] = [_conv(config.in_channels, config.inner_stem, 5), _act()]
        previous = config.inner_stem
        for width in widths:
            down += [_conv(previous, width, 3, stride=2), _act()]
            previous = width
        self.inner_down = nn.Sequential(*down)
        self.inner_blocks = nn.Sequential(*[_Residual(widths[-1]) for _ in range(config.inner_blocks)])
        ups: list[nn.Module] = []
        for width in [*reversed(widths[:-1]), half]:
            ups.append(_up(previous, width))
            previous = width
        self.inner_up = nn.Sequential(*ups)
        self.trainer = nn.Sequential(_conv(half, config.trainer_width, 1), _act(), _conv(config.trainer_width, 1, 1))
        self.outer_down = nn.Sequential(
            _conv(config.in_channels, stem, 5), _act(), _conv(stem, half, 3, stride=2), _act()
        )
        self.outer_blocks = nn.Sequential(*[_Residual(half) for _ in range(config.outer_blocks)])
        self.outer_up = nn.Sequential(_up(half, decoder), _conv(decoder, decoder), _act(), _conv(decoder, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % SIZE_MULTIPLE, (-width) % SIZE_MULTIPLE
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        small = F.avg_pool2d(x, 2)
        features = self.inner_up(self.inner_blocks(self.inner_down(small)))
        c = self.center
        trainer = small[:, c : c + 1] + self.trainer(features)
        merged = self.outer_blocks(self.outer_down(x) + features)
        out = x[:, c : c + 1] + self.outer_up(merged)
        return out[..., :height, :width], trainer[..., : (height + 1) // 2, : (width + 1) // 2]


class Discriminator(nn.Module):
    """(N, 1, d, d) crops → (N,) least-squares GAN scores (high: looks real)."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 1
        for width in widths:
            conv = nn.Conv2d(previous, width, 4, stride=2, padding=1)
            layers += [nn.utils.parametrizations.spectral_norm(conv), nn.LeakyReLU(0.2, inplace=True)]
            previous = width
        layers.append(nn.Conv2d(previous, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(1, 2, 3))


class MultiScaleDiscriminator(nn.Module):
    """One :class:`Discriminator` per crop scale (d, 2d, 4d, each resized to d)."""

    scales = (1, 2, 4)

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.crop = config.disc_crop
        self.nets = nn.ModuleList([Discriminator(config.disc_widths) for _ in self.scales])

    def crop_boxes(
        self, height: int, width: int, batch: int, generator: torch.Generator
    ) -> list[list[tuple[int, int]]]:
        """Random top-left corners per scale and sample, shared by the real and generated images of a step."""
        boxes = []
        for scale in self.scales:
            side = self.crop * scale
            if side > min(height, width):
                raise ValueError(
                    f"training crops of {height}×{width} px are smaller than the largest discriminator crop "
                    f"({side} px): use crops of at least {side} px or a smaller disc_crop"
                )
            ys = torch.randint(0, height - side + 1, (batch,), generator=generator).tolist()
            xs = torch.randint(0, width - side + 1, (batch,), generator=generator).tolist()
            boxes.append(list(zip(ys, xs, strict=True)))
        return boxes

    def forward(self, images: torch.Tensor, boxes: list[list[tuple[int, int]]]) -> list[torch.Tensor]:
        scores = []
        for scale, net, corners in zip(self.scales, self.nets, boxes, strict=True):
            side = self.crop * scale
            crops = torch.stack([images[i, :, y : y + side, x : x + side] for i, (y, x) in enumerate(corners)])
            if scale > 1:
                crops = F.avg_pool2d(crops, scale)
            scores.append(net(crops))
        return scores


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
