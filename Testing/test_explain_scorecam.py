"""Score-CAM: the batched path equals the plain per-channel loop; pruning reports its error; geometry; refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_explain_occlusion import classifier, context, unet, volume

from MedXAILib.errors import MethodError
from MedXAILib.explain import explain
from MedXAILib.explain.base import get_method
from MedXAILib.explain.scorecam import _spearman, capture_activations, scorecam_reference


def run_fast(ctx, **params):
    m = get_method("scorecam")
    with torch.no_grad():
        return m.run(ctx, {**m.params, **params})


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def test_equals_plain_loop_2d_classifier_softmax() -> None:
    model = classifier(2)
    ctx = context(model, volume((1, 20, 20), 2, seed=1), label="c")
    ref, w_ref = scorecam_reference(ctx)
    fast = run_fast(ctx, batch_size=3)
    assert fast.details["weighting"] == "softmax" and fast.details["channels_scored"] == 8
    assert rel(fast.maps, ref) < 1e-5
    w = torch.tensor([fast.details["weights"][k] for k in range(8)], dtype=torch.float64)
    assert torch.allclose(w, w_ref, atol=1e-6) and abs(float(w.sum()) - 1) < 1e-5


def test_equals_plain_loop_3d_unet_region_increase() -> None:
    model = unet()
    vol = volume((16, 16, 16), 2)
    region = np.zeros((16, 16, 16), bool)
    region[3:11, 4:12, 5:13] = True
    ctx = context(model, vol, label="core", region=region)
    ref, w_ref = scorecam_reference(ctx)
    before = ctx.forward_passes
    fast = run_fast(ctx, batch_size=4)
    assert fast.details["weighting"] == "increase" and "baseline_score" in fast.details
    assert ctx.forward_passes - before == 1 + 1 + 8  # activations + baseline + 8 channels of model.1.submodule.0
    assert rel(fast.maps, ref) < 1e-5
    assert abs(sum(abs(v) for v in fast.details["weights"].values()) - 1) < 1e-5


def test_pruning_error_is_exact_when_every_dropped_channel_is_sampled() -> None:
    model = unet()
    vol = volume((16, 16, 16), 2)
    ctx = context(model, vol, voxel=(8, 7, 9), label="oedema")
    full = run_fast(ctx, weighting="increase")
    pruned = run_fast(ctx, weighting="increase", top_k=3, error_samples=5, prune_by="mean")
    err = pruned.details["pruning_error"]
    assert err["dropped_channels"] == 5 and err["channels_sampled"] == 5
    true_rel = float((pruned.maps.double() - full.maps.double()).norm() / full.maps.double().norm())
    assert abs(err["relative_l2"] - true_rel) < 1e-4
    assert abs(err["spearman"] - _spearman(pruned.maps, full.maps)) < 1e-4
    # kept channels are the 3 with the largest mean activation
    acts = capture_activations(ctx, None)
    top3 = sorted(torch.argsort(acts[0].reshape(8, -1).mean(1), descending=True)[:3].tolist())
    assert sorted(pruned.details["weights"]) == top3
    # a cheaper estimate (2 samples) still reports numbers in range
    est = run_fast(ctx, weighting="increase", top_k=3, error_samples=2).details["pruning_error"]
    assert est["channels_sampled"] == 2 and est["relative_l2"] >= 0 and -1 <= est["spearman"] <= 1
    none = run_fast(ctx, weighting="increase", top_k=3, error_samples=0).details["pruning_error"]
    assert 0 < none["dropped_activation_mass"] < 1 and "relative_l2" not in none


def test_mask_scale_reports_its_error_and_scale_one_is_exact() -> None:
    model = unet()
    ctx = context(model, volume((16, 16, 16), 2), label="core", region=np.ones((16, 16, 16), bool))
    full = run_fast(ctx)
    same = run_fast(ctx, mask_scale=1.0)
    assert rel(same.maps, full.maps) < 1e-6 and "mask_scale_error" not in same.details
    before = ctx.forward_passes
    coarse = run_fast(ctx, mask_scale=0.5, error_samples=3)
    err = coarse.details["mask_scale_error"]
    assert err["mask_grid"] == [8, 8, 8] and err["channels_rescored"] == 3
    # activations + coarse baseline + 8 coarse + 3 full re-scored + full baseline
    assert ctx.forward_passes - before == 1 + 1 + 8 + 3 + 1
    assert 0 <= err["score_relative_error"] < float("inf")


def test_geometry_oblique_anisotropic_3d_and_2d() -> None:
    model = unet(target_spacing=[2.0, 1.5, 1.5])
    vol = volume((10, 21, 19), 2, spacing_ijk=(1.2, 0.9, 2.6), oblique=True)
    e = explain(model, vol, "scorecam", label="core", region=np.ones(vol.shape, bool), params={"top_k": 4})
    assert e.heatmap.shape == vol.shape and e.heatmap.same_geometry(vol)
    assert np.isfinite(e.heatmap.array).all() and np.abs(e.heatmap.array).max() > 0
    assert e.cost.forward_passes >= 1 + 4 and e.cost.backward_passes == 0

    img = volume((1, 30, 26), 1, spacing_ijk=(0.7, 0.5, 1.0))
    e2 = explain(classifier(2, channels=1), img, "scorecam", label="a")
    assert e2.heatmap.shape == img.shape and e2.heatmap.same_geometry(img)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dry_run_passes_and_refusals() -> None:
    model = classifier(2, channels=1)
    img = volume((1, 16, 16), 1)
    m = get_method("scorecam")
    prepared = model.prepare(img)
    assert m.passes(model, prepared, {**m.params, "weighting": "softmax"}) == (1 + 8, 0)
    assert m.passes(model, prepared, {**m.params, "weighting": "softmax", "top_k": 3, "error_samples": 2}) == (6, 0)
    with pytest.raises(MethodError, match="weighting"):
        explain(model, img, "scorecam", label="a", params={"weighting": "max"})
    with pytest.raises(MethodError, match="mask_scale"):
        explain(model, img, "scorecam", label="a", params={"mask_scale": 1.5})
    with pytest.raises(MethodError, match="prune_by"):
        explain(model, img, "scorecam", label="a", params={"prune_by": "grad"})
    with pytest.raises(Exception, match="no layer"):
        explain(model, img, "scorecam", label="a", params={"layer": "nope"})
    scripted = classifier(2, channels=1)
    scripted.network = torch.jit.script(scripted.network)
    with pytest.raises(MethodError, match="TorchScript"):
        explain(scripted, img, "scorecam", label="a")
