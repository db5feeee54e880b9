"""Occlusion: equal to captum's ``Occlusion`` (same window/stride/baseline), mm windows, geometry and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from MedXAILib.errors import MethodError
from MedXAILib.explain import explain
from MedXAILib.explain.base import ExplainContext, get_method
from MedXAILib.explain.perturbation import model_grid_spacing, occlusion_map
from MedXAILib.models import Model
from MedXAILib.models.description import ModelDescription
from MedXAILib.targets import resolve_target
from MedXAILib.volume import Volume, make_ijk_to_ras


def classifier(dims: int, channels: int = 2, seed: int = 0) -> Model:
    """A tiny conv classifier (3 classes, softmax), cam layer ``features.2``."""
    torch.manual_seed(seed)
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    pool = nn.AdaptiveAvgPool3d if dims == 3 else nn.AdaptiveAvgPool2d
    net = nn.Sequential()
    features = nn.Sequential(conv(channels, 6, 3, padding=1), nn.ReLU(), conv(6, 8, 3, padding=1), nn.ReLU())
    net.add_module("features", features)
    net.add_module("pool", pool(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(8, 3))
    desc = ModelDescription(
        name=f"tiny-cls-{dims}d", task="classification", spatial_dims=dims,
        channel_names=[f"c{i}" for i in range(channels)], class_names=["a", "b", "c"], cam_layer="features.2",
    )
    return Model(net, desc)


def unet(seed: int = 0, target_spacing: list[float] | None = None) -> Model:
    """A tiny MONAI 3D UNet (2 channels, 3 classes, channels 4–16)."""
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    kwargs = {"spatial_dims": 3, "in_channels": 2, "out_channels": 3, "channels": (4, 8, 16), "strides": (2, 2),
              "num_res_units": 1}
    desc = ModelDescription(
        name="tiny-unet", task="segmentation", spatial_dims=3, channel_names=["t1", "flair"],
        class_names=["background", "core", "oedema"], architecture={"name": "UNet", "kwargs": kwargs},
        cam_layer="model.1.submodule.0",
        preprocessing={"target_spacing": target_spacing} if target_spacing else {},
    )
    return Model(UNet(**kwargs), desc)


def volume(shape_kji: tuple[int, int, int], channels: int, spacing_ijk=(1.0, 1.0, 1.0), oblique: bool = False,
           seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    arr = rng.normal(size=(channels,) + shape_kji).astype(np.float32)
    direction = None
    if oblique:
        a = np.deg2rad(20)
        direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.array(
            [[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]]
        )
    return Volume(arr, make_ijk_to_ras(spacing_ijk, (10.0, -5.0, 3.0), direction))


def context(model: Model, vol: Volume, **target_kw) -> ExplainContext:
    target = resolve_target(model, vol, **target_kw)
    return ExplainContext(model, model.prepare(vol), target)


def captum_occlusion(model: Model, ctx: ExplainContext, window, stride, baseline: float, per_channel: bool):
    from captum.attr import Occlusion

    def f(x: torch.Tensor) -> torch.Tensor:
        return ctx.score_of_logits(model.forward(x))

    c = ctx.x.shape[1]
    win = ((1,) if per_channel else (c,)) + tuple(window)
    st = ((1,) if per_channel else (c,)) + tuple(stride)
    with torch.no_grad():
        att = Occlusion(f).attribute(ctx.x, sliding_window_shapes=win, strides=st, baselines=baseline,
                                     perturbations_per_eval=4)
    return att[0] if per_channel else att[0, :1]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("per_channel", [False, True])
def test_equals_captum_2d_classifier(per_channel: bool) -> None:
    model = classifier(2)
    ctx = context(model, volume((1, 24, 24), 2), label="b")
    ours, details = occlusion_map(ctx, (6, 6), (3, 3), baseline=0.0, batch_size=5, per_channel=per_channel)
    ref = captum_occlusion(model, ctx, (6, 6), (3, 3), 0.0, per_channel)
    assert ours.shape == ref.shape
    assert rel_err(ours, ref) < 1e-4
    assert details["masked_passes"] == (2 if per_channel else 1) * 7 * 7


def test_equals_captum_3d_unet_region_with_uneven_windows() -> None:
    """Evenly tiled windows, and windows cut at the edge (grid 12, window 5, stride 4) — both equal captum's."""
    model = unet()
    vol = volume((12, 12, 12), 2)
    region = np.zeros((12, 12, 12), bool)
    region[4:10, 5:11, 6:11] = True
    ctx = context(model, vol, label="core", region=region)
    for window, stride in (((6, 6, 6), (3, 3, 3)), ((5, 5, 5), (4, 4, 4))):
        ours, _ = occlusion_map(ctx, window, stride, baseline=0.5, batch_size=8)
        ref = captum_occlusion(model, ctx, window, stride, 0.5, False)
        assert rel_err(ours, ref) < 1e-4, window


def test_skipped_background_windows_keep_the_map_exact() -> None:
    model = unet()
    vol = volume((16, 16, 16), 2)
    vol.array[:, :8] = 0.0  # zero background in the lower half
    ctx = context(model, vol, voxel=(8, 8, 12))
    fast, d_fast = occlusion_map(ctx, (8, 8, 8), (8, 8, 8), baseline=0.0, skip_unchanged=True)
    slow, d_slow = occlusion_map(ctx, (8, 8, 8), (8, 8, 8), baseline=0.0, skip_unchanged=False)
    assert d_fast["windows_skipped_unchanged"] == 4 and d_fast["masked_passes"] == 4
    assert d_slow["masked_passes"] == 8
    assert rel_err(fast, slow) < 1e-5
    assert rel_err(fast, captum_occlusion(model, ctx, (8, 8, 8), (8, 8, 8), 0.0, False)) < 1e-4


def test_windows_in_millimetres_follow_the_model_grid_spacing() -> None:
    """Input spacing (i, j, k) = (1, 1, 2) mm resampled to a 2 mm model grid: a 8 mm window is 4 model voxels."""
    model = unet(target_spacing=[2.0, 2.0, 2.0])
    vol = volume((16, 32, 32), 2, spacing_ijk=(1.0, 1.0, 2.0))
    prepared = model.prepare(vol)
    assert tuple(prepared.grid.model_shape) == (16, 16, 16)
    assert np.allclose(model_grid_spacing(prepared, 3), [2.0, 2.0, 2.0])
    e = explain(model, vol, "occlusion", voxel=(16, 16, 8), params={"window_mm": [8.0], "stride_mm": [8.0]})
    assert e.details["window_voxels"] == [4, 4, 4] and e.details["stride_voxels"] == [4, 4, 4]
    assert e.cost.forward_passes >= 1 + 64 - e.details["windows_skipped_unchanged"]


def test_geometry_oblique_anisotropic_3d_and_2d() -> None:
    model = unet(target_spacing=[2.0, 1.5, 1.5])
    vol = volume((10, 21, 19), 2, spacing_ijk=(1.2, 0.9, 2.6), oblique=True)
    e = explain(model, vol, "occlusion", label="core", region=np.ones(vol.shape, bool),
                params={"window_mm": [12.0], "stride_mm": [12.0], "per_channel": True})
    assert e.heatmap.shape == vol.shape and e.heatmap.same_geometry(vol)
    assert e.channel_maps is not None and e.channel_maps.array.shape == (2,) + vol.shape
    assert set(e.channel_importance["overall"]) == {"t1", "flair"}
    assert np.isfinite(e.heatmap.array).all() and np.abs(e.heatmap.array).max() > 0

    model2 = classifier(2, channels=1)
    img = volume((1, 30, 26), 1, spacing_ijk=(0.7, 0.5, 1.0))
    e2 = explain(model2, img, "occlusion", label="a", params={"window_mm": [3.0], "stride_mm": [2.0]})
    assert e2.heatmap.shape == img.shape and e2.heatmap.same_geometry(img)


def test_refusals() -> None:
    model = classifier(2, channels=1)
    img = volume((1, 16, 16), 1)
    with pytest.raises(MethodError, match="window_mm"):
        explain(model, img, "occlusion", label="a", params={"window_mm": [1.0, 2.0, 3.0]})
    with pytest.raises(MethodError, match="positive"):
        explain(model, img, "occlusion", label="a", params={"stride_mm": [-1.0]})
    with pytest.raises(MethodError, match="no parameter"):
        explain(model, img, "occlusion", label="a", params={"windw": 3})
    with pytest.raises(MethodError, match="batch_size"):
        explain(model, img, "occlusion", label="a", params={"batch_size": 0})


def test_dry_run_passes() -> None:
    model = classifier(2, channels=1)
    img = volume((1, 16, 16), 1)
    m = get_method("occlusion")
    prepared = model.prepare(img)
    params = {**m.params, "window_mm": [4.0], "stride_mm": [4.0]}
    assert m.passes(model, prepared, params) == (17, 0)
