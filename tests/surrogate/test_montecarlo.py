"""The Monte Carlo teacher against measured physics (Reuter's η, Kanaya–Okayama range, SE tilt law) and in pores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expn

from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate import montecarlo as mc
from napari_sparse_sem.surrogate._mc_kernel import _se_escape
from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate, voxelize
from napari_sparse_sem.surrogate.materials import kanaya_okayama_range_nm, material, reuter_eta


@pytest.mark.parametrize(
    ("element", "energy", "tolerance"),
    [("C", 20, 0.25), ("Al", 20, 0.25), ("Cu", 20, 0.25), ("Au", 20, 0.30), ("C", 5, 0.25), ("Cu", 10, 0.25)],
)
def test_backscatter_coefficient_matches_reuter(element: str, energy: float, tolerance: float) -> None:
    result = mc.bulk_run(mc.MCConfig(element=element, energy_kev=energy), electrons=12_000)
    reference = reuter_eta(material(element).z)
    assert result["eta"] == pytest.approx(reference, rel=tolerance)


def test_eta_rises_with_atomic_number() -> None:
    etas = [mc.bulk_run(mc.MCConfig(element=e, energy_kev=10), electrons=6000)["eta"] for e in ("C", "Al", "Cu", "Au")]
    assert etas == sorted(etas)


@pytest.mark.parametrize("element", ["C", "Al"])
def test_penetration_depth_against_kanaya_okayama(element: str) -> None:
    result = mc.bulk_run(mc.MCConfig(element=element, energy_kev=10), electrons=8000, record_depth=True)
    assert 0.7 <= result["depth_p99_over_ko"] <= 1.0
    assert result["kanaya_okayama_range_nm"] == pytest.approx(kanaya_okayama_range_nm(material(element), 10))


def test_se_yield_of_a_tilted_surface_rises_a_bit_faster_than_one_over_cos() -> None:
    flat = mc.bulk_run(mc.MCConfig(energy_kev=2.0), electrons=20_000)["se_yield"]
    assert 0.2 < flat < 0.6  # carbon near 2 keV
    for tilt in (30, 45, 60):
        tilted = mc.bulk_run(mc.MCConfig(energy_kev=2.0, tilt_deg=tilt), electrons=20_000)["se_yield"]
        ratio = tilted / flat * math.cos(math.radians(tilt))
        assert 1.0 <= ratio <= 1.4, (tilt, ratio)


@pytest.mark.parametrize("depth", [0.0, 1.0, 4.0])
def test_se_escape_from_a_flat_surface_is_half_e2(depth: float) -> None:
    """Isotropic emission at depth δ below a plane escapes with probability ½·E₂(δ/λ)."""
    scene = mc._Scene(None, 1.0)
    rng = np.random.default_rng(0)
    values = [
        _se_escape(0.0, 0.0, -depth, a, b, 3.0, depth + 15.0, 0.0, *scene.kernel_args())
        for a, b in rng.random((8000, 2))
    ]
    assert np.mean(values) == pytest.approx(0.5 * expn(2, depth / 3.0), abs=0.01)


def test_bulk_carbon_run_reports_steps_and_throughput() -> None:
    result = mc.bulk_run(mc.MCConfig(energy_kev=2.0), electrons=100_000)
    assert result["steps_per_trajectory"] == pytest.approx(57, rel=0.1)
    assert result["trajectories_per_second"] > 0  # reported, not asserted: tests never assert timings (~5·10⁵/s)


@pytest.fixture(scope="module")
def porous() -> tuple:
    prims = generate(GeometrySpec("spheres", 0.5, radius=(8, 12), window=(64, 48, 48), pixel_size_nm=5.0, seed=5))
    result = run_job(mc.simulate_slice(prims, 60.0, mc.MCConfig(electrons_per_pixel=30, seed=1)))
    return prims, result


def test_porous_slice_pores_are_dark_in_se_and_deeper_solid_shines_through_in_bse(porous: tuple) -> None:
    prims, result = porous
    cut = voxelize(prims, (59, 60))[0]
    assert result.bse.shape == result.se.shape == (48, 48) and np.isfinite(result.se).all()
    assert result.se[cut].mean() > 1.5 * result.se[~cut].mean()  # SE emitted into pores are re-absorbed
    below = voxelize(prims, (40, 59)).any(axis=0)
    shine = ~cut & below  # pore at the plane, solid further down
    assert result.bse[shine].mean() > 0.02  # BSE from deeper structures leave through the pore
    assert result.bse[cut].mean() > result.bse[shine].mean()


def test_porous_slice_edges_are_bright_in_se(porous: tuple) -> None:
    from scipy import ndimage

    prims, result = porous
    cut = voxelize(prims, (59, 60))[0]
    edge = cut & ~ndimage.binary_erosion(cut, iterations=1)
    interior = ndimage.binary_erosion(cut, iterations=3)
    assert result.se[edge].mean() > 1.1 * result.se[interior].mean()


def test_simulation_is_seeded_and_independent_of_batching(porous: tuple) -> None:
    prims, result = porous
    config = mc.MCConfig(electrons_per_pixel=30, seed=1)
    region = (10, 14, 5, 20)
    again = run_job(mc.simulate_slice(prims, 60.0, config, region=region, rows_per_batch=3))
    assert np.array_equal(again.bse, result.bse[10:14, 5:20])
    assert np.array_equal(again.se, result.se[10:14, 5:20])


def test_cancelled_run_keeps_finished_rows(porous: tuple) -> None:
    prims, _ = porous
    job = mc.simulate_slice(prims, 60.0, mc.MCConfig(electrons_per_pixel=5), rows_per_batch=4)
    events = [next(job), next(job)]
    job.close()
    partial = events[-1].partial
    assert np.isfinite(partial.bse[:4]).all() and np.isnan(partial.bse[4:]).all()


def test_bad_configs_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown element"):
        mc.MCConfig(element="Xx")
    with pytest.raises(ValueError, match="cutoff"):
        mc.MCConfig(cutoff_kev=5.0, energy_kev=2.0)
    prims = generate(GeometrySpec(window=(20, 20, 20)))
    with pytest.raises(ValueError, match="cut plane"):
        run_job(mc.simulate_slice(prims, 30.0))
