"""Boolean models: Miles' porosity, orientations, presets, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparse_sem.surrogate.geometry import (
    CYLINDER,
    GeometrySpec,
    Primitives,
    generate,
    table1_presets,
    voxelize,
)


@pytest.mark.parametrize("porosity", [0.3, 0.5, 0.7])
def test_sphere_model_porosity_matches_miles(porosity: float) -> None:
    spec = GeometrySpec("spheres", porosity, radius=(10, 15), window=(160, 200, 200), seed=1)
    solid = voxelize(generate(spec))
    assert abs((1.0 - solid.mean()) - porosity) <= 0.03


@pytest.mark.parametrize("shape", ["cubes", "mixture"])
def test_other_shapes_reach_the_target_porosity(shape: str) -> None:
    spec = GeometrySpec(shape, 0.5, radius=(6, 10), height=(20, 40), edge=(12, 20), window=(120, 160, 160), seed=2)
    solid = voxelize(generate(spec))
    assert abs((1.0 - solid.mean()) - 0.5) <= 0.04


def test_intensity_is_miles_formula() -> None:
    spec = GeometrySpec("spheres", 0.5, radius=(10, 10))
    assert spec.mean_volume() == pytest.approx(4 / 3 * np.pi * 1000)
    assert spec.intensity() == pytest.approx(-np.log(0.5) / spec.mean_volume())
    cylinders = GeometrySpec("cylinders", 0.3, radius=(5, 5), height=(100, 100))
    assert cylinders.mean_volume() == pytest.approx(np.pi * 25 * 100)


def test_particles_fill_the_enlarged_window_without_edge_deficit() -> None:
    spec = GeometrySpec("spheres", 0.5, radius=(10, 15), window=(100, 100, 100), seed=4)
    prims = generate(spec)
    assert prims.center.min() < 0 and prims.center[:, 0].max() > 100  # centres outside the window too
    expected = spec.intensity() * (100 + 2 * 15) ** 3
    assert abs(len(prims) - expected) < 4 * np.sqrt(expected)
    solid = voxelize(prims)
    border, middle = solid[:, :, :10].mean(), solid[:, :, 45:55].mean()
    assert abs(border - middle) < 0.08  # the window's edge is as solid as its middle


def test_vmf_cylinders_lean_towards_z_uniform_ones_do_not() -> None:
    common = dict(radius=(5, 10), height=(100, 150), window=(100, 300, 300), seed=3)
    vmf = generate(GeometrySpec("cylinders", 0.5, orientation="vmf", kappa=20, **common))
    uniform = generate(GeometrySpec("cylinders", 0.5, orientation="uniform", **common))
    cos_vmf = np.abs(vmf.rotation[vmf.kind == CYLINDER, 2, 2])
    cos_uniform = np.abs(uniform.rotation[uniform.kind == CYLINDER, 2, 2])
    assert cos_vmf.mean() > 0.9  # E|cos θ| = coth κ − 1/κ = 0.95 for κ = 20
    assert abs(cos_uniform.mean() - 0.5) < 0.06  # uniform on the sphere: E|cos θ| = 1/2
    frames = vmf.rotation
    assert np.allclose(frames @ np.transpose(frames, (0, 2, 1)), np.eye(3), atol=1e-9)


def test_same_seed_same_list_and_save_load_round_trip(tmp_path) -> None:
    spec = GeometrySpec("mixture", 0.5, window=(40, 60, 60), seed=7)
    a, b = generate(spec), generate(spec)
    assert np.array_equal(a.center, b.center) and np.array_equal(a.kind, b.kind)
    path = a.save(tmp_path / "prims.npz")
    loaded = Primitives.load(path)
    assert loaded.spec == spec and loaded.window == a.window
    assert np.array_equal(voxelize(loaded), voxelize(a))
    with pytest.raises(FileExistsError, match="overwrite"):
        a.save(path)
    with pytest.raises(ValueError, match=r"\.npz"):
        a.save(tmp_path / "prims.json")


def test_bad_parameters_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="porosity"):
        GeometrySpec(porosity=1.2)
    with pytest.raises(ValueError, match="shape"):
        GeometrySpec(shape="tori")
    with pytest.raises(ValueError, match="radius"):
        GeometrySpec(radius=(5, 2))


def test_table1_presets_cover_the_paper() -> None:
    presets = table1_presets()
    spheres = [p for p in presets.values() if p.shape == "spheres"]
    cylinders = [p for p in presets.values() if p.shape == "cylinders"]
    assert len(spheres) == 6 and len(cylinders) == 36  # 3 porosities × 2 radii; × 3 radii × 2 heights × 2 orientations
    assert {p.porosity for p in presets.values()} == {0.3, 0.5, 0.7}
    assert any(p.shape == "cubes" for p in presets.values())
