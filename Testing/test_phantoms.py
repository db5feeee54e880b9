"""Tests of the synthetic brain and chest phantoms (:mod:`MedXAILib.phantoms`)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from MedXAILib.phantoms import (
    BRAIN_CHANNELS,
    CHEST_FINDINGS,
    make_brain_phantom,
    make_chest_phantom,
    phantom_cohort,
)
from MedXAILib.volume import make_ijk_to_ras


def _rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    a = np.deg2rad(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


@pytest.fixture(scope="module")
def brain():
    return make_brain_phantom(0)


# ---- brain ---------------------------------------------------------------------------------------------------------
def test_brain_layout_and_types(brain):
    assert brain.image.array.shape == (4, 64, 96, 96)
    assert brain.image.array.dtype == np.float32
    assert brain.image.channel_names == BRAIN_CHANNELS
    assert brain.label.array.shape == (1, 64, 96, 96)
    assert brain.label.array.dtype == np.int16
    assert set(np.unique(brain.label.array)) <= {0, 1, 2, 3}
    assert brain.brain_mask.array.shape == (1, 64, 96, 96)
    assert np.isfinite(brain.image.array).all()
    np.testing.assert_allclose(brain.image.spacing, [2.0, 2.0, 2.0])


def test_brain_background_exactly_zero(brain):
    head = brain.head_mask.array[0].astype(bool)
    img = brain.image.array
    assert (img[:, ~head] == 0).all()
    assert (img[:, head] > 0).all()
    # the z-score foreground rule (sum over channels of |x| > 0) recovers the head exactly
    assert np.array_equal(np.abs(img).sum(axis=0) > 0, head)
    assert 0.15 < head.mean() < 0.7


def test_brain_deterministic_per_seed():
    a, b, c = make_brain_phantom(3), make_brain_phantom(3), make_brain_phantom(4)
    assert np.array_equal(a.image.array, b.image.array)
    assert np.array_equal(a.label.array, b.label.array)
    assert a.info == b.info
    assert not np.array_equal(a.label.array, c.label.array)
    assert not np.allclose(a.image.array, c.image.array)


def test_brain_tumour_nesting():
    struct = ndimage.generate_binary_structure(3, 1)
    seen_necrosis = seen_without = False
    for seed in range(4):
        p = make_brain_phantom(seed)
        lab = p.label.array[0]
        brain = p.brain_mask.array[0].astype(bool)
        assert (lab[~brain] == 0).all(), "tumour outside the brain"
        assert (lab == 3).sum() > 50, "every tumour has an enhancing rim"
        assert (lab == 2).sum() > 50, "every tumour has oedema"
        nec = lab == 1
        if nec.any():
            seen_necrosis = True
            grown = ndimage.binary_dilation(nec, structure=struct)
            assert np.isin(lab[grown], [1, 3]).all(), "necrosis must be wrapped by enhancing rim"
        else:
            seen_without = True
        # one tumour: the whole tumour is a single connected object (up to tiny rim islands)
        comp, n = ndimage.label(lab > 0)
        sizes = np.bincount(comp.ravel())[1:]
        assert sizes.max() > 0.95 * sizes.sum()
    assert seen_necrosis and seen_without


def test_brain_channel_contrast(brain):
    img = brain.image.array
    lab = brain.label.array[0]
    normal = (brain.brain_mask.array[0] > 0) & (lab == 0)
    t1, t1ce, t2, flair = (img[i] for i in range(4))

    def m(a, region):
        return float(a[region].mean())

    oed, rim, nec = lab == 2, lab == 3, lab == 1
    assert m(flair, oed) > 1.3 * m(flair, normal)
    assert m(t2, oed) > 1.3 * m(t2, normal)
    assert m(t1ce, rim) > 1.6 * m(t1ce, normal)
    assert m(t1ce, rim) > 2.5 * m(t1ce, nec)
    assert m(t1, oed) < m(t1, normal)


def test_brain_geometry_oblique_anisotropic():
    rot = _rotation([1, 2, 3], 25.0)
    spacing = (1.5, 1.2, 3.0)
    shape = (44, 160, 128)
    p = make_brain_phantom(5, shape=shape, spacing=spacing, direction=rot, origin=(10.0, -20.0, 30.0))
    expected = make_ijk_to_ras(spacing, (10.0, -20.0, 30.0), rot)
    for vol in (p.image, p.label, p.brain_mask, p.head_mask):
        assert vol.shape == shape
        np.testing.assert_allclose(vol.ijk_to_ras, expected, atol=1e-12)
    np.testing.assert_allclose(p.image.spacing, spacing)
    np.testing.assert_allclose(p.image.direction, rot, atol=1e-12)
    # the direction only places the grid: the array is the same as on an axis-aligned grid
    q = make_brain_phantom(5, shape=shape, spacing=spacing, origin=(10.0, -20.0, 30.0))
    assert np.array_equal(p.label.array, q.label.array)
    # the reported tumour centre agrees with the matrix
    ijk = np.append(p.info["tumour_center_ijk"], 1.0)
    np.testing.assert_allclose(expected @ ijk, np.append(p.info["tumour_center_ras"], 1.0), atol=1e-9)
    # anatomy is in millimetres: the same seed on a finer or anisotropic grid has about the same tumour volume
    iso = make_brain_phantom(5)
    vol_iso = (iso.label.array > 0).sum() * iso.label.voxel_volume_ml
    vol_aniso = (p.label.array > 0).sum() * p.label.voxel_volume_ml
    assert vol_aniso == pytest.approx(vol_iso, rel=0.15)


def test_brain_default_grid_centred():
    p = make_brain_phantom(1)
    centre = p.image.ijk_to_ras @ np.array([47.5, 47.5, 31.5, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)


def test_brain_fast():
    start = time.perf_counter()
    make_brain_phantom(11)
    assert time.perf_counter() - start < 3.0  # < 1 s on an idle core; slack for a shared machine


# ---- chest ---------------------------------------------------------------------------------------------------------
def test_chest_layout():
    c = make_chest_phantom(0)
    assert c.image.array.shape == (1, 1, 256, 256)
    assert c.image.array.dtype == np.float32
    assert c.image.is_2d
    np.testing.assert_allclose(c.image.spacing[:2], [1.4, 1.4])
    assert c.labels.shape == (3,)
    assert c.masks.shape == (3, 256, 256) and c.masks.dtype == bool
    assert np.isfinite(c.image.array).all()


def test_chest_deterministic_per_seed():
    a, b, c = make_chest_phantom(7), make_chest_phantom(7), make_chest_phantom(8)
    assert np.array_equal(a.image.array, b.image.array)
    assert np.array_equal(a.masks, b.masks)
    assert a.boxes == b.boxes
    assert not np.allclose(a.image.array, c.image.array)


def test_chest_masks_boxes_consistent():
    cohort = phantom_cohort("chest", 40, seed=100)
    counts = np.zeros(3)
    for c in cohort:
        counts += c.labels
        for f, name in enumerate(CHEST_FINDINGS):
            assert bool(c.labels[f]) == bool(c.masks[f].any())
            if not c.labels[f]:
                assert name not in c.boxes
                continue
            x, y, w, h = c.boxes[name]
            rows, cols = np.nonzero(c.masks[f])
            assert (x, y) == (cols.min(), rows.min())
            assert (x + w - 1, y + h - 1) == (cols.max(), rows.max())
            assert 0 <= x and 0 <= y and x + w <= 256 and y + h <= 256
        assert set(c.boxes) == {CHEST_FINDINGS[f] for f in range(3) if c.labels[f]}
    # each finding present about half of the time
    assert ((counts > 8) & (counts < 32)).all(), counts


def test_chest_findings_where_expected():
    c = make_chest_phantom(1, findings=(1, 1, 1))
    assert c.labels.tolist() == [1, 1, 1]
    img = c.image.array[0, 0]
    nod, heart, fluid = c.masks
    # a nodule is denser (brighter) than the lung tissue around it
    ring = ndimage.binary_dilation(nod, iterations=4) & ~ndimage.binary_dilation(nod, iterations=1)
    assert img[nod].mean() > img[ring].mean()
    # the effusion sits in the lower part of the image; cardiomegaly is a wide heart
    assert np.nonzero(fluid)[0].mean() > 128
    assert c.info["cardiothoracic_ratio"] > 0.5
    none = make_chest_phantom(1, findings=(0, 0, 0))
    assert none.labels.tolist() == [0, 0, 0] and not none.masks.any() and none.boxes == {}
    assert none.info["cardiothoracic_ratio"] < 0.5


def test_chest_other_size():
    c = make_chest_phantom(2, size=512)
    assert c.image.array.shape == (1, 1, 512, 512)
    np.testing.assert_allclose(c.image.spacing[:2], [0.7, 0.7])


def test_cohort_kinds():
    assert len(phantom_cohort("brain", 2, seed=9, shape=(16, 24, 24), spacing=8.0)) == 2
    with pytest.raises(ValueError):
        phantom_cohort("knee", 1)
