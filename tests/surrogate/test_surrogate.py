"""The neural surrogate: network shapes, symmetries of the training augmentation, shipped weights against the MC."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate.geometry import GeometrySpec, Primitives, generate
from napari_sparse_sem.surrogate.heightfield import extended_heightfield
from napari_sparse_sem.surrogate.model import (
    LAYOUTS,
    Surrogate,
    SurrogateConfig,
    build_network,
    load_surrogate,
    network_inputs,
    parameter_count,
)
from napari_sparse_sem.surrogate.montecarlo import MCConfig, simulate_slice
from napari_sparse_sem.surrogate.training import dihedral


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_predicts_any_size(layout: str) -> None:
    config = SurrogateConfig(layout=layout)
    torch.manual_seed(0)
    surrogate = Surrogate(build_network(config), config)
    heightfield = np.zeros((7, 50, 70), np.float32)
    heightfield[6] = 1.0
    heightfield[[2, 3]] = np.inf  # NO_SURFACE becomes the no-surface depth
    whole = surrogate.predict(heightfield)
    tiled = surrogate.predict(heightfield, tile=32, overlap=8)
    assert whole.shape == tiled.shape == (2, 50, 70) and np.isfinite(tiled).all()
    assert network_inputs(heightfield, config).max() == pytest.approx(1.0)


def test_shipped_layout_fits_the_size_limit() -> None:
    config = SurrogateConfig(layout="resnet34-half")
    assert parameter_count(build_network(config)) * 2 < 25e6  # float16 weights under 25 MB


def test_augmentation_keeps_normals_pointing_outwards() -> None:
    """Mirrors and transposes move the image and flip/swap the normal map's x/y with it (a sphere's normals point
    away from its centre before and after)."""
    sphere = Primitives(
        kind=np.array([0]), center=np.array([[20.0, 12.0, 10.0]]), radius=np.array([8.0]), half_height=np.zeros(1),
        rotation=np.eye(3)[None], window=(24, 32, 40),
    )  # fmt: skip
    hf = torch.from_numpy(extended_heightfield(sphere, 14.0)[4:6].copy())
    for k in range(8):
        out = dihedral(hf, k, (0, 1)).numpy()
        hit = np.abs(out).sum(0) > 0
        ys, xs = np.nonzero(hit)
        cy, cx = ys.mean(), xs.mean()
        yy, xx = np.mgrid[: out.shape[1], : out.shape[2]]
        outward = out[0] * (xx - cx) + out[1] * (yy - cy)
        assert (outward[hit] >= -1e-3).mean() > 0.98, k


def test_shipped_weights_follow_the_monte_carlo_on_unseen_cubes() -> None:
    surrogate = load_surrogate(None, device="cpu")
    assert surrogate.config.layout == "resnet34-half" and surrogate.card["model"] == "surrogate"
    geometry = GeometrySpec("cubes", 0.5, edge=(10, 15), window=(60, 88, 88), seed=5)
    primitives = generate(geometry)
    crop = (slice(20, 68), slice(20, 68))
    mc = run_job(simulate_slice(primitives, 59.0, MCConfig(electrons_per_pixel=100, seed=1), region=(20, 68, 20, 68)))
    heightfield = extended_heightfield(primitives, 59.0, max_depth=surrogate.config.no_surface)
    predicted = surrogate.predict(heightfield[(slice(None), *crop)])
    for k, (reference, floor) in enumerate(((mc.bse, 0.75), (mc.se, 0.8))):
        assert np.corrcoef(predicted[k].ravel(), reference.ravel())[0, 1] > floor
        assert predicted[k].mean() == pytest.approx(reference.mean(), rel=0.06)


def test_weights_of_another_model_are_refused(tmp_path) -> None:
    from napari_sparse_sem.nn.weights import save_weights

    path = tmp_path / "other.safetensors"
    save_weights(path, {"w": torch.zeros(2)}, {"model": "gan"})
    with pytest.raises(ValueError, match="not the SEM surrogate"):
        load_surrogate(path)
    (tmp_path / "pickle.safetensors").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="safetensors"):
        load_surrogate(tmp_path / "pickle.safetensors")
