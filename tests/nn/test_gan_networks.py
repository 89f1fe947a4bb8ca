"""The partial-scan GAN networks: shapes for any image size, presets, configs saved in cards, discriminator crops."""

from __future__ import annotations

import pytest
import torch

from napari_sparse_sem.nn.gan import (
    PRESETS,
    GANConfig,
    Generator,
    MultiScaleDiscriminator,
    count_parameters,
    gan_config,
)


@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (250, 250)])
def test_generator_returns_full_and_half_size_outputs_for_any_size(
    shape: tuple[int, int], tiny_gan_architecture: dict
) -> None:
    net = Generator(GANConfig(**tiny_gan_architecture)).eval()
    with torch.inference_mode():
        out, trainer = net(torch.rand(2, 2, *shape))
    assert out.shape == (2, 1, *shape)
    assert trainer.shape == (2, 1, (shape[0] + 1) // 2, (shape[1] + 1) // 2)


def test_residual_blocks_start_as_identity_and_outputs_add_to_the_filled_input(tiny_gan_architecture: dict) -> None:
    torch.manual_seed(0)
    net = Generator(GANConfig(**tiny_gan_architecture)).eval()
    for block in [*net.inner_blocks, *net.outer_blocks]:
        x = torch.randn(1, block.body[0].in_channels, 8, 8)
        assert torch.equal(block(x), x)
    # with the output heads zeroed the restoration is exactly the filled input (the networks predict a correction)
    torch.nn.init.zeros_(net.outer_up[-1].weight)
    torch.nn.init.zeros_(net.outer_up[-1].bias)
    x = torch.rand(1, 2, 64, 64)
    with torch.inference_mode():
        out, _ = net(x)
    assert torch.allclose(out, x[:, :1])


def test_presets_and_config_round_trip() -> None:
    compact = Generator(gan_config("compact"))
    assert 1.5e6 < count_parameters(compact) < 2.5e6  # ~8 MB per generator in float32
    paper = gan_config("paper")
    assert paper.inner_widths == (128, 256, 512, 768) and paper.disc_crop == 70  # the public code's widths
    assert GANConfig.from_dict(paper.to_dict()) == paper
    assert set(PRESETS) == {"compact", "paper"}
    with pytest.raises(ValueError, match=r"unknown GAN config field\(s\) \['depth'\]"):
        GANConfig.from_dict({"fill": "zeros", "depth": 3})
    with pytest.raises(ValueError, match="fill must be one of"):
        GANConfig(fill="linear")
    with pytest.raises(ValueError, match="inner_widths needs 4"):
        GANConfig(inner_widths=(8, 8))
    with pytest.raises(ValueError, match="unknown GAN preset"):
        gan_config("huge")


def test_multiscale_discriminator_scores_each_scale_and_checks_crop_size(tiny_gan_architecture: dict) -> None:
    config = GANConfig(**tiny_gan_architecture)
    disc = MultiScaleDiscriminator(config)
    rng = torch.Generator().manual_seed(1)
    boxes = disc.crop_boxes(64, 64, 3, rng)
    assert len(boxes) == 3 and all(len(b) == 3 for b in boxes)
    assert all(
        0 <= y <= 64 - 16 * s and 0 <= x <= 64 - 16 * s for s, b in zip((1, 2, 4), boxes, strict=True) for y, x in b
    )
    scores = disc(torch.rand(3, 1, 64, 64), boxes)
    assert [s.shape for s in scores] == [(3,)] * 3
    with pytest.raises(ValueError, match="smaller than the largest discriminator crop"):
        disc.crop_boxes(48, 64, 1, rng)
