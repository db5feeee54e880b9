"""compare / triangulation: agreement measures against scipy, scikit-image and hand computations; the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from test_explain_occlusion import classifier, volume

from MedXAILib.cli import main
from MedXAILib.compare import compare, parse_methods
from MedXAILib.errors import InputError
from MedXAILib.metrics.agreement import agreement, consensus, normalised_ranks, topk_iou


def hand_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two 2D maps (K = 1) made by hand: a blob and a shifted, noisier blob."""
    j, i = np.mgrid[0:32, 0:40]
    a = np.exp(-((j - 12) ** 2 + (i - 15) ** 2) / 40.0) + 1e-6 * np.arange(j.size).reshape(j.shape)  # no ties
    b = np.exp(-((j - 15) ** 2 + (i - 19) ** 2) / 60.0) + 0.05 * np.random.default_rng(3).random((32, 40))
    return a[None], b[None]


def test_a_method_against_itself_gives_rho_one() -> None:
    a, b = hand_pair()
    report, _, per_voxel = agreement({"m": a, "same": a.copy(), "other": b}, values="signed")
    assert report["spearman"][0][1] == pytest.approx(1.0)
    assert report["ssim"][0][1] == pytest.approx(1.0)
    assert report["topk_iou"][0][1] == pytest.approx(1.0)
    assert all(report["spearman"][k][k] == pytest.approx(1.0) for k in range(3))
    assert report["spearman"][0][2] == report["spearman"][2][0]  # symmetric


def test_pair_matches_scipy_and_skimage() -> None:
    a, b = hand_pair()
    report, _, _ = agreement({"a": a, "b": b}, values="signed")
    rho = spearmanr(a.ravel(), b.ravel()).statistic
    assert report["spearman"][0][1] == pytest.approx(rho, abs=1e-12)
    na = (a[0] - a.min()) / (a.max() - a.min())
    nb = (b[0] - b.min()) / (b.max() - b.min())
    ref = structural_similarity(na, nb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert report["ssim"][0][1] == pytest.approx(ref, abs=1e-6)
    # top-5 % IoU by hand: 64 of 1280 pixels each, no ties
    n = 64
    top_a = set(np.argsort(-a.ravel())[:n].tolist())
    top_b = set(np.argsort(-b.ravel())[:n].tolist())
    assert report["topk_iou"][0][1] == pytest.approx(len(top_a & top_b) / len(top_a | top_b))


def test_display_values_and_ties() -> None:
    signed = np.array([[[-3.0, 2.0, 1.0, 0.0]]])
    report, _, _ = agreement({"cam": signed, "ig": signed}, {"cam": "positive", "ig": "signed"}, topk_percent=25)
    # cam compares max(h, 0) = [0, 2, 1, 0]; ig compares |h| = [3, 2, 1, 0]: top-1 voxel differs
    assert report["topk_iou"][0][1] == 0.0
    assert report["spearman"][0][1] == pytest.approx(spearmanr([0, 2, 1, 0], [3, 2, 1, 0]).statistic)
    # two voxels tied at the cut share the one place: memberships [.5, .5, 0, 0] vs [1, 0, 0, 0]
    assert topk_iou(np.array([[[1.0, 1.0, 0, 0]]]), np.array([[[1.0, 0, 0, 0]]]), 25) == pytest.approx(0.5 / 1.5)


def test_consensus_by_hand() -> None:
    a = np.array([[[0.0, 1.0, 2.0]]])
    b = np.array([[[2.0, 1.0, 0.0]]])
    assert normalised_ranks(a).ravel().tolist() == [0.0, 0.5, 1.0]
    cons, agree = consensus([a, b])
    assert cons.ravel().tolist() == [0.5, 0.5, 0.5]
    assert agree.ravel().tolist() == pytest.approx([0.0, 1.0, 0.0])  # opposite ends → 0; same rank → 1
    c = np.array([[[0.0, 2.0, 1.0]]])
    report, _, _ = agreement({"a": a, "b": b, "c": c}, values="signed")
    others = (normalised_ranks(b) + normalised_ranks(c)).ravel() / 2  # [0.5, 0.75, 0.25]
    assert report["consensus"]["spearman_leave_one_out"][0] == pytest.approx(spearmanr(a.ravel(), others).statistic)


def test_refusals() -> None:
    with pytest.raises(InputError, match="at least two"):
        parse_methods("gradcam")
    with pytest.raises(InputError, match="twice"):
        parse_methods("gradcam,ig,gradcam")
    with pytest.raises(InputError, match="one grid"):
        agreement({"a": np.zeros((1, 3, 3)), "b": np.zeros((1, 3, 4))})


def test_compare_explains_one_target_with_every_method() -> None:
    model = classifier(2, channels=1)
    vol = volume((1, 24, 24), 1, seed=2)
    result = compare(model, vol, ["gradcam", "saliency", "occlusion"], label="b",
                     params={"occlusion": {"window_mm": 6}})
    assert result.report["methods"] == ["gradcam", "saliency", "occlusion"]
    assert {e.target.class_index for e in result.explanations.values()} == {1}
    assert result.consensus.shape == vol.shape and np.allclose(result.consensus.ijk_to_ras, vol.ijk_to_ras)
    assert len(result.report["consensus"]["spearman"]) == 3
    with pytest.raises(InputError, match="not among"):
        compare(model, vol, ["gradcam", "saliency"], params={"ig": {}})


def test_compare_command_writes_the_folder(tmp_path) -> None:
    from helpers import save_model, tiny_classifier

    from MedXAILib.io import read_image, write_volume

    model = tiny_classifier()
    folder = save_model(model, tmp_path / "model")
    img = tmp_path / "x.nrrd"
    write_volume(volume((1, 24, 24), 1, seed=4), img)
    out = tmp_path / "cmp"
    rc = main(["compare", "--model", str(folder), "--input", str(img), "--methods", "gradcam,saliency",
               "--target", "f1", "--output", str(out), "--progress", "none"])
    assert rc == 0
    report = json.loads((out / "agreement.json").read_text())
    assert report["methods"] == ["gradcam", "saliency"]
    assert report["spearman"][0][0] == pytest.approx(1.0) and report["conventions"]["map_resampling"] == "interpolate"
    for name in ("gradcam.nrrd", "saliency.nrrd", "consensus.nrrd", "consensus_agreement.nrrd", "agreement.png"):
        assert (out / name).is_file(), name
    assert read_image(out / "consensus.nrrd", grayscale_2d=False).shape == (1, 24, 24)
    assert main(["compare", "--model", str(folder), "--input", str(img), "--methods", "gradcam",
                 "--output", str(out), "--progress", "none"]) == 2


def test_mask_restricts_ranks_and_ssim_uses_its_bounding_box() -> None:
    a, b = hand_pair()
    mask = np.zeros(a.shape, bool)
    mask[0, 5:20, 8:30] = True
    report, cons, agree = agreement({"a": a, "b": b}, values="signed", mask=mask)
    assert report["spearman"][0][1] == pytest.approx(spearmanr(a[mask], b[mask]).statistic, abs=1e-12)
    na, nb = a[0, 5:20, 8:30], b[0, 5:20, 8:30]
    na, nb = (na - na.min()) / np.ptp(na), (nb - nb.min()) / np.ptp(nb)
    ref = structural_similarity(na, nb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert report["ssim"][0][1] == pytest.approx(ref, abs=1e-6)
    assert not cons[~mask].any() and not agree[~mask].any()
    assert report["settings"]["voxels_compared"] == int(mask.sum())


def test_object_mask_is_the_non_zero_input() -> None:
    from MedXAILib.compare import object_mask

    vol = volume((1, 6, 6), 2, seed=0)
    arr = vol.array.copy()
    arr[:, :, :2] = 0
    arr[0, 0, 0, 0] = 1.0  # one channel non-zero is enough
    m = object_mask(vol.with_array(arr))
    assert m.sum() == 6 * 4 + 1
    assert object_mask(vol.with_array(np.zeros_like(arr))).all()


def test_consensus_agreement_is_reported_with_its_chance_level() -> None:
    """Chance level: the agreement of independently ranked maps — 2/3 for two tie-free maps (E[1 − |U − V|] for
    independent uniforms), and what unrelated maps actually score; identical maps score 1, far above it."""
    rng = np.random.default_rng(5)
    a, b, c = (rng.random((1, 40, 50)) for _ in range(3))
    report, _, _ = agreement({"a": a, "b": b}, values="signed")
    chance = report["consensus_agreement_chance"]
    assert chance["mean"] == pytest.approx(2 / 3, abs=4 * chance["standard_error"] + 1e-3)
    assert report["consensus_agreement_mean"] == pytest.approx(chance["mean"], abs=0.02)
    assert abs(report["consensus_agreement_above_chance"]) < 0.02
    three, _, _ = agreement({"a": a, "b": b, "c": c}, values="signed")
    u = np.random.default_rng(11).random((3, 400_000))  # brute force: independent uniform ranks of three methods
    expected = np.clip(1 - 2 * u.std(0), 0, 1).mean()
    assert three["consensus_agreement_chance"]["mean"] == pytest.approx(expected, abs=0.005)
    same, _, _ = agreement({"a": a, "b": a.copy()}, values="signed")
    assert same["consensus_agreement_mean"] == pytest.approx(1.0)
    assert same["consensus_agreement_above_chance"] > 0.3


def test_ranks_by_counting_equal_scipys() -> None:
    """Half-precision values (as a benchmark store keeps maps) are ranked by counting; scipy's rankdata agrees,
    ties, signed zeros and infinities included; other values go through the sort."""
    from scipy.stats import rankdata

    from MedXAILib.metrics.similarity import average_ranks

    rng = np.random.default_rng(2)
    half = rng.normal(size=20_000).astype(np.float16).astype(np.float32)
    edge = np.array([0.0, -0.0, np.inf, -np.inf, 65504, -65504, 1e-7, 3.0, 3.0], np.float32)
    for values in (half, np.abs(half), edge.astype(np.float64), rng.normal(size=500)):
        np.testing.assert_array_equal(average_ranks(values), rankdata(values, method="average"))
