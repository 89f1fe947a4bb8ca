"""The neural SEM surrogate: a U-Net whose encoder is a ResNet, mapping a cut plane's heightfield channels to BSE + SE.

Dahmen et al. (paper 004 in ../shared/papers, sections 2.6–2.7) feed the 7-channel representation (4-extended
heightfield + normal map) of a cut plane to a ResNet-encoder U-Net that outputs the noise-free BSE and SE images in one
forward pass; ResNet-34 worked best. ImageNet weights cannot be fetched here and the input is not an RGB photo, so our
encoders start from random weights. Layouts:

- ``resnet34``: basic residual blocks [3, 4, 6, 3] at widths 64–512 (the paper's encoder; 24 M parameters);
- ``resnet34-half``: the same blocks at half width (6 M parameters; the shipped weights, ≤ 25 MB in fp16);
- ``compact``: one block per stage at widths 16–128 (0.5 M parameters; quick CPU training and tests).

Unlike an ImageNet ResNet the stem keeps full resolution (no 7×7/2 conv and max-pool), so the decoder's last skip is at
pixel level: the images are sharp where the surface has edges. Inputs are scaled by fixed constants stored in the config
(depths / ``depth_scale``; normals as they are) and outputs by ``output_scale``, so BSE and SE weigh alike in the loss.

Representations (the paper's Table 3 ablation): ``ehf+normals`` (7 channels), ``ehf`` (4), ``heightfield`` (1: entry1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.recon.tiles import Tiling
from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.surrogate.geometry import pixel_size_param

LAYOUTS = {
    "resnet34": ((64, 128, 256, 512), (3, 4, 6, 3), 32),
    "resnet34-half": ((32, 64, 128, 256), (3, 4, 6, 3), 16),
    "compact": ((16, 32, 64, 128), (1, 1, 1, 1), 16),
}
REPRESENTATIONS = {"ehf+normals": (0, 1, 2, 3, 4, 5, 6), "ehf": (0, 1, 2, 3), "heightfield": (0,)}
SIGNALS = ("bse", "se")


@dataclass(frozen=True)
class SurrogateConfig(Spec):
    """Architecture and the fixed scales of the surrogate; saved in every model card so the network can be rebuilt.

    ``pixel_size_nm``, ``energy_kev`` and ``element`` record the Monte Carlo settings the network was trained for:
    other pixel sizes are handled by resampling the geometry (:func:`predict_primitives`), other beams need retraining.
    """

    kind = "surrogate config"

    layout: str = param(
        "resnet34-half", choices=tuple(LAYOUTS), help="Encoder layout: resnet34 (paper), resnet34-half or compact."
    )
    representation: str = param(
        "ehf+normals",
        choices=tuple(REPRESENTATIONS),
        help="Input channels: ehf+normals (7), ehf (4) or heightfield (1) (the paper's Table 3 ablation).",
    )
    depth_scale: float = param(
        32.0,
        low=0.0,
        low_open=True,
        unit="voxels",
        cli=False,
        widget=False,
        help="Heightfield depths are divided by this before the network sees them.",
    )
    output_scale: tuple[float, float] = param(
        (0.1, 1.0), cli=False, widget=False, help="The (BSE, SE) outputs are divided by these in training (> 0)."
    )
    pixel_size_nm: float = pixel_size_param(
        "Pixel size of the Monte Carlo data the network was trained on.", cli=False, widget=False
    )
    energy_kev: float = param(
        2.0,
        low=0.0,
        low_open=True,
        unit="keV",
        label="beam energy",
        cli=False,
        widget=False,
        help="Beam energy of the Monte Carlo data the network was trained on.",
    )
    element: str = param(
        "C", cli=False, widget=False, help="Target element of the Monte Carlo data the network was trained on."
    )
    no_surface: float = param(
        32.0,
        unit="voxels",
        cli=False,
        widget=False,
        help="Heightfield value where a ray meets no surface (the dataset's guard depth).",
    )
    extra: dict[str, Any] = param(
        default_factory=dict, cli=False, widget=False, help="Free-form notes kept with the config."
    )

    def validate(self) -> None:
        if len(self.output_scale) != 2 or min(self.output_scale) <= 0:
            raise ValueError(f"output_scale must be two positive numbers (BSE, SE), got {self.output_scale}")

    @property
    def channels(self) -> tuple[int, ...]:
        """Which of the 7 heightfield channels the network reads."""
        return REPRESENTATIONS[self.representation]

    def with_(self, **changes: Any) -> SurrogateConfig:
        """A copy with some fields changed (the same as :meth:`replace`)."""
        return self.replace(**changes)


def build_network(config: SurrogateConfig) -> Any:
    """The torch module for ``config`` (random weights)."""
    import torch
    from torch import nn

    widths, blocks, stem = LAYOUTS[config.layout]

    def conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(*conv_bn(cin, cout, stride), nn.ReLU(inplace=True), *conv_bn(cout, cout))
            self.shortcut = (
                nn.Identity()
                if stride == 1 and cin == cout
                else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.body(x) + self.shortcut(x))

    class UpBlock(nn.Module):
        def __init__(self, cin: int, cskip: int, cout: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                *conv_bn(cin + cskip, cout), nn.ReLU(inplace=True), *conv_bn(cout, cout), nn.ReLU(inplace=True)
            )

        def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            return self.body(torch.cat([x, skip], dim=1))

    class SurrogateNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(*conv_bn(len(config.channels), stem), nn.ReLU(inplace=True))
            stages, cin = [], stem
            for width, count in zip(widths, blocks, strict=True):
                layers = [BasicBlock(cin, width, 2)] + [BasicBlock(width, width, 1) for _ in range(count - 1)]
                stages.append(nn.Sequential(*layers))
                cin = width
            self.stages = nn.ModuleList(stages)
            skips = [stem, *widths[:-1]]
            ups, cin = [], widths[-1]
            for skip in reversed(skips):
                ups.append(UpBlock(cin, skip, max(skip, stem)))
                cin = max(skip, stem)
            self.ups = nn.ModuleList(ups)
            self.head = nn.Conv2d(cin, len(SIGNALS), 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            skips = [x]
            for stage in self.stages:
                x = stage(x)
                skips.append(x)
            skips.pop()
            for up in self.ups:
                x = up(x, skips.pop())
            return self.head(x)

    return SurrogateNet()


def parameter_count(net: Any) -> int:
    """Trainable parameters of a module."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def network_inputs(heightfield: np.ndarray, config: SurrogateConfig) -> np.ndarray:
    """The network's input channels from a (7, ..., y, x) heightfield: depths clipped at ``no_surface`` and scaled.

    ``NO_SURFACE`` (infinite) depths and depths beyond ``no_surface`` voxels become ``no_surface``: the network only
    ever sees what the training data showed it.
    """
    hf = np.asarray(heightfield, dtype=np.float32)
    if hf.shape[0] != 7:
        raise ValueError(f"expected the 7-channel heightfield (entry/exit ×2 + normal map), got {hf.shape[0]} channels")
    depths = np.minimum(np.nan_to_num(hf[:4], nan=config.no_surface, posinf=config.no_surface), config.no_surface)
    stacked = np.concatenate([depths / config.depth_scale, hf[4:]], axis=0)
    return np.ascontiguousarray(stacked[list(config.channels)])


class Surrogate:
    """A trained network with its config, ready to turn heightfields into (BSE, SE) images on a device."""

    def __init__(self, net: Any, config: SurrogateConfig, device: str = "cpu", card: dict | None = None) -> None:
        self.net = net.to(device).eval()
        self.config = config
        self.device = device
        self.card = card or {}

    def predict(self, heightfield: np.ndarray, tile: int = 512, overlap: int = 32, batch: int = 4) -> np.ndarray:
        """(2, y, x) float32 images (BSE, SE in physical units) for one (7, y, x) heightfield, tiled for any size."""
        import torch

        inputs = network_inputs(heightfield, self.config)
        height, width = inputs.shape[-2:]
        tiling = Tiling((height, width), tile, overlap) if max(height, width) > tile else Tiling.whole((height, width))
        out = np.zeros((len(SIGNALS), height, width), dtype=np.float32)
        scale = np.asarray(self.config.output_scale, dtype=np.float32)[:, None, None]
        use_amp = str(self.device).startswith("cuda")
        with torch.inference_mode():
            for chunk in tiling.chunks(batch):
                tiles = np.stack([inputs[(slice(None), *box)] for box in chunk])
                x = torch.from_numpy(_pad_to(tiles, 16)).to(self.device)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    y = self.net(x)
                y = y.float().cpu().numpy()[..., : tiles.shape[-2], : tiles.shape[-1]]
                for box, values in zip(chunk, y, strict=True):
                    out[(slice(None), *box)] += values * tiling.window
        return out * tiling.norm * scale

    def predict_stack(self, heightfields: np.ndarray) -> Job[np.ndarray]:
        """(2, z, y, x) images for (7, z, y, x) heightfields, one progress event per slice (partial: the slice)."""
        depth = heightfields.shape[1]
        out = np.zeros((len(SIGNALS), depth, *heightfields.shape[-2:]), dtype=np.float32)
        for z in range(depth):
            out[:, z] = self.predict(heightfields[:, z])
            yield Progress(z + 1, depth, f"surrogate: slice {z + 1}/{depth}", partial=(z, out[:, z]))
        return out


def _pad_to(tiles: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-pad (n, c, y, x) tiles so y and x are multiples of ``multiple`` (the encoder halves the size 4 times)."""
    pad_y = (-tiles.shape[-2]) % multiple
    pad_x = (-tiles.shape[-1]) % multiple
    if pad_y == 0 and pad_x == 0:
        return np.ascontiguousarray(tiles)
    return np.pad(tiles, ((0, 0), (0, 0), (0, pad_y), (0, pad_x)), mode="edge")


def network_tensors(net: Any, half: bool = False) -> dict[str, Any]:
    """The module's parameters and buffers as named tensors for safetensors (optionally in float16)."""
    import torch

    tensors = {}
    for name, tensor in net.state_dict().items():
        if half and tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        tensors[name] = tensor
    return tensors


def load_surrogate(path: Any = None, device: str = "auto") -> Surrogate:
    """The surrogate saved at ``path`` (safetensors + card); ``None`` loads the shipped weights."""
    import torch

    from napari_sparse_sem.nn.weights import load_weights
    from napari_sparse_sem.runtime import pick_device

    device = pick_device(device)
    path = shipped_weights() if path is None else path
    tensors, card = load_weights(path, device="cpu")
    if card.get("model") != "surrogate":
        raise ValueError(
            f"{path} holds {card.get('model', 'unknown')!r} weights, not the SEM surrogate: give a file written by "
            "`sparse-sem surrogate train`"
        )
    try:
        config = SurrogateConfig.from_dict(card["config"])
    except KeyError:
        raise ValueError(f"the model card of {path} has no surrogate 'config' to rebuild the network from") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"the model card of {path} has no valid surrogate config: {exc} (weights written by a newer "
            "napari-sparse-sem need that version)"
        ) from None
    net = build_network(config)
    state = {
        name: tensor.to(torch.float32) if tensor.is_floating_point() else tensor for name, tensor in tensors.items()
    }
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not match the architecture in its card ({config.layout}): {exc}") from None
    return Surrogate(net, config, device, card)


def shipped_weights() -> Any:
    """Path of the shipped surrogate weights."""
    from importlib.resources import files

    return files("napari_sparse_sem") / "weights" / "surrogate_carbon.safetensors"
