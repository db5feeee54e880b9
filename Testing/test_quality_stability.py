"""Stability: perturbations in physical space and the metrics against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import oblique_direction

from MedXAILib.errors import InputError
from MedXAILib.quality.stability import add_noise, rotate, rotate_back, rotation_matrix, stability
from MedXAILib.volume import Volume, make_ijk_to_ras

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blob_volume(shape=(14, 30, 34), spacing=(0.8, 1.1, 2.5), centre_mm=(6.0, -4.0, 3.0), sigma_mm=5.0) -> Volume:
    """A smooth Gaussian blob at a physical position on an anisotropic, oblique grid."""
    m = make_ijk_to_ras(spacing, (0.0, 0.0, 0.0), oblique_direction())
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()])
    ctr_idx = (np.asarray(shape[::-1]) - 1) / 2.0
    m[:3, 3] = -m[:3, :3] @ ctr_idx  # grid centre at RAS (0, 0, 0)
    p = m[:3, :3] @ ijk + m[:3, 3:4]
    d2 = ((p - np.asarray(centre_mm)[:, None]) ** 2).sum(0)
    arr = np.exp(-d2 / (2 * sigma_mm**2)).reshape(shape)
    return Volume(arr[None].astype(np.float32), m)


def centroid_ras(vol: Volume) -> np.ndarray:
    a = vol.array[0].astype(np.float64)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in a.shape], indexing="ij")
    idx = np.array([(a * i).sum(), (a * j).sum(), (a * k).sum()]) / a.sum()
    return vol.ijk_to_ras[:3, :3] @ idx + vol.ijk_to_ras[:3, 3]


def identity_explainer(volume: Volume) -> np.ndarray:
    """A map that is exactly rotation-equivariant: the image itself."""
    return volume.array[0].astype(np.float64)


def test_rotation_turns_the_anatomy_about_the_physical_centre_on_an_anisotropic_grid() -> None:
    vol = blob_volume()
    rotated, inside = rotate(vol, 5.0, "k")
    axis = vol.direction[:, 2]
    expected = rotation_matrix(axis, 5.0) @ centroid_ras(vol)  # the grid centre is RAS 0
    np.testing.assert_allclose(centroid_ras(rotated), expected, atol=0.15)
    assert inside.mean() > 0.8
    # a 90° rotation matrix about z maps x to y (right-hand rule)
    np.testing.assert_allclose(rotation_matrix([0, 0, 1], 90) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    back, _ = rotate_back(vol, rotated.array[0], 5.0, "k")
    np.testing.assert_allclose(centroid_ras(vol.with_array(back[None])), centroid_ras(vol), atol=0.15)


def test_equivariant_explainer_is_stable_and_max_sensitivity_is_the_scale_change() -> None:
    vol = blob_volume()
    res = stability(vol, identity_explainer, snr_db=[40.0], rotations_deg=[-5.0, 5.0], scales=[0.9, 1.2])
    assert res["stability_ssim_rotation"] > 0.98 and res["stability_spearman_rotation"] > 0.98
    assert res["stability_ssim_scaling"] == pytest.approx(1.0, abs=1e-9)  # SSIM normalises each map
    by = {(r["kind"], r["value"]): r for r in res["stability_perturbations"]}
    assert by[("intensity_scale", 1.2)]["sensitivity"] == pytest.approx(0.2, rel=1e-6)  # ‖1.2x − x‖ / ‖x‖
    assert by[("intensity_scale", 0.9)]["sensitivity"] == pytest.approx(0.1, rel=1e-6)
    assert res["max_sensitivity"] == pytest.approx(max(r["sensitivity"] for r in by.values()))
    assert res["stability_ssim"] == pytest.approx(np.mean([r["ssim"] for r in by.values()]))
    low = stability(vol, identity_explainer, snr_db=[5.0], rotations_deg=[], scales=[])
    assert low["stability_ssim"] < res["stability_ssim_noise"]  # more noise, less similar


def test_noise_has_the_stated_snr_inside_the_object_only() -> None:
    arr = np.zeros((2, 6, 40, 40), np.float32)
    arr[:, :, 5:35, 5:35] = np.array([3.0, 7.0])[:, None, None, None]
    vol = Volume(arr, make_ijk_to_ras((1.0, 1.0, 3.0)))
    noisy = add_noise(vol, 20.0, seed=1).array
    assert np.all(noisy[:, :, :5] == 0)
    for c, level in enumerate([3.0, 7.0]):
        sd = float((noisy[c] - arr[c])[:, 5:35, 5:35].std())
        assert sd == pytest.approx(level / 10.0, rel=0.03)  # rms / 10^(20/20)


def test_2d_images_rotate_in_plane_and_large_angles_are_refused() -> None:
    img = Volume(np.random.default_rng(0).random((1, 1, 20, 24)).astype(np.float32), make_ijk_to_ras((0.7, 1.4, 1)))
    rotated, inside = rotate(img, 3.0)
    assert rotated.shape == img.shape and inside.any()
    with pytest.raises(InputError, match="5"):
        stability(img, identity_explainer, rotations_deg=[10.0])
