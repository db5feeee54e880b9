"""Faithfulness (deletion / insertion) checked against its definition on a linear model, 2D and 3D, anisotropic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import oblique_volume, tiny_unet_model
from scipy import ndimage

from MedXAILib.errors import InputError
from MedXAILib.models import Model
from MedXAILib.models.description import ModelDescription
from MedXAILib.quality.faithfulness import (
    auc,
    cube_labels,
    deletion_insertion,
    make_baseline,
    step_counts,
)
from MedXAILib.targets import Target
from MedXAILib.volume import Volume, make_ijk_to_ras

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def linear_model(shape: tuple[int, ...], seed: int = 0, bias: float = 50.0) -> tuple[Model, np.ndarray]:
    """f(x) = Σ a_v x_v + b: a one-class classifier whose logit is linear in the voxels (no normalisation)."""
    torch.manual_seed(seed)
    n = int(np.prod(shape))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n, 1))
    with torch.no_grad():
        net[1].bias.fill_(bias)
    desc = ModelDescription(
        name="linear", task="classification", spatial_dims=len(shape), channel_names=["x"], class_names=["a"],
        output="sigmoid", preprocessing={"normalize": "none"},
    )
    return Model(net, desc), net[1].weight.detach().numpy().reshape(shape).astype(np.float64)


def expected_curves(x: np.ndarray, a: np.ndarray, m: float, f_x: float, order: np.ndarray, counts: np.ndarray):
    """Deletion / insertion of a linear model with a mean baseline: each voxel moves f by ±a_v (x_v − m)."""
    contrib = (a * (x - m)).ravel()[order]
    cum = np.concatenate([[0.0], np.cumsum(contrib)])
    f_b = f_x - contrib.sum()
    dele = (f_x - cum[counts]) / f_x
    ins = (f_b + cum[counts]) / f_x
    return dele, ins


@pytest.mark.parametrize("dims", [2, 3])
def test_linear_model_deletion_matches_definition_and_perfect_beats_reversed(dims: int) -> None:
    if dims == 2:
        shape = (10, 12)
        vol = Volume(np.random.default_rng(1).random((1, 1) + shape).astype(np.float32),
                     make_ijk_to_ras((0.5, 2.0, 1.0)))
    else:
        vol = oblique_volume(channels=1, shape=(5, 7, 6), seed=1)  # anisotropic (0.8, 1.1, 2.5) mm, oblique
        shape = vol.shape
    model, a = linear_model(shape)
    x = vol.array[0].reshape(shape).astype(np.float64)
    m = float(x.mean())
    f_x = float((a * x).sum() + 50.0)
    perfect = (a * (x - m)).reshape(vol.shape)  # each voxel's exact contribution against the mean baseline
    target = Target("class", 0, "a")
    steps = 10
    counts = step_counts(x.size, steps)
    fr = counts / x.size
    res = deletion_insertion(model, vol, perfect, target, steps=steps, baseline="mean", score="logit", batch_size=3)
    order = np.argsort(-perfect.ravel(), kind="stable")
    dele, ins = expected_curves(x, a, m, f_x, order, counts)
    np.testing.assert_allclose(res["deletion_curve"], dele, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(res["insertion_curve"], ins, rtol=1e-4, atol=1e-4)
    assert res["deletion_auc"] == pytest.approx(auc(fr, dele), abs=1e-4)
    assert res["curve_fractions"][0] == 0.0 and res["curve_fractions"][-1] == 1.0
    rev = deletion_insertion(model, vol, -perfect, target, steps=steps, baseline="mean", score="logit")
    assert res["deletion_auc"] < res["deletion_auc_random"] < rev["deletion_auc"]
    assert res["insertion_auc"] > res["insertion_auc_random"] > rev["insertion_auc"]
    # every point is the greedy optimum: no order deletes faster than the exact contributions
    assert np.all(np.asarray(res["deletion_curve"]) <= np.asarray(rev["deletion_curve"]) + 1e-6)


def test_probability_score_and_batching_do_not_change_the_curves() -> None:
    vol = Volume(np.random.default_rng(2).random((1, 1, 8, 9)).astype(np.float32), make_ijk_to_ras((1.5, 0.6, 1)))
    model, a = linear_model((8, 9), bias=0.5)
    heat = np.random.default_rng(3).normal(size=vol.shape)
    r1 = deletion_insertion(model, vol, heat, steps=6, baseline="noise", batch_size=1)
    r8 = deletion_insertion(model, vol, heat, steps=6, baseline="noise", batch_size=8)
    np.testing.assert_allclose(r1["deletion_curve"], r8["deletion_curve"], atol=1e-6)
    assert r1["faithfulness_settings"]["forward_passes"] == 2 + 4 * 5  # input, baseline, 5 inner steps × 4 curves
    p = torch.sigmoid(torch.tensor(r1["score_input"])).item()
    assert 0 < r1["score_input"] < 1 and p  # probabilities, not logits
    assert r1["deletion_curve"][0] == 1.0 and r1["insertion_curve"][-1] == 1.0


def test_blur_baseline_has_its_sigma_in_millimetres_on_anisotropic_grids() -> None:
    spacing = np.array([2.5, 1.0, 0.5])  # k, j, i in mm
    x = torch.zeros(1, 1, 41, 61, 81)
    x[0, 0, 20, 30, 40] = 1.0
    base = make_baseline(x, "blur", spacing, blur_sigma_mm=4.0)[0, 0].numpy().astype(np.float64)
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(base.shape, (20, 30, 40), spacing)], indexing="ij")
    w = base / base.sum()
    for g in grids:  # the physical standard deviation is 4 mm along every axis
        assert np.sqrt((w * g**2).sum()) == pytest.approx(4.0, rel=0.03)
    ref = ndimage.gaussian_filter(x[0, 0].numpy().astype(np.float64), sigma=4.0 / spacing, mode="nearest")
    np.testing.assert_allclose(base, ref, atol=1e-6)


def test_supervoxel_cubes_are_millimetres_and_cuts_snap_to_them() -> None:
    labels = cube_labels((10, 12, 20), np.array([2.5, 1.0, 0.5]), 5.0)
    assert len(np.unique(labels)) == 5 * 3 * 2  # 25 mm / 5, 12 mm / 5 → 3, 10 mm / 5
    assert len(np.unique(labels[:, 0, 0])) == 5 and len(np.unique(labels[0, 0, :])) == 2
    model = tiny_unet_model(channels=2)
    vol = oblique_volume(channels=2, shape=(8, 12, 10))
    heat = np.random.default_rng(0).random(vol.shape)
    res = deletion_insertion(model, vol, heat, steps=5, unit="supervoxel", supervoxel_mm=6.0, baseline="mean")
    assert res["curve_fractions"] == sorted(res["curve_fractions"]) and res["curve_fractions"][-1] == 1.0
    assert 0.0 <= res["deletion_auc"] <= 2.0 and res["faithfulness_settings"]["unit"] == "supervoxel"


def test_bad_options_are_refused() -> None:
    vol = Volume(np.ones((1, 1, 4, 4), np.float32))
    model, _ = linear_model((4, 4))
    with pytest.raises(InputError, match="baseline"):
        deletion_insertion(model, vol, np.ones(vol.shape), baseline="zeros")
    with pytest.raises(InputError, match="shape"):
        deletion_insertion(model, vol, np.ones((1, 4, 5)))
