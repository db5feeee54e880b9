"""Localisation, complexity and similarity metrics of explanation maps on tiny synthetic arrays."""

from __future__ import annotations

import numpy as np
import pytest

from MedXAILib.errors import InputError
from MedXAILib.metrics import localisation as loc
from MedXAILib.metrics.complexity import complexity_entropy, sparseness_gini
from MedXAILib.metrics.similarity import random_pair_baseline, spearman, ssim


def region_and_map() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((4, 10, 10), bool)
    ref[1:3, 2:5, 2:5] = True  # 18 voxels
    heat = np.zeros(ref.shape)
    heat[ref] = 1.0
    return heat, ref


# ---- pointing game ----------------------------------------------------------------------------------------------
def test_pointing_game_hit_and_miss() -> None:
    heat, ref = region_and_map()
    heat[2, 3, 3] = 5.0
    assert loc.pointing_game(heat, ref) == 1.0
    heat[0, 9, 9] = 9.0
    assert loc.pointing_game(heat, ref) == 0.0


def test_pointing_game_ties_score_the_share_inside() -> None:
    heat, ref = region_and_map()
    assert loc.pointing_game(np.ones(ref.shape), ref) == pytest.approx(18 / 400)
    heat[0, 9, 9] = 1.0  # a 19th tied maximum, outside
    assert loc.pointing_game(heat, ref) == pytest.approx(18 / 19)


def test_pointing_game_tolerance_is_physical_and_anisotropic() -> None:
    heat, ref = region_and_map()
    heat[:] = 0
    heat[1, 2, 7] = 1.0  # 3 columns right of the region's edge (column 4)
    assert loc.pointing_game(heat, ref, tolerance_mm=2.9, spacing_kji=(1, 1, 1)) == 0.0
    assert loc.pointing_game(heat, ref, tolerance_mm=3.0, spacing_kji=(1, 1, 1)) == 1.0
    assert loc.pointing_game(heat, ref, tolerance_mm=3.0, spacing_kji=(1, 1, 2)) == 0.0  # 6 mm away now
    heat[:] = 0
    heat[3, 3, 3] = 1.0  # one slice above the region
    assert loc.pointing_game(heat, ref, tolerance_mm=3.0, spacing_kji=(5, 1, 1)) == 0.0
    assert loc.pointing_game(heat, ref, tolerance_mm=5.0, spacing_kji=(5, 1, 1)) == 1.0


# ---- relevance mass / rank, top-k ---------------------------------------------------------------------------------
def test_relevance_mass_counts_positive_relevance_only() -> None:
    heat, ref = region_and_map()
    heat[0, 0, 0] = 6.0  # 18 inside, 6 outside
    heat[0, 0, 1] = -100.0  # negative relevance is ignored
    assert loc.relevance_mass(heat, ref) == pytest.approx(18 / 24)
    assert loc.relevance_mass(-np.ones(ref.shape), ref) is None


def test_relevance_rank_and_topk() -> None:
    heat, ref = region_and_map()
    assert loc.relevance_rank(heat, ref) == 1.0
    heat[0, 0, :9] = 2.0  # 9 outside voxels outrank the region: 9 of the top 18 inside
    assert loc.relevance_rank(heat, ref) == pytest.approx(0.5)
    # top 18/400 = 4.5 %: the same 18 voxels → Dice 0.5, IoU 9 / 27
    top = loc.topk_overlap(heat, ref, percent=4.5)
    assert top["dice"] == pytest.approx(0.5) and top["iou"] == pytest.approx(1 / 3)


def test_ties_at_the_cut_are_shared() -> None:
    _, ref = region_and_map()
    flat = np.ones(ref.shape)
    assert loc.relevance_rank(flat, ref) == pytest.approx(18 / 400)  # chance level
    assert loc.topk_overlap(flat, ref, 100)["dice"] == pytest.approx(2 * 18 / (400 + 18))


def test_localisation_input_checks() -> None:
    heat, ref = region_and_map()
    with pytest.raises(InputError, match="empty"):
        loc.pointing_game(heat, np.zeros_like(ref))
    with pytest.raises(InputError, match="differs"):
        loc.relevance_rank(heat[:, :5], ref)
    heat[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        loc.relevance_mass(heat, ref)
    with pytest.raises(InputError, match="top-k"):
        loc.topk_overlap(np.ones(ref.shape), ref, 0)


def test_2d_maps_accepted() -> None:
    ref = np.zeros((8, 8), bool)
    ref[2:4, 2:4] = True
    heat = ref * 1.0
    assert loc.pointing_game(heat, ref) == 1.0 and loc.relevance_rank(heat, ref) == 1.0


# ---- ChestX-ray14 boxes -----------------------------------------------------------------------------------------
def test_box_from_map_takes_the_largest_component() -> None:
    heat = np.zeros((1, 20, 30))
    heat[0, 5:10, 8:20] = 1.0  # rows 5-9, columns 8-19: x=8, y=5, w=12, h=5
    heat[0, 15:17, 1:3] = 0.9  # a smaller blob
    assert loc.box_from_map(heat, 0.5) == (8.0, 5.0, 12.0, 5.0)
    assert loc.box_from_map(np.ones((20, 30))) is None
    with pytest.raises(InputError, match="2D"):
        loc.box_from_map(np.ones((2, 4, 4)))


def test_box_overlap_iobb_and_iou() -> None:
    out = loc.box_overlap((0, 0, 10, 10), (5, 0, 10, 10))  # half the detected box, 50 / 150 union
    assert out == {"iobb": pytest.approx(0.5), "iou": pytest.approx(1 / 3)}
    assert loc.box_overlap((0, 0, 4, 4), (0, 0, 10, 10))["iobb"] == 1.0  # IoBB rewards a box inside
    assert loc.box_overlap((0, 0, 2, 2), (5, 5, 1, 1)) == {"iobb": 0.0, "iou": 0.0}


def test_box_localisation_and_accuracy() -> None:
    heat = np.zeros((64, 64))
    heat[10:30, 20:40] = 1.0
    hit = loc.box_localisation(heat, (20, 10, 20, 20))
    assert hit["iobb"] == 1.0 and hit["iou"] == 1.0 and hit["box"] == [20.0, 10.0, 20.0, 20.0]
    assert loc.box_localisation(np.zeros((8, 8)), (0, 0, 2, 2))["iobb"] == 0.0
    acc = loc.box_accuracy([0.05, 0.3, 0.6, 1.0])
    assert acc == {"T=0.1": 0.75, "T=0.25": 0.75, "T=0.5": 0.5, "T=0.75": 0.25, "T=0.9": 0.25}
    assert loc.scale_box((512, 256, 100, 50), (1024, 1024), (224, 224)) == pytest.approx((112, 56, 21.875, 10.9375))


# ---- complexity -------------------------------------------------------------------------------------------------
def test_gini_extremes_and_sign() -> None:
    assert sparseness_gini(np.ones((3, 4, 5))) == pytest.approx(0.0)
    one_hot = np.zeros(10)
    one_hot[3] = -2.0  # absolute values
    assert sparseness_gini(one_hot) == pytest.approx(0.9)  # 1 - 1/n
    assert sparseness_gini(np.zeros(4)) == 0.0
    assert 0 < sparseness_gini(np.arange(10.0)) < 0.9


def test_gini_matches_the_mean_difference_formula() -> None:
    a = np.random.default_rng(0).random(50)
    mean_abs_diff = np.abs(a[:, None] - a[None, :]).mean()
    assert sparseness_gini(a) == pytest.approx(mean_abs_diff / (2 * a.mean()))


def test_entropy() -> None:
    assert complexity_entropy(np.ones(8)) == pytest.approx(np.log(8))
    assert complexity_entropy(np.eye(3)[0]) == pytest.approx(0.0)


# ---- similarity -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 40, 44), (12, 20, 24)])
def test_ssim_agrees_with_scikit_image(shape: tuple[int, int, int]) -> None:
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(5)
    a = rng.random(shape)
    b = a + 0.5 * rng.random(shape)
    an, bn = ((v - v.min()) / (v.max() - v.min()) for v in (a, b))
    squeeze = shape[0] == 1
    expected = skm.structural_similarity(
        an[0] if squeeze else an,
        bn[0] if squeeze else bn,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_ssim_identity_scale_and_physical_window() -> None:
    a = np.random.default_rng(1).random((6, 16, 16))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 10 * a + 3) == pytest.approx(1.0)  # normalised to [0, 1] first
    assert ssim(a, 1 - a) < 0
    assert ssim(a, a, sigma_mm=3.0, spacing_kji=(4.0, 1.0, 1.0)) == pytest.approx(1.0)


def test_spearman() -> None:
    a = np.arange(24.0).reshape(2, 3, 4)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.ones_like(a)) is None


def test_random_pair_baseline() -> None:
    rng = np.random.default_rng(2)
    maps = [rng.random((1, 16, 16)) for _ in range(5)]
    out = random_pair_baseline(maps, n_pairs=20)
    assert out["n_pairs"] == 20 and -1 <= out["mean"] < 0.5
    assert random_pair_baseline(maps, n_pairs=20) == out  # seeded
    with pytest.raises(InputError):
        random_pair_baseline(maps[:1])


def test_chestxray14_boxes_on_real_images(test_data_dir) -> None:
    """Real ChestX-ray14 boxes (1024² pixel coordinates) scaled to a 224² map: a map centred on each box hits it."""
    import csv

    from MedXAILib.io import read_image

    folder = test_data_dir / "nih-chestxray14"
    if not (folder / "bboxes.csv").exists():
        pytest.skip("nih-chestxray14/bboxes.csv not in the test data")
    with (folder / "bboxes.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if (folder / "images" / r["Image Index"]).exists()]
    if not rows:
        pytest.skip("no ChestX-ray14 image with a box in the test data")
    jj, ii = np.mgrid[0:224, 0:224] + 0.5
    good, bad = [], []
    for row in rows[:4]:
        image = read_image(folder / "images" / row["Image Index"])
        box = loc.scale_box([float(row[k]) for k in "xywh"], image.shape[1:], (224, 224))
        x, y, w, h = box
        centred = np.exp(-(((ii - x - w / 2) / (w / 4)) ** 2 + ((jj - y - h / 2) / (h / 4)) ** 2) / 2)
        good.append(loc.box_localisation(centred, box)["iobb"])
        cy, cx = (8 if y + h / 2 > 112 else 216), (8 if x + w / 2 > 112 else 216)  # the farthest corner
        corner = np.exp(-(((ii - cx) / 5) ** 2 + ((jj - cy) / 5) ** 2) / 2)
        bad.append(loc.box_localisation(corner, box)["iobb"])
    assert min(good) > 0.9
    assert loc.box_accuracy(good)["T=0.75"] == 1.0
    assert loc.box_accuracy(bad)["T=0.1"] == 0.0
