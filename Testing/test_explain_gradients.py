"""IG, Saliency / SmoothGrad and GradientSHAP: equal to captum where it has the method; IG completeness; geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_explain_occlusion import classifier, context, unet, volume
from torch import nn

from MedXAILib.errors import MethodError
from MedXAILib.explain import explain
from MedXAILib.explain.base import get_method
from MedXAILib.explain.gradients import gradient_shap, integrated_gradients, make_baseline, saliency_map
from MedXAILib.models import Model
from MedXAILib.models.description import ModelDescription


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max())


def score_fn(ctx):
    return lambda x: ctx.score_of_logits(ctx.model.forward(x))


def smooth_classifier(seed: int = 0) -> Model:
    """A tiny 2D classifier with tanh activations (a smooth path integrand)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 4, 3, padding=1), nn.Tanh(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    desc = ModelDescription(name="tanh-cls", task="classification", spatial_dims=2, channel_names=["a", "b"],
                            class_names=["x", "y", "z"])
    return Model(net, desc)


def region_ctx():
    model = unet()
    vol = volume((16, 16, 16), 2)
    region = np.zeros((16, 16, 16), bool)
    region[3:11, 4:12, 5:13] = True
    return model, context(model, vol, label="core", region=region)


@pytest.mark.parametrize("which", ["2d", "3d"])
def test_ig_equals_captum_gausslegendre(which: str) -> None:
    from captum.attr import IntegratedGradients

    if which == "2d":
        model = classifier(2)
        ctx = context(model, volume((1, 20, 20), 2), label="b")
    else:
        model, ctx = region_ctx()
    ours, _ = integrated_gradients(ctx, torch.zeros_like(ctx.x), steps=16, method="gausslegendre",
                                   internal_batch_size=5)
    ref = IntegratedGradients(score_fn(ctx)).attribute(ctx.x, baselines=0.0, n_steps=16, method="gausslegendre",
                                                      internal_batch_size=5)[0]
    assert rel(ours, ref) < 1e-4


def test_ig_trapezoid_is_captum_rescaled() -> None:
    """captum's riemann_trapezoid weights sum to 1 − 1/n; ours sum to 1, so captum = ours × (n − 1)/n."""
    from captum.attr import IntegratedGradients

    model = classifier(2)
    ctx = context(model, volume((1, 16, 16), 2), label="a")
    n = 10
    ours, _ = integrated_gradients(ctx, torch.zeros_like(ctx.x), steps=n, method="riemann_trapezoid")
    ref = IntegratedGradients(score_fn(ctx)).attribute(ctx.x, baselines=0.0, n_steps=n, method="riemann_trapezoid")[0]
    assert rel(ours * (n - 1) / n, ref) < 1e-4


def test_ig_completeness_gap_within_stated_tolerance() -> None:
    # smooth net: < 1e-3 at 32 Gauss–Legendre steps
    model = smooth_classifier()
    ctx = context(model, volume((1, 16, 16), 2, seed=3), label="y")
    _, d = integrated_gradients(ctx, torch.zeros_like(ctx.x), steps=32)
    assert d["completeness_gap"] < 1e-3
    assert "completeness_warning" not in d
    # MONAI UNet (InstanceNorm, PReLU), region score, blurred baseline: < 5 % at 64 steps
    _, ctx3 = region_ctx()
    _, d3 = integrated_gradients(ctx3, make_baseline(ctx3, "blurred", 3.0), steps=64, internal_batch_size=32)
    assert d3["completeness_gap"] < 0.05
    # the zeros baseline is ill-conditioned through InstanceNorm: the gap is reported and warned about
    _, d4 = integrated_gradients(ctx3, torch.zeros_like(ctx3.x), steps=16, internal_batch_size=16)
    assert d4["completeness_gap"] > 0.05 and "blurred" in d4["completeness_warning"]


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_saliency_equals_captum() -> None:
    from captum.attr import InputXGradient, Saliency

    model, ctx = region_ctx()
    assert rel(saliency_map(ctx, "abs"), Saliency(score_fn(ctx)).attribute(ctx.x, abs=True)[0]) < 1e-5
    assert rel(saliency_map(ctx, "signed"), Saliency(score_fn(ctx)).attribute(ctx.x, abs=False)[0]) < 1e-5
    assert rel(saliency_map(ctx, "grad_x_input"), InputXGradient(score_fn(ctx)).attribute(ctx.x)[0]) < 1e-5
    # SmoothGrad without noise is the plain gradient; with noise it differs, and is reproducible by seed
    plain = saliency_map(ctx, "abs")
    assert rel(saliency_map(ctx, "abs", smoothgrad_samples=3, noise_level=0.0, batch_size=2), plain) < 1e-5
    a = saliency_map(ctx, "abs", smoothgrad_samples=4, noise_level=0.2, seed=1)
    b = saliency_map(ctx, "abs", smoothgrad_samples=4, noise_level=0.2, seed=1)
    assert torch.equal(a, b) and rel(a, plain) > 1e-3


def test_gradientshap_linear_model_equals_captum_and_is_complete() -> None:
    """On a linear model the gradient is constant, so GradientSHAP = (x − E[b]) ⊙ w exactly, for any draws."""
    from captum.attr import GradientShap

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    desc = ModelDescription(name="lin", task="classification", spatial_dims=2, channel_names=["a", "b"],
                            class_names=["x", "y", "z"])
    model = Model(net, desc)
    ctx = context(model, volume((1, 12, 12), 2), label="z")
    zeros = torch.zeros_like(ctx.x)
    ours, d = gradient_shap(ctx, [zeros], n_samples=7, batch_size=3, seed=2)
    ref = GradientShap(score_fn(ctx)).attribute(ctx.x, baselines=zeros, n_samples=7)[0]
    assert rel(ours, ref) < 1e-5 and d["completeness_gap_estimate"] < 1e-5


def test_gradientshap_nonlinear_approaches_completeness_in_expectation() -> None:
    model = smooth_classifier()
    ctx = context(model, volume((1, 16, 16), 2, seed=3), label="y")
    _, d = gradient_shap(ctx, [torch.zeros_like(ctx.x)], n_samples=64, batch_size=32, seed=0)
    assert d["completeness_gap_estimate"] < 0.1


@pytest.mark.parametrize("method", ["ig", "saliency", "gradientshap"])
def test_geometry_oblique_anisotropic_3d_and_2d(method: str) -> None:
    small = {"ig": {"steps": 4}, "saliency": {"smoothgrad_samples": 2}, "gradientshap": {"n_samples": 3}}[method]
    model = unet(target_spacing=[2.0, 1.5, 1.5])
    vol = volume((10, 21, 19), 2, spacing_ijk=(1.2, 0.9, 2.6), oblique=True)
    e = explain(model, vol, method, label="core", region=np.ones(vol.shape, bool), params=small)
    assert e.heatmap.shape == vol.shape and e.heatmap.same_geometry(vol)
    assert e.channel_maps is not None and e.channel_maps.array.shape == (2,) + vol.shape
    shares = e.channel_importance["overall"]
    assert set(shares) == {"t1", "flair"} and abs(sum(shares.values()) - 1) < 1e-6
    assert np.isfinite(e.heatmap.array).all() and np.abs(e.heatmap.array).max() > 0
    n_fwd, n_bwd = get_method(method).passes(model, model.prepare(vol), {**get_method(method).params, **small})
    assert e.cost.backward_passes == n_bwd and e.cost.forward_passes >= n_fwd

    img = volume((1, 30, 26), 1, spacing_ijk=(0.7, 0.5, 1.0))
    e2 = explain(classifier(2, channels=1), img, method, label="a", params=small)
    assert e2.heatmap.shape == img.shape and e2.heatmap.same_geometry(img)


def test_refusals() -> None:
    model = classifier(2, channels=1)
    img = volume((1, 16, 16), 1)
    with pytest.raises(MethodError, match="method must be"):
        explain(model, img, "ig", label="a", params={"method": "simpson"})
    with pytest.raises(MethodError, match="at least 2 steps"):
        explain(model, img, "ig", label="a", params={"method": "riemann_trapezoid", "steps": 1})
    with pytest.raises(MethodError, match="baseline must be"):
        explain(model, img, "ig", label="a", params={"baseline": "noise"})
    with pytest.raises(MethodError, match="mode must be"):
        explain(model, img, "saliency", label="a", params={"mode": "squared"})
    with pytest.raises(MethodError, match="baselines"):
        explain(model, img, "gradientshap", label="a", params={"baselines": "zeros+uniform"})
    with pytest.raises(MethodError, match="n_samples"):
        explain(model, img, "gradientshap", label="a", params={"n_samples": 0})
