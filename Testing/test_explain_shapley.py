"""KernelSHAP, LIME and supervoxels: efficiency, exactness against closed-form Shapley values, LIME's recovery of a
linear model, determinism, anisotropy, geometry, coarser scoring and refusals. Inputs are tiny (≤ 16³, ≤ 32²)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from MedXAILib.errors import MethodError
from MedXAILib.explain import explain
from MedXAILib.explain.base import ExplainContext
from MedXAILib.explain.shapley import (
    MaskedScorer,
    captum_reference,
    constrained_wls,
    feature_index,
    kernel_shap,
    kernel_shap_coalitions,
    make_baseline,
    weighted_ridge,
)
from MedXAILib.explain.supervoxels import grid_supervoxels, supervoxels
from MedXAILib.models import Model
from MedXAILib.models.description import ModelDescription
from MedXAILib.targets import resolve_target
from MedXAILib.volume import Volume, make_ijk_to_ras

# ---------------------------------------------------------------------------------------------------------------
# tiny models


class LinearClassifier(torch.nn.Module):
    """logits[b, n] = Σ_v W[n, v] · x[b, v] + bias[n]; ``shape`` is the input's ``(C, *grid)``."""

    def __init__(self, shape: tuple[int, ...], classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn((classes,) + shape, generator=g))
        self.bias = torch.nn.Parameter(torch.randn(classes, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.flatten(1).T + self.bias


class InteractionClassifier(torch.nn.Module):
    """A non-additive score: logit = (Σ_A x)(Σ_B x) + Σ w·x, with A, B two overlapping boxes."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(shape, generator=g))
        a = torch.zeros(shape)
        b = torch.zeros(shape)
        a[..., :5, :6] = 1
        b[..., 3:, 2:7] = 1
        self.register_buffer("a", a)
        self.register_buffer("b", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sa = (x * self.a).flatten(1).sum(1)
        sb = (x * self.b).flatten(1).sum(1)
        lin = (x * self.w).flatten(1).sum(1)
        return torch.stack([sa * sb + lin, -lin], dim=1)


class PointwiseSegmenter(torch.nn.Module):
    """A 3D 'segmenter' without spatial mixing: a 1×1×1 convolution then tanh (non-linear, per voxel)."""

    def __init__(self, channels: int, classes: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv3d(channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)) * 3.0


def classifier_model(network: torch.nn.Module, dims: int = 2, channels: int = 1) -> Model:
    desc = ModelDescription(
        name="lin", task="classification", spatial_dims=dims, channel_names=[f"c{i}" for i in range(channels)],
        class_names=["a", "b"], output="sigmoid",
    )
    return Model(network, desc)


def unet_model(channels: int = 2, classes: int = 3) -> Model:
    from MedXAILib.models.monai_network import build_network

    torch.manual_seed(0)
    arch = {"name": "UNet", "kwargs": {"spatial_dims": 3, "in_channels": channels, "out_channels": classes,
                                       "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}}
    desc = ModelDescription(
        name="tiny-unet", task="segmentation", spatial_dims=3, channel_names=[f"c{i}" for i in range(channels)],
        class_names=["background"] + [f"l{i}" for i in range(1, classes)], architecture=arch,
        preprocessing={"normalize": "zscore"},
    )
    return Model(build_network(arch), desc)


def volume_2d(size: int = 8, seed: int = 0, spacing: float = 1.0) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(rng.normal(size=(1, 1, size, size)).astype(np.float32), make_ijk_to_ras((spacing, spacing, 1.0)))


def oblique_volume(channels: int = 2, shape: tuple[int, int, int] = (12, 16, 14), seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    a = np.deg2rad(20.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    arr = rng.normal(size=(channels,) + shape).astype(np.float32)
    return Volume(arr, make_ijk_to_ras((0.8, 1.1, 2.5), (-12.5, 30.0, 7.25), rot))


def brute_force_shapley(f, m: int) -> np.ndarray:
    """Exact Shapley values of a set function ``f(frozenset) -> float`` by the permutation-free subset formula."""
    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for r in range(m):
            for subset in itertools.combinations(others, r):
                s = set(subset)
                weight = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                phi[i] += weight * (f(s | {i}) - f(s))
    return phi


def coalition_value(ctx: ExplainContext, labels: np.ndarray, base: torch.Tensor, on: set[int]) -> float:
    mask = torch.from_numpy(np.isin(labels, list(on)).astype(np.float32))
    xz = base + mask * (ctx.x - base)
    with torch.no_grad():
        return float(ctx.score(xz)[0])


# ---------------------------------------------------------------------------------------------------------------
# supervoxels


def test_supervoxels_deterministic_consecutive_2d_and_3d() -> None:
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    img3 = gaussian_filter(rng.normal(size=(2, 16, 24, 24)), (0, 1.5, 1.5, 1.5)).astype(np.float32)
    a = supervoxels(img3, (2.0, 1.0, 1.0), n_segments=20)
    b = supervoxels(img3.copy(), (2.0, 1.0, 1.0), n_segments=20)
    assert a.shape == img3.shape[1:] and a.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.unique(a), np.arange(a.max() + 1)) and a.max() + 1 >= 5
    img2 = img3[:, 0]
    c = supervoxels(img2, (1.0, 1.0), n_segments=16)
    assert c.shape == img2.shape[1:] and np.array_equal(np.unique(c), np.arange(c.max() + 1))
    np.testing.assert_array_equal(c, supervoxels(img2, (1.0, 1.0), n_segments=16))


def _median_extent_mm(labels: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    ext = []
    for v in np.unique(labels):
        idx = np.argwhere(labels == v)
        ext.append((idx.max(0) - idx.min(0) + 1) * np.asarray(spacing))
    return np.median(np.asarray(ext), axis=0)


def test_slic_is_anisotropy_aware() -> None:
    """16 slices of 4 mm × 64² of 1 mm: supervoxels should be about as deep (mm) as they are wide."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    img = gaussian_filter(rng.normal(size=(2, 16, 64, 64)), (0, 0.5, 2, 2)).astype(np.float32)
    sp = (4.0, 1.0, 1.0)
    aware = _median_extent_mm(supervoxels(img, sp, n_segments=64), sp)
    naive = _median_extent_mm(supervoxels(img, (1.0, 1.0, 1.0), n_segments=64), sp)
    assert aware[0] / aware[1:].mean() < 1.4
    assert naive[0] / naive[1:].mean() > aware[0] / aware[1:].mean()


def test_grid_supervoxels_cubes_in_mm() -> None:
    lab = grid_supervoxels((8, 16, 16), (4.0, 2.0, 1.0), 8.0)
    # 8 mm cubes: 2 slices, 4 rows, 8 columns per cube → 4 × 4 × 2 = 32 cubes
    assert lab.max() + 1 == 32
    assert np.all(np.bincount(lab.ravel()) == 2 * 4 * 8)
    assert lab[0, 0, 0] == lab[1, 3, 7] and lab[0, 0, 0] != lab[2, 0, 0] and lab[0, 0, 0] != lab[0, 0, 8]


def test_slic_falls_back_to_grid_on_featureless_image() -> None:
    lab = supervoxels(np.zeros((1, 16, 16, 16), np.float32), (1.0, 1.0, 1.0), n_segments=8)
    assert lab.max() + 1 >= 2


# ---------------------------------------------------------------------------------------------------------------
# solver pieces


def test_coalitions_exact_when_small_and_paired_otherwise() -> None:
    z, w, exact = kernel_shap_coalitions(5, 100, np.random.default_rng(0))
    assert exact and len(z) == 2**5 - 2 and len({tuple(r) for r in z}) == len(z)
    z, w, exact = kernel_shap_coalitions(40, 200, np.random.default_rng(0))
    assert not exact and len(z) <= 200 and not z.all(1).any() and z.any(1).all()
    rows = {tuple(r) for r in z}
    assert sum(tuple(~np.asarray(r)) in rows for r in rows) >= 0.9 * len(rows)  # complements sampled with each
    assert np.all(w > 0)


def test_constrained_wls_enforces_efficiency_exactly() -> None:
    rng = np.random.default_rng(0)
    z = rng.random((50, 7)) < 0.5
    y = rng.normal(size=50)
    phi = constrained_wls(z, y, rng.random(50), f0=0.3, f1=2.1)
    assert abs(phi.sum() - 1.8) < 1e-12


def test_weighted_ridge_recovers_linear_model() -> None:
    rng = np.random.default_rng(0)
    z = rng.random((200, 10)) < 0.5
    beta_true = rng.normal(size=10)
    y = 0.7 + z @ beta_true
    beta, b0, r2 = weighted_ridge(z, y, rng.random(200) + 0.1, alpha=1e-9)
    np.testing.assert_allclose(beta, beta_true, atol=1e-6)
    assert abs(b0 - 0.7) < 1e-6 and r2 > 1 - 1e-9


# ---------------------------------------------------------------------------------------------------------------
# end to end: exactness and efficiency


def test_exact_kernelshap_equals_closed_form_on_linear_model() -> None:
    vol = Volume(np.random.default_rng(0).normal(size=(1, 1, 6, 8)).astype(np.float32))
    net = LinearClassifier((1, 6, 8))
    model = classifier_model(net)
    params = {"segmentation": "grid", "supervoxel_mm": 2.0, "n_samples": 5000, "baseline": "zero", "batch_size": 1024}
    # 2 mm squares on a 6×8 1 mm grid → 12 features; 2^12 − 2 coalitions ≤ n_samples → exact enumeration
    e = explain(model, vol, "kernelshap", label="a", params=params)
    assert e.details["exact_enumeration"] and e.details["n_features"] == 12
    x = vol.array[0, 0]
    w = net.weight.detach().numpy()[0, 0]
    lab = grid_supervoxels((6, 8), (1.0, 1.0), 2.0)
    phi_true = np.bincount(lab.ravel(), weights=(w * x).ravel())  # φ_i = Σ_{v∈i} w_v (x_v − 0)
    heat = e.heatmap.array[0, 0]
    np.testing.assert_allclose(heat, phi_true[lab], rtol=1e-4, atol=1e-4)


def test_exact_kernelshap_equals_brute_force_shapley_with_interactions() -> None:
    vol = volume_2d(8, seed=3)
    model = classifier_model(InteractionClassifier((8, 8)))
    params = {"segmentation": "grid", "supervoxel_mm": 4.0, "n_samples": 64, "baseline": "mean"}
    e = explain(model, vol, "kernelshap", label="a", params=params)
    assert e.details["exact_enumeration"] and e.details["n_features"] == 4
    prepared = model.prepare(vol)
    ctx = ExplainContext(model, prepared, resolve_target(model, vol, label="a"))
    lab = grid_supervoxels((8, 8), (1.0, 1.0), 4.0)
    base = make_baseline(ctx.x, "mean")
    truth = brute_force_shapley(lambda s: coalition_value(ctx, lab, base, s), 4)
    np.testing.assert_allclose(e.heatmap.array[0, 0], truth[lab], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("baseline", ["mean", "zero", "blur"])
def test_efficiency_3d_segmentation_region(baseline: str) -> None:
    model = unet_model()
    vol = oblique_volume()
    region = np.zeros(vol.shape, bool)
    region[3:8, 4:10, 4:9] = True
    e = explain(model, vol, "kernelshap", label="l1", region=region,
                params={"n_samples": 48, "n_segments": 24, "batch_size": 8, "baseline": baseline})
    d = e.details
    assert d["efficiency_gap_relative"] < 1e-4
    assert abs(d["sum_attributions"] - (d["f_x"] - d["f_baseline"])) <= 1e-4 * abs(d["f_x"] - d["f_baseline"])
    assert e.heatmap.same_geometry(vol) and e.heatmap.array.shape == (1,) + vol.shape
    assert e.cost.forward_passes >= d["n_coalitions_evaluated"]
    assert d["n_supervoxels"] >= 4 and not d["exact_enumeration"]


def test_efficiency_2d_classification_slic() -> None:
    vol = volume_2d(32, seed=5, spacing=1.4)
    model = classifier_model(InteractionClassifier((32, 32)))
    e = explain(model, vol, "kernelshap", label="a", params={"n_samples": 64, "n_segments": 16})
    d = e.details
    assert d["efficiency_gap_relative"] < 1e-4
    assert e.heatmap.same_geometry(vol)


def test_efficiency_3d_per_channel_groups_and_channel_importance() -> None:
    model = Model(PointwiseSegmenter(2, 3), ModelDescription(
        name="pw", task="segmentation", spatial_dims=3, channel_names=["t1", "flair"],
        class_names=["background", "x", "y"], training={"divisible_by": 1}))
    vol = oblique_volume()
    region = np.zeros(vol.shape, bool)
    region[2:6, 2:9, 3:9] = True
    e = explain(model, vol, "kernelshap", label="x", region=region,
                params={"n_samples": 64, "segmentation": "grid", "supervoxel_mm": 12.0, "per_channel_groups": True})
    assert e.details["efficiency_gap_relative"] < 1e-4
    assert e.channel_maps is not None and e.channel_maps.array.shape == (2,) + vol.shape
    assert set(e.channel_importance["overall"]) == {"t1", "flair"}
    assert e.details["n_features"] == 2 * e.details["n_supervoxels"]


def test_kernelshap_voxel_target_and_dry_run_passes() -> None:
    from MedXAILib.explain.estimate import estimate_cost

    model = unet_model()
    vol = oblique_volume()
    e = explain(model, vol, "kernelshap", label="l2", voxel=(7, 8, 6), params={"n_samples": 24, "n_segments": 12})
    assert e.details["efficiency_gap_relative"] < 1e-4
    est = estimate_cost(model, vol, "kernelshap", params={"n_samples": "24"})
    assert est["forward_passes"] == 26 and est["backward_passes"] == 0


# ---------------------------------------------------------------------------------------------------------------
# LIME


def test_lime_recovers_linear_model_coefficients() -> None:
    vol = volume_2d(8, seed=2)
    net = LinearClassifier((1, 8, 8), seed=4)
    model = classifier_model(net)
    params = {"segmentation": "grid", "supervoxel_mm": 2.0, "n_samples": 200, "baseline": "zero", "alpha": 1e-8}
    e = explain(model, vol, "lime", label="b", params=params)
    lab = grid_supervoxels((8, 8), (1.0, 1.0), 2.0)
    w = net.weight.detach().numpy()[1, 0]
    coef_true = np.bincount(lab.ravel(), weights=(w * vol.array[0, 0]).ravel())
    np.testing.assert_allclose(e.heatmap.array[0, 0], coef_true[lab], rtol=1e-4, atol=1e-4)
    assert e.details["surrogate_r2"] > 1 - 1e-8
    assert e.heatmap.same_geometry(vol)


def test_lime_3d_segmentation_runs_with_r2() -> None:
    model = unet_model()
    vol = oblique_volume()
    e = explain(model, vol, "lime", params={"n_samples": 32, "n_segments": 12, "distance": "hamming"})
    assert e.heatmap.same_geometry(vol) and np.isfinite(e.heatmap.array).all()
    assert -1.0 <= e.details["surrogate_r2"] <= 1.0 + 1e-9


# ---------------------------------------------------------------------------------------------------------------
# batching, captum reference, refusals


def test_masked_batch_equals_per_sample_loop() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 6, 7, 5)
    base = make_baseline(x, "mean")
    lab = grid_supervoxels((6, 7, 5), (1.0, 1.0, 1.0), 3.0)
    m = int(lab.max()) + 1
    seen: list[torch.Tensor] = []

    def fn(b: torch.Tensor) -> torch.Tensor:
        seen.append(b.clone())
        return b.flatten(1).sum(1)

    z = np.random.default_rng(0).random((5, m)) < 0.5
    MaskedScorer(fn, x, base, feature_index(lab, 2, False, x.device), batch_size=3)(z)
    batch = torch.cat(seen)
    for k in range(5):
        mask = torch.from_numpy(z[k][lab].astype(np.float32))
        np.testing.assert_allclose(batch[k].numpy(), (base + mask * (x - base))[0].numpy(), atol=1e-6)


def test_kernel_shap_batch_size_does_not_change_result() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 1, 8, 8)
    lab = grid_supervoxels((8, 8), (1.0, 1.0), 2.0)
    idx = feature_index(lab, 1, False, x.device)

    def fn(b: torch.Tensor) -> torch.Tensor:
        return torch.tanh(b.flatten(1)).sum(1) * b.flatten(1)[:, 0]

    a, _ = kernel_shap(MaskedScorer(fn, x, torch.zeros_like(x), idx, 1), 16, 100)
    b, _ = kernel_shap(MaskedScorer(fn, x, torch.zeros_like(x), idx, 32), 16, 100)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["kernelshap", "lime"])
def test_captum_reference_runs_on_same_features(method: str) -> None:
    vol = volume_2d(8, seed=2)
    net = LinearClassifier((1, 8, 8), seed=4)
    model = classifier_model(net)
    prepared = model.prepare(vol)
    ctx = ExplainContext(model, prepared, resolve_target(model, vol, label="a"))
    lab = grid_supervoxels((8, 8), (1.0, 1.0), 4.0)
    ref = captum_reference(method, model, ctx.x, ctx.score_of_logits, lab, 200, "zero", perturbations_per_eval=8)
    assert ref.shape == (1, 8, 8)
    if method == "kernelshap":  # a linear model: captum's KernelShap finds the closed form too
        w = net.weight.detach().numpy()[0, 0]
        truth = np.bincount(lab.ravel(), weights=(w * vol.array[0, 0]).ravel())
        np.testing.assert_allclose(ref[0].numpy(), truth[lab], rtol=1e-3, atol=1e-3)


def test_refusals() -> None:
    vol = volume_2d(8)
    model = classifier_model(LinearClassifier((1, 8, 8)))
    with pytest.raises(MethodError, match="baseline"):
        explain(model, vol, "kernelshap", label="a", params={"baseline": "noise"})
    with pytest.raises(MethodError, match="segmentation"):
        explain(model, vol, "lime", label="a", params={"segmentation": "watershed"})
    with pytest.raises(MethodError, match="n_samples"):
        explain(model, vol, "kernelshap", label="a", params={"n_samples": "1"})
    with pytest.raises(MethodError, match="no parameter"):
        explain(model, vol, "lime", label="a", params={"layer": "x"})
    with pytest.raises(MethodError, match="distance"):
        explain(model, vol, "lime", label="a", params={"distance": "euclid"})


def test_coarse_scoring_reports_its_error_and_scale_one_is_exact() -> None:
    """``score_scale < 1`` scores masked inputs on a coarser grid, says so, and measures its error on the full grid;
    at 1 (the default) the map is the exact path's."""
    model = unet_model()
    vol = oblique_volume(shape=(16, 16, 16))
    region = np.zeros(vol.shape, bool)
    region[4:10, 4:10, 4:10] = True
    common = {"n_samples": 24, "n_segments": 8, "batch_size": 8, "seed": 3}
    for method in ("kernelshap", "lime"):
        exact = explain(model, vol, method, label="l1", region=region, params=common)
        same = explain(model, vol, method, label="l1", region=region, params={**common, "score_scale": 1.0})
        assert np.array_equal(exact.heatmap.array, same.heatmap.array)
        assert "score_scale_error" not in exact.details and exact.details["score_grid"] == [16, 16, 16]
        coarse = explain(model, vol, method, label="l1", region=region,
                         params={**common, "score_scale": 0.5, "scale_error_samples": 3})
        d = coarse.details
        assert d["score_grid"] == [8, 8, 8]
        err = d["score_scale_error"]
        assert err["inputs_rescored"] == 4 and err["score_relative_error"] >= 0 and 0 <= err["sign_agreement"] <= 1
        assert coarse.heatmap.same_geometry(vol) and np.isfinite(coarse.heatmap.array).all()
        assert coarse.cost.forward_passes == exact.cost.forward_passes + 2 * (3 + 2)
    with pytest.raises(MethodError, match="score_scale"):
        explain(model, vol, "kernelshap", label="l1", region=region, params={**common, "score_scale": 0})
    with pytest.raises(MethodError, match="score_scale"):
        explain(model, vol, "lime", label="l1", region=region, params={**common, "score_scale": 1.5})


def test_rescore_error_is_zero_for_equal_scores_and_counts_sign_flips() -> None:
    from MedXAILib.explain.coarse import rescore_error

    same = rescore_error(torch.tensor([1.0, -2.0, 3.0]), torch.tensor([1.0, -2.0, 3.0]), "x")
    assert same["score_relative_error"] == 0 and same["sign_agreement"] == 1
    flipped = rescore_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, -2.0]), "x")
    assert flipped["sign_agreement"] == 0.5 and flipped["score_relative_error"] > 0.5
