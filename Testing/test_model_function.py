"""One model function for predict, explain and score (issue 10): exact by default, approximations measured."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import oblique_volume, tiny_unet_model

from MedXAILib.explain import explain
from MedXAILib.explain.base import ExplainContext, get_method
from MedXAILib.explain.cam import frozen_parameters, layer_capture, upsample_to_grid
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


def test_windowed_gradcam_is_the_gradient_of_the_whole_function():
    """The window-by-window CAM equals the CAM built from one autograd pass through MONAI's sliding window."""
    model, vol = _windowed_model()
    ctx = _ctx(model, vol)
    plan = model.window_plan(tuple(ctx.x.shape[2:]))
    result = get_method("gradcam").run(ctx, {"layer": ""})
    with frozen_parameters(model.network), layer_capture(model, None) as captured, torch.enable_grad():
        s = score(model.infer(ctx.x), ctx.weights).sum()
        grads = torch.autograd.grad(s, captured)
    maps = []
    for a, g in zip(captured, grads):
        cam = (g.mean(dim=(2, 3, 4), keepdim=True) * a).sum(1, keepdim=True)[0]
        maps.append(upsample_to_grid(cam.detach(), model, tuple(plan.roi)))
    expected = plan.blend(maps)
    assert len(captured) == len(plan.slices)
    torch.testing.assert_close(result.maps, expected, rtol=1e-4, atol=1e-6)
    assert result.details["windows"] == len(plan.slices)


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
