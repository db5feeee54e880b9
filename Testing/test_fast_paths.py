"""The fast paths give the maps of the slow ones, within the tolerances the benchmark states (correctness, not timing).

- Grad-CAM (leaf at the layer, frozen parameters) equals captum ``LayerGradCam`` upsampled the same way: 1e-5 relative.
- Occlusion (batched in-place masking, background windows skipped) equals captum ``Occlusion``: 1e-4 relative
  (``test_explain_occlusion``: 2D, 3D, skipped background windows; ``test_window_cache``: through a sliding window).
- Score-CAM batched without pruning equals the plain per-channel loop: 1e-5 relative; pruned, its Spearman to the loop
  is what the benchmark reports and it rises to 1 as ``top_k`` reaches the channel count; with masked passes on a
  half-size grid (``mask_scale`` 0.5, the benchmark's fast setting) it keeps Spearman ≥ 0.95 on the trained demo U-Net.
- Integrated Gradients equals captum's at the same steps (Gauss–Legendre, zeros baseline): 1e-4 relative
  (``test_explain_gradients``, and through a sliding window ``test_explain_recompute``).
- KernelSHAP: exact enumeration equals brute-force Shapley values; at equal samples its agreement with them is no worse
  than captum ``KernelShap``'s (fixed seeds); LIME agrees with captum ``Lime`` configured with the same surrogate.
- MONAI's Grad-CAM (classification) ranks voxels as our ReLU'd Grad-CAM does.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from helpers import tiny_classifier, tiny_unet_model

from MedXAILib.explain.base import ExplainContext
from MedXAILib.explain.shapley import MaskedScorer, kernel_shap, make_baseline
from MedXAILib.speed import references as ref
from MedXAILib.speed.measures import max_relative_difference, spearman
from MedXAILib.speed.suite import run_medxai
from MedXAILib.targets import resolve_target
from MedXAILib.volume import Volume, make_ijk_to_ras


def brain_like(shape=(16, 16, 16), channels=2, seed=0) -> Volume:
    """Random channels inside a ball, exactly 0 outside (a skull-stripped volume), 2 mm voxels."""
    rng = np.random.default_rng(seed)
    arr = rng.normal(size=(channels,) + shape).astype(np.float32) + 2.0
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    arr[:, (k**2 + j**2 + i**2) > 0.6] = 0.0
    return Volume(arr, make_ijk_to_ras((2.0, 2.0, 2.0)))


def unet_context(seed: int = 0) -> ExplainContext:
    model = tiny_unet_model(channels=2, classes=3, seed=seed)
    model.description.preprocessing = {"normalize": "zscore_foreground"}  # background stays exactly 0
    vol = brain_like()
    region = np.zeros(vol.shape, bool)
    region[5:11, 6:12, 4:10] = True
    target = resolve_target(model, vol, label="l1", region=region)
    return ExplainContext(model, model.prepare(vol), target)


def classifier_context(size: int = 32) -> ExplainContext:
    model = tiny_classifier()
    rng = np.random.default_rng(1)
    vol = Volume(rng.random((1, 1, size, size)).astype(np.float32), make_ijk_to_ras((1.0, 1.0, 1.0)))
    target = resolve_target(model, vol, label="f1")
    return ExplainContext(model, model.prepare(vol), target)


@pytest.mark.parametrize("which", ["unet", "classifier"])
def test_gradcam_equals_captum_layergradcam(which: str) -> None:
    ctx = unet_context() if which == "unet" else classifier_context()
    ours = run_medxai(ctx, "gradcam", {})
    theirs = ref.captum_layergradcam(ctx)
    assert max_relative_difference(ours, theirs) < 1e-5


def test_scorecam_batched_equals_plain_loop_and_pruning_converges() -> None:
    ctx = unet_context()
    plain = ref.naive_scorecam(ctx)
    exact = run_medxai(ctx, "scorecam", {"batch_size": 3})
    assert max_relative_difference(exact, plain) < 1e-5
    n_channels = int(ctx.model.layer(None).conv.out_channels) if hasattr(ctx.model.layer(None), "conv") else None
    rhos = {}
    for k in (1, 2, 4):
        pruned = run_medxai(ctx, "scorecam", {"batch_size": 3, "top_k": k, "error_samples": 0})
        rhos[k] = spearman(pruned, plain)
    assert rhos[4] >= rhos[1] - 1e-9
    if n_channels:
        full = run_medxai(ctx, "scorecam", {"batch_size": 3, "top_k": n_channels, "error_samples": 0})
        assert max_relative_difference(full, plain) < 1e-5


@pytest.mark.slow
def test_scorecam_coarse_masked_passes_hold_rank_agreement_on_the_trained_demo_unet() -> None:
    """The benchmark's fast Score-CAM (masked passes on a grid half the size per axis) against the plain loop, on
    the trained demo U-Net and a brain phantom at its own grid: the issue's Spearman ≥ 0.95 (0.997 at 128³)."""
    from MedXAILib.models import load_model
    from MedXAILib.speed.cases import brain_case

    ctx = brain_case(load_model("demo-brain-tumour"), (64, 96, 96)).context()
    plain = ref.naive_scorecam(ctx)
    coarse = run_medxai(ctx, "scorecam", {"batch_size": 4, "mask_scale": 0.5, "error_samples": 0})
    assert spearman(coarse, plain) >= 0.95


def _shapley_brute_force(f, m: int) -> np.ndarray:
    """Exact Shapley values from all 2^m coalition values (one batched evaluation)."""
    table = np.array(list(itertools.product([False, True], repeat=m)))  # every coalition once
    values = f(table)
    index = {tuple(row): v for row, v in zip(table.tolist(), values)}
    phi = np.zeros(m)
    for i in range(m):
        for row, v in index.items():
            if row[i]:
                continue
            size = sum(row)
            with_i = list(row)
            with_i[i] = True
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            phi[i] += weight * (index[tuple(with_i)] - v)
    return phi


def test_kernelshap_exact_and_no_worse_than_captum_at_equal_samples() -> None:
    ctx = classifier_context(size=24)
    labels = np.repeat(np.repeat(np.arange(9).reshape(3, 3), 8, 0), 8, 1)  # 9 square features of 8×8 pixels
    base = make_baseline(ctx.x, "mean")
    index = torch.from_numpy(labels.reshape(1, -1).astype(np.int64))
    scorer = MaskedScorer(ctx.score, ctx.x, base, index, batch_size=16)
    exact = _shapley_brute_force(scorer, 9)
    phi_exact, details = kernel_shap(scorer, 9, 2**9, seed=0)
    assert details["exact_enumeration"]
    np.testing.assert_allclose(phi_exact, exact, rtol=1e-4, atol=1e-6 * np.abs(exact).max())
    truth = torch.from_numpy(exact)[torch.from_numpy(labels)][None]
    from MedXAILib.explain.shapley import captum_reference

    n = 40
    ours_err, captum_err = [], []
    for seed in range(3):
        ours, _ = kernel_shap(scorer, 9, n, seed=seed)
        ours_map = torch.from_numpy(ours)[torch.from_numpy(labels)][None]
        theirs = captum_reference("kernelshap", ctx.model, ctx.x, ctx.score_of_logits, labels, n, base,
                                  perturbations_per_eval=8, seed=seed)
        ours_err.append(float((ours_map - truth).norm() / truth.norm()))
        captum_err.append(float((theirs.double() - truth).norm() / truth.norm()))
    assert np.mean(ours_err) <= np.mean(captum_err)


def test_lime_agrees_with_captum_lime_same_surrogate() -> None:
    ctx = classifier_context(size=24)
    labels = np.repeat(np.repeat(np.arange(9).reshape(3, 3), 8, 0), 8, 1)
    params = {"n_samples": 400, "segmentation": "grid", "supervoxel_mm": 8.0, "baseline": "mean", "batch_size": 16}
    ours = run_medxai(ctx, "lime", params)
    from MedXAILib.explain.shapley import captum_reference

    theirs = captum_reference("lime", ctx.model, ctx.x, ctx.score_of_logits, labels, 400, "mean",
                              perturbations_per_eval=16, seed=0)
    assert spearman(ours, theirs) > 0.8


def test_monai_gradcam_ranks_like_ours_on_a_classifier() -> None:
    ctx = classifier_context()
    ours = torch.relu(run_medxai(ctx, "gradcam", {}))
    _, raw = ref.monai_cam(ctx, plus_plus=False)
    assert spearman(raw, ours) > 0.99
    # MONAI's hooks are gone afterwards
    assert not any(m._forward_hooks or m._backward_hooks for m in ctx.model.network.modules())


def test_forward_backward_leaves_the_network_as_it_was() -> None:
    ctx = unet_context()
    net = ctx.model.network
    flags = [p.requires_grad for p in net.parameters()]
    ref.forward_backward(ctx)
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
