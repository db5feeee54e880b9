"""Segmentation metrics: hand-made cases with known answers, empty masks, and agreement with MONAI."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from MedXAILib.errors import InputError
from MedXAILib.metrics.segmentation import boundary, dice, hd95_mm, iou, segmentation_metrics, volume_ml
from MedXAILib.volume import Volume, make_ijk_to_ras

SPACING_IJK = (0.5, 1.0, 2.0)  # mm along i, j, k
SPACING_KJI = SPACING_IJK[::-1]


def cube(shape: tuple[int, int, int], start: tuple[int, int, int], size: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(s, s + size) for s in start)] = True
    return m


def blob(rng: np.random.Generator, shape: tuple[int, ...], level: float = 0.52) -> np.ndarray:
    return ndimage.gaussian_filter(rng.random(shape), 2.5) > level


def monai_scores(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> tuple[float, float, float]:
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    p = torch.as_tensor(pred[None, None], dtype=torch.float32)
    r = torch.as_tensor(ref[None, None], dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = metrics.compute_dice(p, r, include_background=True).item()
        j = metrics.compute_iou(p, r, include_background=True).item()
        h = metrics.compute_hausdorff_distance(
            p, r, include_background=True, percentile=95, spacing=list(spacing)
        ).item()
    return d, j, h


# ---- known answers ----------------------------------------------------------------------------------------------
def test_offset_cubes_dice_iou() -> None:
    a = cube((20, 20, 24), (5, 5, 5), 10)
    b = cube((20, 20, 24), (5, 5, 8), 10)  # shifted 3 voxels along i
    assert dice(a, b) == pytest.approx(0.7)
    assert iou(a, b) == pytest.approx(700 / 1300)


def test_parallel_planes_hd95_is_the_gap_in_mm() -> None:
    a = np.zeros((12, 10, 10), bool)
    b = np.zeros_like(a)
    a[3, 2:8, 2:8] = True
    b[7, 2:8, 2:8] = True
    # every voxel of one plane has the other plane's voxel 4 slices (4 × 2 mm) straight above or below
    assert hd95_mm(a, b, SPACING_KJI) == pytest.approx(8.0)
    assert hd95_mm(a, b, (1.0, 1.0, 1.0)) == pytest.approx(4.0)


def test_nested_cubes_hd95_is_sqrt2() -> None:
    inner = cube((20, 20, 20), (5, 5, 5), 10)
    outer = cube((20, 20, 20), (4, 4, 4), 12)
    # outer boundary: 600 face voxels at 1, 120 edge voxels at √2, 8 corners at √3 → 95th percentile √2;
    # inner boundary: every voxel at 1 from the outer boundary.
    assert hd95_mm(inner, outer) == pytest.approx(math.sqrt(2))
    assert hd95_mm(outer, inner) == pytest.approx(math.sqrt(2))  # symmetric


def test_identical_masks() -> None:
    a = cube((8, 8, 8), (2, 2, 2), 3)
    assert (dice(a, a), iou(a, a), hd95_mm(a, a)) == (1.0, 1.0, 0.0)


def test_boundary_counts_array_edge_as_outside() -> None:
    full = np.ones((3, 4, 5), bool)
    assert boundary(full).sum() == full.size - 1 * 2 * 3  # only the 1×2×3 core is interior


def test_2d_masks_accepted() -> None:
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b = np.roll(a, 2, axis=1)
    assert dice(a, b) == pytest.approx(0.5)
    # shifted 4×4 squares: boundary distances 0, 1 or 2 voxels, 95th percentile 2 (K == 1: k spacing ignored)
    assert hd95_mm(a, b, (9.0, 1.0, 1.0)) == pytest.approx(2.0)


# ---- empty masks ------------------------------------------------------------------------------------------------
def test_both_empty() -> None:
    z = np.zeros((4, 5, 6), bool)
    assert (dice(z, z), iou(z, z), hd95_mm(z, z)) == (1.0, 1.0, 0.0)


def test_one_empty() -> None:
    z = np.zeros((4, 5, 6), bool)
    a = z.copy()
    a[1, 1, 1] = True
    for p, r in ((a, z), (z, a)):
        assert (dice(p, r), iou(p, r), hd95_mm(p, r)) == (0.0, 0.0, None)


def test_empty_label_gets_a_note_and_null_hd95() -> None:
    ref = np.zeros((1, 6, 6, 6), np.int16)
    pred = ref.copy()
    ref[0, 1:3, 1:3, 1:3] = 1
    pred[0, 3:5, 3:5, 3:5] = 2
    out = segmentation_metrics(Volume(pred), Volume(ref))
    assert set(out) == {"1", "2"}
    assert out["1"]["hd95_mm"] is None and "prediction is empty" in out["1"]["note"]
    assert out["2"]["hd95_mm"] is None and "reference is empty" in out["2"]["note"]
    assert out["1"]["dice"] == 0.0


# ---- Volume-level API -------------------------------------------------------------------------------------------
def labelled_pair(shape: tuple[int, int, int] = (16, 20, 24)) -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros(shape, np.int16)
    ref[cube(shape, (3, 4, 5), 8)] = 1
    ref[cube(shape, (5, 6, 7), 3)] = 2
    pred = np.roll(ref, 1, axis=2)
    return pred, ref


def test_segmentation_metrics_labels_regions_and_volumes() -> None:
    pred, ref = labelled_pair()
    m = make_ijk_to_ras(SPACING_IJK, origin=(10, -5, 3))
    out = segmentation_metrics(Volume(pred, m), Volume(ref, m), regions={"whole": [1, 2]})
    assert list(out) == ["1", "2", "whole"]
    assert set(out["1"]) == {"dice", "iou", "hd95_mm", "volume_ml_prediction", "volume_ml_reference"}
    voxel_ml = 0.5 * 1.0 * 2.0 / 1000
    assert out["2"]["volume_ml_reference"] == pytest.approx(27 * voxel_ml)
    assert out["whole"]["volume_ml_reference"] == pytest.approx(512 * voxel_ml)
    assert out["whole"]["dice"] == pytest.approx(dice(pred > 0, ref > 0))
    assert volume_ml(ref == 2, voxel_ml) == pytest.approx(27 * voxel_ml)


def test_only_requested_labels_and_unknown_label() -> None:
    pred, ref = labelled_pair()
    assert list(segmentation_metrics(Volume(pred), Volume(ref), labels=[2])) == ["2"]
    with pytest.raises(InputError, match="label 7 is in neither.*labels present: 1, 2"):
        segmentation_metrics(Volume(pred), Volume(ref), labels=[7])
    with pytest.raises(InputError, match="background"):
        segmentation_metrics(Volume(pred), Volume(ref), labels=[0, 1])


def test_grid_mismatch_is_named() -> None:
    pred, ref = labelled_pair()
    with pytest.raises(InputError, match="spacing"):
        segmentation_metrics(Volume(pred, make_ijk_to_ras((1, 1, 2))), Volume(ref))
    with pytest.raises(InputError, match="size"):
        segmentation_metrics(Volume(pred[:-1]), Volume(ref))


def test_oblique_direction_does_not_change_hd95() -> None:
    pred, ref = labelled_pair()
    c, s = math.cos(0.4), math.sin(0.4)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    straight = make_ijk_to_ras(SPACING_IJK)
    oblique = make_ijk_to_ras(SPACING_IJK, direction=rot)
    a = segmentation_metrics(Volume(pred, straight), Volume(ref, straight))
    b = segmentation_metrics(Volume(pred, oblique), Volume(ref, oblique))
    assert a["1"]["hd95_mm"] == pytest.approx(b["1"]["hd95_mm"])
    assert a["1"]["hd95_mm"] == pytest.approx(hd95_mm(pred == 1, ref == 1, SPACING_KJI))


# ---- agreement with MONAI ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_random_3d_blobs_agree_with_monai(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = blob(rng, (14, 26, 22)), blob(rng, (14, 26, 22))
    assert a.any() and b.any()
    d, j, h = monai_scores(a, b, SPACING_KJI)
    assert dice(a, b) == pytest.approx(d, abs=1e-6)
    assert iou(a, b) == pytest.approx(j, abs=1e-6)
    assert hd95_mm(a, b, SPACING_KJI) == pytest.approx(h, abs=0.05)


def test_random_2d_blobs_agree_with_monai() -> None:
    rng = np.random.default_rng(11)
    a, b = blob(rng, (40, 36)), blob(rng, (40, 36))
    _, _, h = monai_scores(a, b, (0.7, 1.3))
    assert hd95_mm(a[None], b[None], (1.0, 0.7, 1.3)) == pytest.approx(h, abs=0.05)


def test_blob_touching_the_array_edge_agrees_with_monai() -> None:
    a = np.zeros((6, 12, 12), bool)
    a[:, :5, :7] = True
    b = np.zeros_like(a)
    b[1:, 2:9, 3:12] = True
    _, _, h = monai_scores(a, b, SPACING_KJI)
    assert hd95_mm(a, b, SPACING_KJI) == pytest.approx(h, abs=0.05)


# ---- real masks -------------------------------------------------------------------------------------------------
def _compare_label_maps_with_monai(pred: Volume, ref: Volume) -> float:
    out = segmentation_metrics(pred, ref)
    worst = 0.0
    for key, scores in out.items():
        p, r = pred.array[0] == int(key), ref.array[0] == int(key)
        d, j, h = monai_scores(p, r, tuple(ref.spacing_kji))
        assert scores["dice"] == pytest.approx(d, abs=1e-6)
        assert scores["iou"] == pytest.approx(j, abs=1e-6)
        assert scores["hd95_mm"] == pytest.approx(h, abs=0.05), key
        worst = max(worst, abs(scores["hd95_mm"] - h))
    return worst


@pytest.mark.slow
def test_brats_labels_vs_shifted_eroded_copy(test_data_dir) -> None:
    from MedXAILib.io import read_label_map

    paths = sorted(test_data_dir.glob("deepmedic-brats2015/*/*/OTMultiClass.nii.gz"))
    if not paths:
        pytest.skip("no deepmedic-brats2015/*/*/OTMultiClass.nii.gz in the test data")
    ref = read_label_map(paths[0])
    arr = ref.array[0]
    pred = np.roll(arr, (1, -2, 3), axis=(0, 1, 2))
    eroded = ndimage.binary_erosion(pred == 2, iterations=2)
    pred = np.where((pred == 2) & ~eroded, 0, pred).astype(arr.dtype)
    _compare_label_maps_with_monai(ref.with_array(pred[None]), ref)


@pytest.mark.slow
def test_anisotropic_pyradiomics_label_vs_perturbed_copy(test_data_dir) -> None:
    from MedXAILib.io import read_label_map

    path = test_data_dir / "pyradiomics" / "brain1_label.nrrd"
    if not path.exists():
        pytest.skip(f"{path} not in the test data")
    ref = read_label_map(path)
    assert ref.spacing_kji[0] > 5 * ref.spacing_kji[2]  # 6.5 mm slices, 0.78 mm pixels
    arr = ref.array[0] > 0
    pred = ndimage.binary_dilation(np.roll(arr, 4, axis=2), iterations=2) & ~np.roll(arr, -1, axis=0)
    _compare_label_maps_with_monai(ref.with_array(pred[None].astype(np.int16)), ref)
