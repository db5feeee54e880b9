"""The CAM family: equal to captum's LayerGradCam, finite in 3D, maps in the input geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import oblique_volume, tiny_classifier, tiny_unet_model

from MedXAILib.errors import MethodError, TargetError
from MedXAILib.explain import explain
from MedXAILib.volume import Volume, make_ijk_to_ras

CAMS = ["gradcam", "gradcampp", "hirescam", "layercam"]


def test_gradcam_equals_captum_layergradcam_on_a_classifier():
    captum_attr = pytest.importorskip("captum.attr")
    model = tiny_classifier()
    vol = Volume(np.random.default_rng(1).random((1, 1, 64, 64)).astype(np.float32), make_ijk_to_ras((0.5, 0.5, 1)))
    ours = explain(model, vol, "gradcam", label="f1").heatmap.array[0, 0]
    x = model.prepare(vol).tensor
    lgc = captum_attr.LayerGradCam(model.network, model.network.layer4)
    ref = lgc.attribute(x, target=1)
    ref = captum_attr.LayerAttribution.interpolate(ref, (64, 64), interpolate_mode="bilinear")[0, 0].detach().numpy()
    scale = np.abs(ref).max()
    assert scale > 0
    np.testing.assert_allclose(ours, ref, atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize("method", CAMS)
def test_cams_on_3d_segmentation_keep_geometry_and_are_finite(method):
    model = tiny_unet_model()
    vol = oblique_volume()
    e = explain(model, vol, method)
    assert e.heatmap.shape == vol.shape
    np.testing.assert_array_equal(e.heatmap.ijk_to_ras, vol.ijk_to_ras)
    assert np.isfinite(e.heatmap.array).all()
    assert e.cost.forward_passes == 2 and e.cost.backward_passes == 1  # prediction for the default target + CAM
    assert e.cost.seconds > 0


def test_gradcampp_has_no_nan_where_gradients_vanish():
    from MedXAILib.explain.cam import gradcampp_weights

    acts = torch.rand(1, 4, 3, 3, 3)
    grads = torch.zeros(1, 4, 3, 3, 3)
    grads[0, 1, 0, 0, 0] = 1e-3
    w = gradcampp_weights(acts, grads)
    assert torch.isfinite(w).all()
    assert w[0, 0].item() == 0 and w[0, 1].item() > 0


def test_region_and_voxel_targets():
    model = tiny_unet_model()
    vol = oblique_volume()
    region = np.zeros(vol.shape, bool)
    region[4:8, 5:10, 5:9] = True
    e = explain(model, vol, "gradcam", label=1, region=region)
    assert e.target.kind == "region" and e.target.class_index == 1
    v = explain(model, vol, "gradcam", voxel=(3, 4, 5), label="l2")
    assert v.target.kind == "voxel" and v.target.voxel == (3, 4, 5)
    assert not np.allclose(e.heatmap.array, v.heatmap.array)


def test_empty_region_and_unknown_label_are_refused():
    model = tiny_unet_model()
    vol = oblique_volume()
    with pytest.raises(TargetError, match="empty"):
        explain(model, vol, "gradcam", label=1, region=np.zeros(vol.shape, bool))
    with pytest.raises(TargetError, match="no class 'tumour'"):
        explain(model, vol, "gradcam", label="tumour")
    with pytest.raises(TargetError, match="outside"):
        explain(model, vol, "gradcam", voxel=(100, 0, 0), label=1)


def test_unknown_layer_and_parameter():
    model = tiny_classifier()
    vol = Volume(np.random.rand(1, 1, 32, 32).astype(np.float32))
    with pytest.raises(Exception, match="no layer 'nope'"):
        explain(model, vol, "gradcam", params={"layer": "nope"})
    with pytest.raises(MethodError, match="no parameter"):
        explain(model, vol, "gradcam", params={"steps": "3"})


def test_classification_target_on_2d_geometry():
    model = tiny_classifier(input_size=[32, 32])
    vol = Volume(np.random.rand(1, 1, 40, 50).astype(np.float32), make_ijk_to_ras((0.3, 0.2, 1), (5, 6, 0)))
    e = explain(model, vol, "gradcam")
    assert e.heatmap.array.shape == (1, 1, 40, 50)
    np.testing.assert_array_equal(e.heatmap.ijk_to_ras, vol.ijk_to_ras)
    norm = e.normalized().array
    assert norm.min() >= 0 and norm.max() <= 1


def test_windowed_explanation_stitches_to_the_input_geometry():
    from MedXAILib.explain.engine import sliding_windows

    model = tiny_unet_model()
    model.description.patch_size = [8, 12, 12]
    vol = oblique_volume(shape=(12, 20, 18))
    approx = {"exact": "false"}  # patches are an approximation of the sliding-window function
    whole = explain(model, vol, "gradcam", label=1, voxel=None, windowed=False, params=approx)
    win = explain(model, vol, "gradcam", label=1, windowed=True, params=approx)
    assert win.details["windowed"] and win.details["n_windows"] > 1
    assert win.heatmap.shape == vol.shape and np.isfinite(win.heatmap.array).all()
    np.testing.assert_array_equal(win.heatmap.ijk_to_ras, vol.ijk_to_ras)
    assert win.cost.backward_passes == win.details["n_windows"]
    assert whole.cost.backward_passes == 1
    windows = sliding_windows((12, 20, 18), (8, 12, 12))
    covered = np.zeros((12, 20, 18), bool)
    for w in windows:
        covered[w] = True
    assert covered.all()


def test_windowed_skips_patches_without_the_target():
    model = tiny_unet_model()
    model.description.patch_size = [8, 8, 8]
    vol = oblique_volume(shape=(16, 16, 16))
    e = explain(model, vol, "gradcam", voxel=(1, 1, 1), label=1, windowed=True, params={"exact": "false"})
    assert e.details["n_windows"] == 1  # only the corner window holds the voxel
