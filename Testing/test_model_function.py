"""One model function for predict, explain and score (issue 10): exact by default, approximations measured."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import oblique_volume, tiny_unet_model

from MedXAILib.explain import explain
from MedXAILib.explain.base import ExplainContext
from MedXAILib.explain.windows import window_context, window_targets
from MedXAILib.targets import resolve_target, score


def _windowed_model():
    model = tiny_unet_model()
    model.description.patch_size = [8, 8, 8]
    return model, oblique_volume(shape=(12, 20, 18))


def _ctx(model, vol):
    target = resolve_target(model, vol, label="l1", region=np.ones(vol.shape, bool))
    return ExplainContext(model, model.prepare(vol), target)


def test_explained_function_is_the_predicted_function():
    model, vol = _windowed_model()
    ctx = _ctx(model, vol)
    with torch.no_grad():
        got = ctx.logits(ctx.x)
        windowed = model.infer(ctx.x)
        whole = model.network_pass(ctx.x)
        ctx.exact = False
        approx = ctx.logits(ctx.x)
    assert torch.equal(got, windowed) and not torch.allclose(windowed, whole)
    assert torch.equal(approx, whole)
    assert model.predict(vol).logits_model_grid.shape == windowed.shape
    assert torch.allclose(model.predict(vol).logits_model_grid, windowed)


def test_window_shares_of_the_score_add_up_to_the_score():
    model, vol = _windowed_model()
    ctx = _ctx(model, vol)
    plan = model.window_plan(tuple(ctx.x.shape[2:]))
    assert plan is not None and len(plan.slices) > 1
    with torch.no_grad():
        s = float(ctx.score(ctx.x)[0])
        parts = [float(score(model.network_pass(wt.x), wt.weights)[0]) for wt in window_targets(ctx, plan)]
    assert abs(sum(parts) - s) <= 1e-5 * max(1.0, abs(s))


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "hirescam", "layercam"])
def test_windowed_cams_equal_autograd_through_monai_sliding_window(method):
    """Each CAM of the sliding-window function equals the definition computed with MONAI's own
    ``sliding_window_inference`` (padding on the first axis: grid 12 < roi 16; Gaussian blend) and autograd: the sum of
    the per-window maps, each for the gradient of the whole score (its window's share), at MONAI's window positions.
    Through ``explain`` the default target comes from the prediction whose forward pass the CAM reuses."""
    from cam_reference import COMBINE, monai_reference
    from monai.inferers import sliding_window_inference

    model = tiny_unet_model()
    model.description.patch_size = [16, 8, 8]
    vol = oblique_volume(shape=(12, 20, 18))
    e = explain(model, vol, method)
    assert e.details["forward_reused"] and e.details["function"]["record_passes"] == 0
    assert e.details["network_calls"] == e.details["function"]["n_windows"] > 1
    assert e.details["shares"] == "window plan" and e.details["score_from_calls"] == pytest.approx(
        e.details["score"], rel=1e-5)
    prepared = model.prepare(vol)
    weights = e.target.weights(model, prepared)

    def monai(x):
        return sliding_window_inference(x, (16, 8, 8), 1, model.network, overlap=0.25, mode="gaussian",
                                        sigma_scale=0.125)

    ref = monai_reference(monai, model.network, model.layer(None), prepared.tensor, weights, (16, 8, 8), 0.25,
                          COMBINE[method])
    expected = model.to_input_grid(ref, prepared)[0]
    scale = float(np.abs(expected).max())
    assert scale > 0
    # Grad-CAM++'s α = G² / (2G² + ΣA·G³) amplifies the float32 rounding of G (the backward passes sum in
    # different orders), so its bar is looser
    tol = 1e-4 if method == "gradcampp" else 2e-5
    np.testing.assert_allclose(e.heatmap.array[0], expected, rtol=0, atol=tol * scale)
    with torch.no_grad():
        assert abs(e.details["function"]["score"] - float((monai(prepared.tensor) * weights).sum())) < 1e-4


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate"])
def test_windowed_cam_with_reflect_padding_equals_autograd_through_monai(padding_mode):
    """A sliding window that pads by reflection (a bundle's ``SlidingWindowInferer(padding_mode=...)``): the maps of
    the windows over the padding fold back onto the voxels the padding copied, as autograd through MONAI's
    ``sliding_window_inference`` and torch's padding gives them (the grid, 12 on the first axis, is padded to 16)."""
    from cam_reference import COMBINE, monai_reference
    from monai.inferers import sliding_window_inference

    from MedXAILib.models.function import make_window_plan

    model = tiny_unet_model()
    roi = (16, 8, 8)

    def monai(x):
        return sliding_window_inference(x, roi, 1, model.network, overlap=0.25, mode="gaussian", sigma_scale=0.125,
                                        padding_mode=padding_mode)

    model.infer = monai  # the function, and the plan it follows, of such a bundle
    model.window_plan = lambda grid: make_window_plan(grid, roi, 0.25, "gaussian", 0.125, padding_mode)
    vol = oblique_volume(shape=(12, 20, 18))
    region = np.zeros(vol.shape, bool)
    region[:3, 2:9, 3:10] = True  # beside the padded border
    e = explain(model, vol, "hirescam", label="l1", region=region)
    assert e.details["shares"] == "window plan"
    prepared = model.prepare(vol)
    ref = monai_reference(monai, model.network, model.layer(None), prepared.tensor,
                          e.target.weights(model, prepared), roi, 0.25, COMBINE["hirescam"], padding_mode)
    expected = model.to_input_grid(ref, prepared)[0]
    np.testing.assert_allclose(e.heatmap.array[0], expected, rtol=0, atol=2e-5 * float(np.abs(expected).max()))


def test_window_plan_shares_equal_autograd_through_the_function():
    """The two ways to each call's share of the score agree: from the window plan (W·g/N at each window) and by
    autograd through MONAI's blend with the network replaced by zeros; so do the CAMs they place."""
    from MedXAILib.explain.calls import record_function

    model, vol = _windowed_model()
    ctx = _ctx(model, vol)
    maps, shares = [], []
    for use_plan in (True, False):
        record = record_function(model, ctx.x, None, True, 1 << 30)
        assert record.layout is not None
        if not use_plan:
            record.layout = None
        record.compute_shares(ctx.score_of_logits, ctx.weights)
        shares.append([c.share for c in record.calls])
        cam, counts = record.place(lambda a, g: (g * a).sum(1, keepdim=True))
        maps.append(cam)
        assert counts["score_from_calls"] == pytest.approx(counts["score"], rel=1e-5)
    for a, b in zip(*shares):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(maps[0], maps[1], rtol=0, atol=1e-5 * float(maps[1].abs().max()))


def test_cam_with_a_small_cache_recomputes_and_gives_the_same_map():
    """``cache_mb`` bounds the kept tails; calls beyond it run their network pass again, with the same result."""
    model, vol = _windowed_model()
    full = explain(model, vol, "hirescam")
    small = explain(model, vol, "hirescam", params={"cache_mb": "0.01"})
    assert full.details["calls_recomputed"] == 0 and small.details["calls_recomputed"] > 0
    np.testing.assert_allclose(small.heatmap.array, full.heatmap.array, rtol=0,
                               atol=1e-6 * float(np.abs(full.heatmap.array).max()))


def test_window_context_runs_one_network_pass():
    model, vol = _windowed_model()
    ctx = _ctx(model, vol)
    wt = window_targets(ctx, model.window_plan(tuple(ctx.x.shape[2:])))[0]
    sub = window_context(ctx, wt)
    with torch.no_grad():
        assert torch.equal(sub.logits(sub.x), model.network_pass(wt.x))


@pytest.mark.parametrize("method", ["gradcam", "lrp", "ig", "occlusion"])
def test_sidecar_says_the_function_was_exact(method):
    model, vol = _windowed_model()
    params = {"ig": {"steps": "4"}, "occlusion": {"window_mm": "8", "stride_mm": "8"}}.get(method, {})
    expl = explain(model, vol, method, label="l1", region=np.ones(vol.shape, bool), params=params)
    fn = expl.details["function"]
    assert fn["exact"] is True and fn["kind"] == "sliding_window" and fn["n_windows"] > 1
    assert expl.heatmap.shape == vol.shape and np.isfinite(expl.heatmap.array).all()
    if method == "lrp":  # conservation is reported on the windowed function
        assert abs(expl.details["input_relevance_sum"] + expl.details["absorbed"] - fn["score"]) < 1e-3 * max(
            1, abs(fn["score"])) + abs(expl.details["padding_share"] * fn["score"])
    if method == "ig":
        assert "completeness_gap" in expl.details


def test_approximation_reports_its_deviation():
    model, vol = _windowed_model()
    expl = explain(model, vol, "gradcam", label="l1", region=np.ones(vol.shape, bool), params={"exact": "false"})
    fn = expl.details["function"]
    assert fn["exact"] is False and fn["approximation"] == "one whole-grid pass"
    assert fn["delta_score"] > 0 and 0 <= fn["argmax_dice"] <= 1


@pytest.mark.slow
def test_demo_region_score_equals_the_deletion_insertion_score():
    """The demo U-Net on a 4×72×104×104 phantom (sliding window): the explained score is the scored one (1e-5)."""
    from MedXAILib.models import load_model
    from MedXAILib.phantoms import make_brain_phantom
    from MedXAILib.quality.faithfulness import deletion_insertion

    model = load_model("demo-brain-tumour")
    ph = make_brain_phantom(3, shape=(72, 104, 104))
    vol = ph.image
    expl = explain(model, vol, "gradcam")
    assert expl.details["function"]["exact"] and expl.details["function"]["kind"] == "sliding_window"
    fi = deletion_insertion(model, vol, expl.heatmap, expl.target, steps=2, score="logit", random_control=False)
    s = expl.details["function"]["score"]
    assert abs(fi["score_input"] - s) <= 1e-5 * max(1.0, abs(s))


def test_cam_on_a_segresnet_whose_blocks_add_in_place():
    """SegResNet's residual blocks do ``x += identity`` right after the default CAM layer's convolution."""
    from MedXAILib.models import Model
    from MedXAILib.models.description import ModelDescription
    from MedXAILib.models.monai_network import build_network

    torch.manual_seed(0)
    arch = {"name": "SegResNet", "kwargs": {"spatial_dims": 3, "in_channels": 2, "out_channels": 3,
                                              "init_filters": 8, "blocks_down": [1, 1], "blocks_up": [1]}}
    desc = ModelDescription(name="tiny-segresnet", task="segmentation", spatial_dims=3, channel_names=["a", "b"],
                            class_names=["bg", "l1", "l2"], architecture=arch, patch_size=[8, 8, 8])
    model = Model(build_network(arch), desc)
    vol = oblique_volume(shape=(12, 20, 18))
    layer = model.default_cam_layer()
    assert layer and layer.startswith("up_layers"), layer
    e = explain(model, vol, "gradcam", label="l1", region=np.ones(vol.shape, bool))
    assert e.details["layer"] == layer and np.abs(e.heatmap.array).max() > 0
