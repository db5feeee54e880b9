"""Counterfactual explanations (``counterfactual``, ``sedc``) on the demo models, and ``baseline=counterfactual``.

The chest tests use a 128 × 128 chest phantom (the demo classifier resizes it to 256², a few steps each); the brain
tests use a 24 × 32 × 32 brain phantom at 3 mm (model grid 36 × 48 × 48) and are marked slow (about 30 s each on one
core).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from MedXAILib.cli import main
from MedXAILib.errors import MethodError
from MedXAILib.explain import explain
from MedXAILib.io import read_image, write_volume
from MedXAILib.models import builtin_model_names, load_model
from MedXAILib.phantoms import make_brain_phantom, make_chest_phantom
from MedXAILib.preprocessing import foreground_of, intensity_affine, normalize

needs_demo = pytest.mark.skipif(
    not {"demo-brain-tumour", "demo-chest-xray"} <= set(builtin_model_names()), reason="demo models not built"
)
MODES = ("zscore_foreground", "zscore", "percentile", "hu_window", "minmax", "none")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _array() -> np.ndarray:
    rng = np.random.default_rng(0)
    a = (rng.normal(size=(2, 5, 6, 7)) * 3 + 1).astype(np.float32)
    a[:, :2] = 0
    return a


@pytest.mark.parametrize("mode", MODES)
def test_the_gradient_path_normalises_exactly_as_the_model(mode):
    from MedXAILib.explain.goals import torch_normalize

    a, spec = _array(), {"normalize": mode, "hu_window": [-2.0, 3.0]}
    ours = torch_normalize(torch.from_numpy(a)[None], spec, torch.from_numpy(foreground_of(a)))[0].numpy()
    np.testing.assert_allclose(ours, normalize(a, spec), atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_intensity_affine_is_the_normalisation_inside_its_window(mode):
    a, spec = _array(), {"normalize": mode, "hu_window": [-2.0, 3.0]}
    offset, scale = intensity_affine(a, spec)
    ref = normalize(a, spec)
    inside = foreground_of(a) if mode == "zscore_foreground" else np.ones(a.shape[1:], bool)
    for c in range(a.shape[0]):
        lin = (a[c] - offset[c]) / scale[c]
        ok = inside & (lin >= 0) & (lin <= 1) if mode in ("percentile", "hu_window", "minmax") else inside
        np.testing.assert_allclose(lin[ok], ref[c][ok], atol=1e-5)


@pytest.fixture(scope="module")
def chest():
    return load_model("demo-chest-xray"), make_chest_phantom(3, size=128)


@needs_demo
def test_chest_counterfactual_drops_the_top_class_below_its_threshold(chest):
    model, phantom = chest
    before = phantom.image.array.copy()
    e = explain(model, phantom.image, "counterfactual")
    v = e.details["validity"]
    assert v["before"]["probability"] > 0.5 and v["after"]["probability"] < 0.5 and v["reached"]
    assert np.array_equal(phantom.image.array, before), "the input must not be modified"
    cf = e.volumes["counterfactual"]
    assert cf.same_geometry(phantom.image) and cf.array.shape == before.shape
    assert cf.array.min() >= before.min() - 1e-6 and cf.array.max() <= before.max() + 1e-6  # observed range kept
    np.testing.assert_allclose(e.heatmap.array, cf.array - before, atol=1e-5)  # heat map = counterfactual − input
    assert model.predict(cf).class_probabilities[e.target.class_index] < 0.5
    series = e.volumes["series"]
    probs = [model.predict(s).class_probabilities[e.target.class_index] for s in series]
    assert len(series) >= 2 and probs[-1] < 0.5 and probs[0] > probs[-1]  # a progression toward the goal
    assert e.cost.backward_passes == e.details["steps_run"] and e.cost.forward_passes > e.details["steps_run"]
    for key in ("l1", "l2"):
        assert e.details["proximity"][key] > 0
    assert 0 < e.details["sparsity"]["changed_fraction"] < 1
    assert e.details["plausibility"]["available"] is False and e.details["plausibility"]["reason"]


@needs_demo
def test_chest_counterfactual_changes_fewer_pixels_than_a_blurred_region_reaching_the_same_goal(chest):
    """The blurred-region baseline: the finding's true region (grown step by step) replaced by the image blurred
    with σ = 4 … 32 mm, the first that brings the class below 0.5; the counterfactual must change fewer pixels."""
    from scipy.ndimage import binary_dilation, gaussian_filter

    model, phantom = chest
    e = explain(model, phantom.image, "counterfactual")
    assert e.details["validity"]["reached"]
    c = e.target.class_index
    x = phantom.image.array
    mask = phantom.masks[c]
    assert mask.any()
    spacing = float(phantom.image.spacing[0])
    best = None
    for sigma_mm in (4, 8, 16, 32):
        blur = gaussian_filter(x[0, 0].astype(np.float64), sigma_mm / spacing, mode="nearest")
        for grow in (0, 2, 4, 8):
            region = binary_dilation(mask, iterations=grow) if grow else mask
            y = x.copy()
            y[0, 0][region] = blur[region]
            if model.predict(phantom.image.with_array(y)).class_probabilities[c] < 0.5:
                n = int((y != x).sum())
                best = n if best is None else min(best, n)
                break
    assert best is not None, "the blurred-region baseline never reached the goal"
    assert e.details["sparsity"]["changed_voxels"] < best


@needs_demo
def test_cli_writes_the_counterfactual_and_classify_confirms_it(chest, tmp_path, capsys):
    _, phantom = chest
    xray = write_volume(phantom.image, tmp_path / "xray.nrrd")
    heat, cf = tmp_path / "diff.nrrd", tmp_path / "cf.nrrd"
    argv = ["explain", "--model", "demo-chest-xray", "--input", str(xray), "--method", "counterfactual",
            "--output", str(heat), "--counterfactual", str(cf), "--series", str(tmp_path / "series"),
            "--progress", "none"]
    assert main(argv) == 0
    side = json.loads((tmp_path / "diff.nrrd.json").read_text())
    assert side["details"]["validity"]["reached"] and side["counterfactual_files"] == [str(cf)]
    assert len(side["series_files"]) >= 2
    written = read_image(cf)
    np.testing.assert_allclose(written.ijk_to_ras, phantom.image.ijk_to_ras, atol=1e-6)
    np.testing.assert_allclose(read_image(heat).array, written.array - phantom.image.array, atol=1e-5)
    capsys.readouterr()
    assert main(["classify", "--model", "demo-chest-xray", "--input", str(cf), "--progress", "none"]) == 0
    out = json.loads(capsys.readouterr().out)
    name = side["target"]["class_name"]
    assert out["probabilities"][name] < 0.5 and name not in out["predicted"]
    # the requested margin holds on the written file, and the sidecar reports the margin it reaches there
    p = out["probabilities"][name]
    margin = -np.log(p / (1 - p))  # logit(0.5) − the class logit, from classify's probability
    d = side["details"]
    assert d["margin_requested"] == 0.5 and margin >= 0.5 - 1e-4
    assert d["final_margin"] == pytest.approx(margin, abs=1e-3) and d["validity"]["margin_met"]


@needs_demo
def test_sedc_flips_the_chest_decision_with_forward_passes_only(chest):
    model, phantom = chest
    e = explain(model, phantom.image, "sedc", params={"n_segments": 32, "max_passes": 300})
    d = e.details
    assert d["validity"]["reached"] and d["validity"]["after"]["probability"] < 0.5
    assert e.cost.backward_passes == 0 and 1 <= len(d["removed_supervoxels"]) <= 4
    assert model.predict(e.volumes["counterfactual"]).class_probabilities[e.target.class_index] < 0.5


@needs_demo
def test_goal_above_makes_an_absent_finding_appear(chest):
    model, phantom = chest
    c = int(np.argmin(model.predict(phantom.image).class_probabilities))
    e = explain(model, phantom.image, "counterfactual", label=c, params={"goal": "above:0.6"})
    assert e.details["validity"]["reached"] and e.details["validity"]["after"]["probability"] > 0.6


@needs_demo
def test_bad_requests_are_refused_with_the_fix(chest, tmp_path, capsys):
    model, phantom = chest
    with pytest.raises(MethodError, match="goal must be"):
        explain(model, phantom.image, "counterfactual", params={"goal": "sideways"})
    with pytest.raises(MethodError, match="restrict=target"):
        explain(model, phantom.image, "counterfactual", params={"restrict": "target"})
    xray = write_volume(phantom.image, tmp_path / "xray.nrrd")
    argv = ["explain", "--model", "demo-chest-xray", "--input", str(xray), "--method", "gradcam",
            "--output", str(tmp_path / "h.nrrd"), "--counterfactual", str(tmp_path / "cf.nrrd")]
    assert main(argv) == 2
    assert "counterfactual method" in capsys.readouterr().err


def test_channel_names_go_into_the_stem():
    from MedXAILib.commands.explain import channel_path

    assert channel_path("out/cf.nii.gz", "t1").as_posix() == "out/cf_t1.nii.gz"
    assert channel_path("cf.nrrd", "flair").as_posix() == "cf_flair.nrrd"


@needs_demo
def test_integrated_gradients_keep_completeness_against_the_counterfactual_baseline(chest):
    model, phantom = chest
    e = explain(model, phantom.image, "ig", params={"baseline": "counterfactual", "steps": 64})
    d = e.details
    assert d["counterfactual_baseline"]["reached_on_model_grid"]
    assert d["score_delta"] > 0  # f(x) − f(counterfactual): the decision was flipped along the path
    assert d["completeness_gap"] < 0.05


@pytest.fixture(scope="module")
def brain():
    return load_model("demo-brain-tumour"), make_brain_phantom(31_000, shape=(24, 32, 32), spacing=3.0)


@needs_demo
@pytest.mark.slow
def test_brain_counterfactual_removes_the_tumour_and_segment_confirms_it(brain, tmp_path):
    model, phantom = brain
    inputs = [str(write_volume(phantom.image.channel(c), tmp_path / f"{n}.nii.gz"))
              for c, n in enumerate(phantom.image.channel_names)]
    cf, heat = tmp_path / "cf.nii.gz", tmp_path / "diff.nii.gz"
    argv = ["explain", "--model", "demo-brain-tumour", "--method", "counterfactual", "--output", str(heat),
            "--counterfactual", str(cf), "--progress", "none"]
    for path in inputs:
        argv += ["--input", path]
    assert main(argv) == 0
    side = json.loads((tmp_path / "diff.nii.gz.json").read_text())
    names = phantom.image.channel_names
    assert side["counterfactual_files"] == [str(tmp_path / f"cf_{n}.nii.gz") for n in names]
    assert side["details"]["validity"]["region_volume_reduction"] >= 0.9
    before = model.predict(phantom.image).labels.array[0] > 0
    seg = tmp_path / "seg.nii.gz"
    argv = ["segment", "--model", "demo-brain-tumour", "--output", str(seg), "--progress", "none"]
    for path in side["counterfactual_files"]:
        argv += ["--input", path]
    assert main(argv) == 0
    after = read_image(seg).array[0] > 0
    assert (after & before).sum() <= 0.1 * before.sum()  # ≥ 90 % of the tumour volume in the region is gone
    # the margin on the written file: the per-voxel margin (best other logit − best tumour logit) of the voxel at the
    # goal's tolerance, computed here from the model's logits on the counterfactual the files hold
    from MedXAILib.io import read_volume
    from MedXAILib.targets import resolve_target

    written = read_volume(side["counterfactual_files"])
    target = resolve_target(model, phantom.image, prediction=model.predict(phantom.image))
    region = (target.weights(model, model.prepare(phantom.image)).abs().sum(1)[0] > 0).numpy()
    logits = model.predict(written).logits_model_grid[0].numpy()
    margins = np.sort((logits[0] - logits[1:].max(0))[region])
    reached = margins[int(np.floor(0.02 * margins.size))]
    d = side["details"]
    assert reached >= d["margin_requested"] - 1e-3 and d["final_margin"] == pytest.approx(reached, abs=1e-3)
    edited = np.stack([read_image(p).array[0] for p in side["counterfactual_files"]])
    outside_head = ~foreground_of(phantom.image.array)
    assert np.array_equal(edited[:, outside_head], phantom.image.array[:, outside_head])  # background untouched


@needs_demo
@pytest.mark.slow
def test_sedc_removes_the_brain_tumour(brain):
    model, phantom = brain
    e = explain(model, phantom.image, "sedc", params={"n_segments": 32, "max_passes": 200})
    v = e.details["validity"]
    assert v["reached"] and v["region_volume_reduction"] >= 0.9 and e.cost.backward_passes == 0


@needs_demo
@pytest.mark.slow
def test_autoencoder_trained_on_the_cohort_reports_plausibility(chest, tmp_path, capsys):
    out = tmp_path / "ae"
    argv = ["train", "--dataset", "phantom-chest:3", "--task", "autoencoder", "--model", "demo-chest-xray",
            "--output", str(out), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "1", "--progress", "none"]
    assert main(argv) == 0
    desc = json.loads((out / "autoencoder.json").read_text())
    assert desc["for_model"] == "demo-chest-xray" and desc["training"]["n_held_out"] == 1
    model, phantom = chest
    e = explain(model, phantom.image, "counterfactual", params={"autoencoder": str(out)})
    p = e.details["plausibility"]
    assert p["available"] and p["mse_input"] > 0 and p["mse_counterfactual"] > 0
    assert p["ratio"] == pytest.approx(p["mse_counterfactual"] / p["mse_input"])
    capsys.readouterr()
    bad = ["train", "--dataset", "phantom-chest:3", "--task", "autoencoder", "--output", str(tmp_path / "x")]
    assert main(bad) == 2 and "--model" in capsys.readouterr().err
    with pytest.raises(Exception, match="trained for model"):
        explain(load_model("demo-brain-tumour"), make_brain_phantom(1, shape=(16, 16, 16)).image, "counterfactual",
                params={"autoencoder": str(out), "steps": 1})


def test_a_voxel_target_flips_with_changes_only_near_it():
    """A tiny random MONAI UNet on an oblique, anisotropic volume: the counterfactual flips one voxel's class while
    ``restrict=target`` keeps every change within ``margin_mm`` of it."""
    from helpers import oblique_volume, tiny_unet_model
    from scipy.ndimage import distance_transform_edt

    model, vol = tiny_unet_model(), oblique_volume(shape=(16, 16, 16))
    voxel = (8, 8, 8)
    e = explain(model, vol, "counterfactual", voxel=voxel, params={"restrict": "target", "margin_mm": 6.0})
    v = e.details["validity"]
    assert v["before"]["predicted_voxels"] == 1 and v["after"]["predicted_voxels"] == 0 and v["reached"]
    changed = np.abs(e.volumes["counterfactual"].array - vol.array).max(0) > 0
    mask = np.zeros(vol.shape, bool)
    mask[voxel[2], voxel[1], voxel[0]] = True
    dist = distance_transform_edt(~mask, sampling=vol.spacing_kji)
    assert changed.any() and dist[changed].max() <= 6.0 + 1e-6


def test_goal_margin_is_the_margin_of_the_voxel_at_the_goals_fraction():
    """:meth:`Goal.margin_of` by hand: segmentation, the per-voxel margin of the voxel at the goal's fraction (and
    positive exactly when the goal is reached); classification, the logit's distance beyond the threshold."""
    import math

    from MedXAILib.explain.goals import Goal

    rng = np.random.default_rng(4)
    logits = torch.from_numpy(rng.normal(size=(1, 3, 4, 5, 6)).astype(np.float32))
    region = torch.from_numpy(rng.random((4, 5, 6)) < 0.6)
    positive = torch.tensor([False, True, True])
    lg = logits[0].numpy()
    z = (lg[1:].max(0) - lg[0])[region.numpy()]  # ≥ 0 where predicted in the positive set
    n = z.size
    expected = {"flip": np.sort(-z)[math.floor(0.1 * n)], "below": np.sort(-z)[math.ceil(0.3 * n) - 1],
                "above": np.sort(z)[::-1][math.floor(0.4 * n)]}
    for kind, level in (("flip", 0.1), ("below", 0.3), ("above", 0.4)):
        goal = Goal(kind, level, positive, region, True, 0.5, kind)
        m = float(goal.margin_of(logits)[0])
        assert m == pytest.approx(float(expected[kind]), abs=1e-6)
        assert (m > 0) == bool(goal.reached(logits)[0]) or m == 0
        assert bool(goal.met(logits, margin=m)[0]) == bool(goal.reached(logits)[0])
    sig = Goal("flip", 0.3, torch.tensor([True, False]), None, False, 0.5, "flip")
    cls = torch.tensor([[-1.2, 0.4]])
    assert float(sig.margin_of(cls)[0]) == pytest.approx(math.log(0.3 / 0.7) + 1.2, abs=1e-6)
