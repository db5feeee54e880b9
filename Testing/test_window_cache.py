"""Perturbed inputs through a sliding window, rerunning only the windows that changed (issue 21): every score equals
MONAI's ``sliding_window_inference`` run on the perturbed input itself (1e-5 relative), the maps equal captum's with
that function, and fewer window passes run than an uncached evaluation would.
"""

from __future__ import annotations

import numpy as np
import torch
from helpers import tiny_unet_model

from MedXAILib.explain.base import ExplainContext
from MedXAILib.explain.window_cache import WindowCache
from MedXAILib.targets import resolve_target
from MedXAILib.volume import Volume, make_ijk_to_ras


def _case(seed: int = 0) -> ExplainContext:
    """A tiny UNet whose function is a sliding window of 8³ over 12 × 6 × 14 (the short axis padded); the target
    region sits in one corner, so some windows hold none of it."""
    model = tiny_unet_model(channels=2, classes=3, seed=seed)
    model.description.patch_size = [8, 8, 8]
    rng = np.random.default_rng(seed)
    vol = Volume(rng.normal(size=(2, 12, 6, 14)).astype(np.float32), make_ijk_to_ras((1.0, 1.0, 1.0)))
    region = np.zeros(vol.shape, bool)
    region[1:5, 1:5, 1:6] = True
    target = resolve_target(model, vol, label="l1", region=region)
    return ExplainContext(model, model.prepare(vol), target)


def _monai_scores(ctx: ExplainContext, batch: torch.Tensor, kind: str) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    with torch.no_grad():
        logits = sliding_window_inference(batch, roi_size=[8, 8, 8], sw_batch_size=1, predictor=ctx.model.network,
                                          overlap=0.25, mode="gaussian")
    w = ctx.weights
    if kind == "logit":
        return (logits * w).flatten(1).sum(1).double()
    p = torch.softmax(logits, 1)
    return ((p * w).flatten(1).sum(1) / w.flatten(1).sum(1)).double()


def test_cached_scores_equal_monai_on_the_perturbed_inputs() -> None:
    ctx = _case()
    x = ctx.x
    base = torch.zeros_like(x)
    local = x.clone()
    local[:, :, 8:12, :, 9:14] = 0.0  # far from the target: its windows are reused or inactive
    near = x.clone()
    near[:, :, 2:4, 2:4, 2:4] = 0.0
    rng = torch.Generator().manual_seed(0)
    mixed = torch.where(torch.rand(x.shape, generator=rng) > 0.5, x, base)
    batch = torch.cat([x, base, local, near, mixed])
    for kind in ("logit", "probability"):
        cache = WindowCache(ctx.model, ctx.weights, [x, base], kind, exact=True, batch_size=2)
        ours = cache(batch)
        ref = _monai_scores(ctx, batch, kind)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7 * float(ref.abs().max()))
        stats = cache.stats.describe()
        assert stats["active_windows"] < stats["windows"]
        assert stats["window_outputs_reused"] > 0
        assert stats["window_passes"] < stats["uncached_window_passes"]


def test_exact_occlusion_equals_captum_with_monai_sliding_window() -> None:
    from captum.attr import Occlusion

    from MedXAILib.explain.perturbation import occlusion_map

    ctx = _case(seed=1)
    ours, details = occlusion_map(ctx, window=(4, 3, 5), stride=(4, 3, 5), baseline=0.0, batch_size=3)

    def f(batch: torch.Tensor) -> torch.Tensor:
        return _monai_scores(ctx, batch, "logit")

    with torch.no_grad():
        ref = Occlusion(f).attribute(ctx.x, sliding_window_shapes=(2, 4, 3, 5), strides=(2, 4, 3, 5), baselines=0.0)
    torch.testing.assert_close(ours, ref[0, :1].float(), rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    cached = details["window_cache"]
    assert cached["window_passes"] < cached["uncached_window_passes"]


def test_kernelshap_coalitions_score_as_monai_does() -> None:
    from MedXAILib.explain.shapley import MaskedScorer, feature_index, make_baseline
    from MedXAILib.explain.window_cache import ContextScorer

    ctx = _case(seed=2)
    labels = np.zeros((12, 6, 14), np.int64)
    labels[6:, :, :] = 1
    labels[:, :, 7:] += 2  # four blocks
    index = feature_index(labels, 2, False, ctx.x.device)
    base = make_baseline(ctx.x, "mean")
    z = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 1], [0, 1, 0, 0], [1, 1, 0, 1]], dtype=np.float32)
    ours = MaskedScorer(ContextScorer(ctx, [ctx.x, base], 2), ctx.x, base, index, 2)(z)
    masked = MaskedScorer(lambda b: _monai_scores(ctx, b, "logit"), ctx.x, base, index, 5)
    np.testing.assert_allclose(ours, masked(z), rtol=1e-5)


def test_windows_keyed_by_their_restricted_coalition_score_as_monai_does() -> None:
    """A window's input is fixed by the coalition on the supervoxels it overlaps: coalitions that agree there reuse
    that window's share (within a batch and across calls), and every score still equals MONAI's sliding window on the
    masked input. Here the four blocks split the grid at K = 6 and I = 7; each 8³ window sees two or four of them."""
    from MedXAILib.explain.shapley import MaskedScorer, feature_index, make_baseline
    from MedXAILib.explain.window_cache import ContextScorer

    ctx = _case(seed=4)
    labels = np.zeros((12, 6, 14), np.int64)
    labels[6:, :, :] = 1
    labels[:, :, 7:] += 2
    index = feature_index(labels, 2, False, ctx.x.device)
    base = make_baseline(ctx.x, "mean")
    rng = np.random.default_rng(0)
    z = (rng.random((24, 4)) < 0.5).astype(np.float32)
    keyed = ContextScorer(ctx, [ctx.x, base], 4)
    keyed.use_features(index)
    plain = ContextScorer(ctx, [ctx.x, base], 4)
    ours = MaskedScorer(keyed, ctx.x, base, index, 4)(z)
    np.testing.assert_allclose(ours, MaskedScorer(plain, ctx.x, base, index, 4)(z), rtol=1e-6)
    reference = MaskedScorer(lambda b: _monai_scores(ctx, b, "logit"), ctx.x, base, index, 8)(z)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    k, p = keyed.describe(), plain.describe()
    assert k["window_passes"] < p["window_passes"]
    # at most one pass per window and distinct restricted coalition (2^4 for a window over all four blocks)
    assert k["window_passes"] <= k["active_windows"] * 16 + 2 * k["active_windows"]
    before = k["window_passes"]
    MaskedScorer(keyed, ctx.x, base, index, 4)(z[::-1].copy())
    assert keyed.describe()["window_passes"] == before


def test_exact_scorecam_masks_score_as_the_plain_loop_through_monai() -> None:
    """Batched Score-CAM through the window cache equals the one-channel loop, whose masked scores are MONAI's
    ``sliding_window_inference`` (``Model.infer``) of each masked input."""
    from MedXAILib.explain.scorecam import ScoreCAM, scorecam_reference

    ctx = _case(seed=3)
    ctx.exact = True
    ref, _ = scorecam_reference(ctx, weighting="increase")
    method = ScoreCAM()
    with torch.no_grad():
        ours = method.run(_case(seed=3), {**method.params, "weighting": "increase", "batch_size": 3}).maps
    assert ours.shape == ref.shape == (1, 12, 6, 14)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_cached_scores_with_reflect_padding_equal_monai() -> None:
    """A sliding window that pads by reflection or replication (a bundle's ``SlidingWindowInferer``): windows over
    the padded axis see the copied border, not the inferer's constant, as in MONAI's ``sliding_window_inference``."""
    from monai.inferers import sliding_window_inference

    from MedXAILib.models.function import make_window_plan

    ctx = _case(seed=4)
    x = ctx.x
    border = x.clone()
    border[:, :, :, :2, :] = 0.0  # at the padded border of the short axis (6 < 8)
    batch = torch.cat([x, border, torch.zeros_like(x)])
    for mode in ("reflect", "replicate"):
        ctx.model.window_plan = lambda grid, mode=mode: make_window_plan(grid, (8, 8, 8), 0.25, "gaussian",
                                                                        0.125, mode)
        cache = WindowCache(ctx.model, ctx.weights, [x], "logit", exact=True)
        with torch.no_grad():
            logits = sliding_window_inference(batch, roi_size=[8, 8, 8], sw_batch_size=1,
                                              predictor=ctx.model.network, overlap=0.25, mode="gaussian",
                                              padding_mode=mode)
        ref = (logits * ctx.weights).flatten(1).sum(1).double()
        torch.testing.assert_close(cache(batch), ref, rtol=1e-5, atol=1e-7 * float(ref.abs().max()))
