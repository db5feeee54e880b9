"""Every selectable convention against a hand computation or its anchor's formula (docs/conventions.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist
from test_explain_occlusion import classifier, context, unet, volume

from MedXAILib.cli import main
from MedXAILib.conventions import CONVENTIONS, defaults, markdown_table
from MedXAILib.io import write_volume
from MedXAILib.metrics.localisation import box_localisation, boxes_from_map, relevance_mass
from MedXAILib.metrics.segmentation import BRATS_EMPTY_HD95_MM, hd95_mm, mask_metrics
from MedXAILib.models import Model, ModelDescription
from MedXAILib.volume import Volume, make_ijk_to_ras

ROOT = Path(__file__).resolve().parents[1]


# ---- the table ------------------------------------------------------------------------------------------------------
def test_methods_json_and_docs_state_every_convention_and_default(capsys) -> None:
    assert main(["methods", "--json"]) == 0
    listed = {c["name"]: c for c in json.loads(capsys.readouterr().out)["conventions"]}
    assert {n: c["default"] for n, c in listed.items()} == defaults()
    assert all(c["default"] in c["choices"] for c in listed.values())
    assert markdown_table() in (ROOT / "docs" / "conventions.md").read_text()
    assert "docs/conventions.md" in (ROOT / "README.md").read_text()
    assert len(CONVENTIONS) >= 10


# ---- HD95 -----------------------------------------------------------------------------------------------------------
def _directed_by_brute_force(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float, float]):
    """Boundary voxels (erosion with face connectivity, as panoptica) and all-pairs distances in mm."""
    def border(m: np.ndarray) -> np.ndarray:
        return np.argwhere(m & ~ndimage.binary_erosion(m, border_value=0)) * np.asarray(spacing)

    d = cdist(border(a), border(b))
    return d.min(1), d.min(0)


def masks() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    a = ndimage.binary_dilation(rng.random((9, 14, 15)) > 0.97, iterations=2)
    b = np.zeros_like(a)
    b[2:7, 3:11, 4:12] = True
    return a, b


def test_hd95_brats_is_the_pooled_percentile_and_monai_the_larger_directed_one() -> None:
    a, b = masks()
    spacing = (2.5, 0.8, 1.1)
    d_ab, d_ba = _directed_by_brute_force(a, b, spacing)
    pooled = np.percentile(np.concatenate([d_ab, d_ba]), 95)
    larger = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    assert abs(pooled - larger) > 0.1  # the two conventions differ on this pair
    assert hd95_mm(a, b, spacing, convention="brats") == pytest.approx(pooled)
    assert hd95_mm(a, b, spacing, convention="monai") == pytest.approx(larger)


def test_brats_hd95_is_bounded_by_the_next_order_statistic_not_by_monais() -> None:
    """What docs/conventions.md states about the two HD95 conventions, on 150 small random anisotropic pairs
    (distances by brute force): the pooled 95th percentile (brats) never exceeds the larger directed 95th percentile
    taken at the next order statistic (numpy ``method="higher"``), it can exceed MONAI's interpolated value, and
    it can fall below it."""
    differences = []
    for seed in range(150):
        rng = np.random.default_rng(seed)
        shape = tuple(int(v) for v in rng.integers(4, 10, size=3))
        a, b = (rng.random(shape) > rng.uniform(0.6, 0.95) for _ in range(2))
        if not a.any() or not b.any():
            continue
        spacing = tuple(float(v) for v in rng.uniform(0.5, 5.0, size=3))
        d_ab, d_ba = _directed_by_brute_force(a, b, spacing)
        brats, monai = hd95_mm(a, b, spacing, convention="brats"), hd95_mm(a, b, spacing, convention="monai")
        assert brats == pytest.approx(np.percentile(np.concatenate([d_ab, d_ba]), 95))
        assert monai == pytest.approx(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
        bound = max(np.percentile(d_ab, 95, method="higher"), np.percentile(d_ba, 95, method="higher"))
        assert brats <= bound + 1e-9
        differences.append(brats - monai)
    assert max(differences) > 0 and min(differences) < 0


def test_hd95_empty_masks_follow_the_chosen_convention() -> None:
    a, _ = masks()
    z = np.zeros_like(a)
    assert hd95_mm(a, z, convention="brats") == BRATS_EMPTY_HD95_MM == 373.0
    assert np.isnan(hd95_mm(z, z, convention="brats"))
    assert hd95_mm(a, z, convention="monai") is None and hd95_mm(z, z, convention="monai") == 0.0
    both = mask_metrics(z, z, (1, 1, 1), 0.001, "brats")
    assert both["hd95_mm"] is None and "NaN" in both["note"]


def test_evaluate_hd95_brats_equals_the_pooled_percentile(tmp_path) -> None:
    a, b = masks()
    spacing_ijk = (1.1, 0.8, 2.5)
    m = make_ijk_to_ras(spacing_ijk)
    write_volume(Volume(a[None].astype(np.int16), m), tmp_path / "pred.nrrd")
    write_volume(Volume(b[None].astype(np.int16), m), tmp_path / "ref.nrrd")
    d_ab, d_ba = _directed_by_brute_force(a, b, spacing_ijk[::-1])
    out = {}
    for conv in ("monai", "brats"):
        path = tmp_path / f"{conv}.json"
        assert main(["evaluate", "--prediction", str(tmp_path / "pred.nrrd"), "--reference", str(tmp_path / "ref.nrrd"),
                     "--output", str(path), "--hd95", conv, "--progress", "none"]) == 0
        out[conv] = json.loads(path.read_text())
    assert out["brats"]["labels"]["1"]["hd95_mm"] == pytest.approx(np.percentile(np.concatenate([d_ab, d_ba]), 95))
    assert out["monai"]["labels"]["1"]["hd95_mm"] == pytest.approx(
        max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
    assert out["brats"]["conventions"] == {"hd95": "brats"}


# ---- relevance mass -----------------------------------------------------------------------------------------------
def test_relevance_mass_conventions_match_their_formulas() -> None:
    h = np.array([[[3.0, -1.0, 2.0, -4.0, 0.5]]])
    r = np.array([[[True, True, False, False, False]]])
    assert relevance_mass(h, r) == pytest.approx(3.0 / 5.5)  # positive part only (default)
    # Quantus RelevanceMassAccuracy: sum(a[s]) / sum(a) on the raw values (its max-normalisation cancels)
    a = h / np.abs(h).max()
    assert relevance_mass(h, r, "signed") == pytest.approx(a[r].sum() / a.sum())
    assert relevance_mass(h, r, "absolute") == pytest.approx(4.0 / 10.5)  # CLEVR-XAI: |h|
    assert relevance_mass(h, r, "signed") > 1  # signed mass can leave [0, 1]
    assert relevance_mass(-np.abs(h), r) is None  # zero denominator: undefined


# ---- stability ------------------------------------------------------------------------------------------------------
def test_stability_skips_intensity_scaling_for_a_z_scoring_model_and_says_so() -> None:
    from MedXAILib.quality.evaluation import evaluate_explanation
    from MedXAILib.quality.stability import scale_invariance

    model = unet()
    model.description.preprocessing = {"normalize": "zscore_foreground"}
    vol = volume((16, 16, 16), 2, seed=3)
    reason = scale_invariance(model)
    assert reason and "zscore_foreground" in reason
    from MedXAILib.explain import explain

    e = explain(model, vol, "gradcam", label="core")
    auto = evaluate_explanation(model, vol, e, metrics="stability")
    kinds = [r["kind"] for r in auto["stability_perturbations"]]
    assert "intensity_scale" not in kinds and len(kinds) == 4
    assert auto["stability_skipped"] == {"intensity_scale": reason}
    kept = evaluate_explanation(model, vol, e, metrics="stability", stability_options={"scaling": "always"})
    scaled = [r for r in kept["stability_perturbations"] if r["kind"] == "intensity_scale"]
    assert len(scaled) == 2 and all(r["ssim"] > 0.99999 for r in scaled)  # the invariance the skip relies on
    assert len(kept["stability_perturbations"]) == 6  # 2 noise levels, 2 rotations, 2 scalings
    assert kept["stability_skipped"] == {}
    hu = Model(model.network, ModelDescription(
        name="ct", task="segmentation", spatial_dims=3, channel_names=["ct"], class_names=["bg", "x"],
        preprocessing={"normalize": "hu_window", "hu_window": [-100, 200]}))
    assert scale_invariance(hu) is None


def test_demo_model_is_recognised_as_scale_invariant() -> None:
    from MedXAILib.models import builtin_model_names, load_model
    from MedXAILib.quality.stability import scale_invariance

    if "demo-brain-tumour" not in builtin_model_names():
        pytest.skip("demo model not built")
    assert scale_invariance(load_model("demo-brain-tumour")) is not None


def test_max_sensitivity_quantus_and_yeh_normalisations_by_hand() -> None:
    """Quantus' MaxSensitivity divides the change of the max-normalised map by the input's norm; Yeh et al.'s has
    no denominator and raw maps. Both are recomputed here from the perturbed inputs the explainer received."""
    from MedXAILib.quality.stability import sampled_max_sensitivity, stability

    rng = np.random.default_rng(0)
    arr = rng.normal(2.0, 1.0, size=(2, 3, 5, 6)).astype(np.float32)
    arr[:, 0, 0, :] = 0.0  # a background row outside the object
    vol = Volume(arr, make_ijk_to_ras((1.0, 1.0, 2.0)))
    seen: list[np.ndarray] = []

    def explain_fn(v: Volume) -> np.ndarray:
        seen.append(v.array.astype(np.float64))
        return v.array[0].astype(np.float64) ** 2 - 1.0 + 0.5 * v.array[1]

    base = explain_fn(vol)
    seen.clear()
    got = sampled_max_sensitivity(vol, explain_fn, base, n_samples=7, radius=0.2, seed=5)
    x = arr.astype(np.float64)
    obj = np.any(x != 0, axis=0)
    quantus, yeh = [], []
    for xn in seen:
        u = xn - x
        assert not u[:, ~obj].any()  # noise inside the object only
        for c in range(2):  # uniform in [-r·σ_c, r·σ_c] (float32 rounding aside)
            assert np.abs(u[c][obj]).max() <= 0.2 * x[c][obj].std() + 1e-5
        phi = xn[0] ** 2 - 1.0 + 0.5 * xn[1]
        yeh.append(np.sqrt(((phi - base) ** 2).sum()))
        diff = phi / np.abs(phi).max() - base / np.abs(base).max()
        quantus.append(np.sqrt((diff**2).sum()) / np.sqrt((x**2).sum()))
    assert len(seen) == 7 and got["samples"] == 7 and got["radius"] == 0.2
    assert got["max_sensitivity_yeh"] == pytest.approx(max(yeh), rel=1e-9)
    assert got["max_sensitivity_quantus"] == pytest.approx(max(quantus), rel=1e-9)
    assert got["mean_sensitivity_quantus"] == pytest.approx(np.mean(quantus), rel=1e-9)
    assert got["input_norm"] == pytest.approx(np.sqrt((x**2).sum()))
    for convention in ("quantus", "yeh"):
        out = stability(vol, explain_fn, base, rotations_deg=(), scales=(), sensitivity=convention, samples=3)
        assert out["max_sensitivity"] == out[f"max_sensitivity_{convention}"]
        assert out["max_sensitivity_convention"] == convention and out["max_sensitivity_fixed"] is not None
    seen.clear()
    fixed = stability(vol, explain_fn, base, rotations_deg=(), scales=())  # relative to the map's norm
    rel = [np.linalg.norm(xn[0] ** 2 - 1.0 + 0.5 * xn[1] - base) / np.linalg.norm(base) for xn in seen]
    assert len(rel) == 2 and fixed["max_sensitivity"] == pytest.approx(max(rel), rel=1e-9)


# ---- deletion / insertion --------------------------------------------------------------------------------------------
def test_rise_curves_are_unnormalised_with_zero_and_blur_baselines() -> None:
    from MedXAILib.quality.faithfulness import deletion_insertion, make_baseline
    from MedXAILib.targets import Target

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 1))
    with torch.no_grad():
        net[1].bias.fill_(0.5)
    model = Model(net, ModelDescription(name="lin", task="classification", spatial_dims=2, channel_names=["x"],
                                        class_names=["a"], output="sigmoid", preprocessing={"normalize": "none"}))
    vol = Volume(np.random.default_rng(2).random((1, 1, 6, 6)).astype(np.float32), make_ijk_to_ras((1.0, 1.0, 1.0)))
    heat = np.arange(36, dtype=np.float64).reshape(1, 6, 6)[:, ::-1]  # distinct values: a known order
    out = deletion_insertion(model, vol, heat, Target("class", 0, "a"), steps=3, baseline="rise", curve="rise",
                             score="logit", random_control=False)
    x = vol.array[0, 0].astype(np.float64)
    w = net[1].weight.detach().numpy().reshape(6, 6).astype(np.float64)
    blur = make_baseline(torch.from_numpy(x[None, None].astype(np.float32)), "blur", np.array([1.0, 1.0]), 8.0)
    blur = blur.numpy()[0, 0].astype(np.float64)

    def f(img: np.ndarray) -> float:
        return float((w * img).sum() + 0.5)

    order = np.argsort(-heat[0].ravel())
    for s, count in enumerate([0, 12, 24, 36]):
        deleted = np.zeros(36, bool)
        deleted[order[:count]] = True
        deleted = deleted.reshape(6, 6)
        assert out["deletion_curve"][s] == pytest.approx(f(np.where(deleted, 0.0, x)), abs=1e-4)
        assert out["insertion_curve"][s] == pytest.approx(f(np.where(deleted, x, blur)), abs=1e-4)
    assert out["faithfulness_settings"]["curve"] == "rise" and out["score_baseline_insertion"] != out["score_baseline"]
    normal = deletion_insertion(model, vol, heat, Target("class", 0, "a"), steps=3, score="logit",
                                random_control=False)
    assert normal["deletion_curve"][0] == pytest.approx(1.0)  # normalised by f(x)
    # one baseline for both curves, the input blurred with σ = 8 mm
    assert normal["faithfulness_settings"]["baseline"] == "blur"
    assert normal["faithfulness_settings"]["blur_sigma_mm"] == 8.0 and "score_baseline_insertion" not in normal
    assert normal["deletion_curve"][-1] == pytest.approx(f(blur) / f(x), abs=1e-4)
    assert normal["insertion_curve"][0] == pytest.approx(f(blur) / f(x), abs=1e-4)


# ---- Score-CAM -----------------------------------------------------------------------------------------------------
def test_scorecam_probability_weighting_is_the_masked_class_probability() -> None:
    from MedXAILib.explain.base import get_method
    from MedXAILib.explain.cam import upsample_to_grid
    from MedXAILib.explain.scorecam import capture_activations, scorecam_reference

    model = classifier(2)
    ctx = context(model, volume((1, 20, 20), 2, seed=1), label="c")
    m = get_method("scorecam")
    with torch.no_grad():
        fast = m.run(ctx, {**m.params, "weighting": "probability", "batch_size": 3})
        acts = capture_activations(ctx, None)
        probs = []
        for k in range(acts.shape[1]):
            up = upsample_to_grid(acts[0, k:k + 1], model, (20, 20))[0]
            h = (up - up.min()) / (up.max() - up.min())
            probs.append(float(torch.softmax(model.network(ctx.x * h), dim=1)[0, 2]))
    p = np.asarray(probs)
    weights = np.array([fast.details["weights"][k] for k in range(len(p))])
    np.testing.assert_allclose(weights, p / p.sum(), atol=1e-6)
    with torch.no_grad():  # softmax (pytorch-grad-cam): a softmax over channels of the masked target logit
        soft = m.run(ctx, {**m.params, "weighting": "softmax", "batch_size": 3})
        logits = []
        for k in range(acts.shape[1]):
            up = upsample_to_grid(acts[0, k:k + 1], model, (20, 20))[0]
            logits.append(float(model.network(ctx.x * (up - up.min()) / (up.max() - up.min()))[0, 2]))
    np.testing.assert_allclose([soft.details["weights"][k] for k in range(len(logits))],
                               torch.softmax(torch.tensor(logits, dtype=torch.float64), 0).numpy(), atol=1e-6)
    ref, _ = scorecam_reference(ctx, weighting="probability")
    assert float((fast.maps - ref).abs().max() / ref.abs().max()) < 1e-5
    assert fast.details["weighting"] == "probability"


# ---- LRP bias --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_lrp_zplus_and_gamma_with_and_without_bias_by_hand(bias: bool) -> None:
    from MedXAILib.explain.lrp import lrp_relevance

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)).double()
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64))
        net[2].bias.fill_(0.4)
    x = torch.tensor([[0.7, -1.2, 0.4, 2.0, -0.3]], dtype=torch.float64)
    gamma = 0.25
    rel, _ = lrp_relevance(net, x, lambda lg: lg[:, 0], composite="first=zplus,conv=gamma,linear=gamma",
                           epsilon=1e-12, gamma=gamma, bias=bias)
    w1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    w2, b2 = net[2].weight.detach().numpy()[0], float(net[2].bias.detach())
    xv = x.numpy()[0]
    h = np.maximum(w1 @ xv + b1, 0)
    y = float(w2 @ h + b2)
    # second layer, γ rule on non-negative inputs: z = Σ h (w + γ w⁺) (z ≥ 0 here), bias b + γ b⁺ when kept
    contrib2 = h * (w2 + gamma * np.clip(w2, 0, None))
    z2 = contrib2.sum()
    assert z2 > 0
    r_h = contrib2 / (z2 + (b2 + gamma * max(b2, 0) if bias else 0.0)) * y
    # first layer, z⁺ on signed inputs: x⁺ W⁺ + x⁻ W⁻, bias b⁺ when kept
    contrib1 = np.clip(xv, 0, None)[None] * np.clip(w1, 0, None) + np.clip(xv, None, 0)[None] * np.clip(w1, None, 0)
    z1 = contrib1.sum(1) + (np.clip(b1, 0, None) if bias else 0.0)
    r_x = (contrib1 / z1[:, None] * r_h[:, None]).sum(0)
    np.testing.assert_allclose(rel.numpy()[0], r_x, rtol=1e-8, atol=1e-10)


# ---- ChestX-ray14 boxes -----------------------------------------------------------------------------------------
def test_box_per_connected_region() -> None:
    heat = np.zeros((1, 20, 20))
    heat[0, 2:7, 2:9] = 1.0  # large region: x 2..9, y 2..7
    heat[0, 12:15, 12:16] = 0.9  # small region
    assert boxes_from_map(heat) == [(2.0, 2.0, 7.0, 5.0), (12.0, 12.0, 4.0, 3.0)]
    reference = (12.0, 12.0, 4.0, 3.0)
    assert box_localisation(heat, reference)["iobb"] == 0.0  # largest region only (default)
    each = box_localisation(heat, reference, box_mode="each")
    assert each["iobb"] == 1.0 and each["box"] == [12.0, 12.0, 4.0, 3.0] and len(each["boxes"]) == 2
    corner = np.zeros((1, 6, 6))
    corner[0, 0:2, 0:2] = corner[0, 2:4, 2:4] = 1.0  # touching at a corner: one 8-connected region
    assert boxes_from_map(corner) == [(0.0, 0.0, 4.0, 4.0)]
    signed = np.zeros((1, 6, 6))
    signed[0, 1, 1], signed[0, 4, 4] = 1.0, -3.0  # zero maps to 3 / 4 ≥ 0.5: the whole map but one pixel passes
    assert boxes_from_map(signed) == [(0.0, 0.0, 6.0, 6.0)]


# ---- map resampling ----------------------------------------------------------------------------------------------
def test_map_resampling_sum_keeps_the_model_grid_sum() -> None:
    from MedXAILib.explain import explain

    model = unet(target_spacing=[2.0, 2.0, 2.0])
    vol = volume((16, 16, 16), 2, seed=1)  # 1 mm input, 2 mm model grid: 8× the voxels
    plain = explain(model, vol, "saliency", label="core")
    rec = plain.details["map_resampling"]
    assert rec["mode"] == "interpolate" and rec["sum_ratio_model_to_input_voxels"] == pytest.approx(1 / 8)
    assert rec["sum_input_grid"] / rec["sum_model_grid"] == pytest.approx(8.0, rel=0.05)
    kept = explain(model, vol, "saliency", label="core", map_resampling="sum")
    rec = kept.details["map_resampling"]
    assert float(kept.heatmap.array.astype(np.float64).sum()) == pytest.approx(rec["sum_model_grid"], rel=0.05)
    np.testing.assert_allclose(kept.heatmap.array * 8.0, plain.heatmap.array, rtol=1e-5, atol=1e-9)


def test_evaluate_heatmap_flags_choose_and_state_the_conventions(tmp_path) -> None:
    m = make_ijk_to_ras((1.0, 1.0, 1.0))
    heat = np.zeros((1, 1, 20, 20), np.float32)
    heat[0, 0, 2:7, 2:9] = 1.0
    heat[0, 0, 12:15, 12:16] = 0.9
    heat[0, 0, 0, 0] = -0.1  # signed: counts in the signed mass, small enough to keep the 0.5 cut above zero
    ref = np.zeros((1, 1, 20, 20), np.int16)
    ref[0, 0, 12:15, 12:16] = 1
    write_volume(Volume(heat, m), tmp_path / "h.nrrd")
    write_volume(Volume(ref, m), tmp_path / "r.nrrd")
    out = tmp_path / "e.json"
    assert main(["evaluate", "--heatmap", str(tmp_path / "h.nrrd"), "--reference", str(tmp_path / "r.nrrd"),
                 "--box", "12,12,4,3", "--box-mode", "each", "--relevance-mass", "signed", "--output", str(out),
                 "--progress", "none"]) == 0
    got = json.loads(out.read_text())
    h, r = heat[0], ref[0] > 0
    assert got["relevance_mass"] == pytest.approx(h[r].sum() / h.sum())
    assert got["box_iobb"] == 1.0 and len(got["box_all_regions"]) == 2
    assert got["conventions"] == {"relevance_mass": "signed", "chestxray_box": "each (threshold 0.5)"}
