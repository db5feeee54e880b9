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
    # the prediction behind the default target is the CAM's own forward pass: one forward, one backward (the tail)
    assert e.cost.forward_passes == 1 and e.cost.backward_passes == 1 and e.details["forward_reused"]
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


class Pointwise(torch.nn.Module):
    """A segmenter without spatial mixing (1×1×1 convolutions): its sliding-window function is one whole-grid pass."""

    def __init__(self, channels: int = 2, hidden: int = 6, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = torch.nn.Conv3d(channels, hidden, 1)
        self.act = torch.nn.Tanh()
        self.conv2 = torch.nn.Conv3d(hidden, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))


def _pointwise_model():
    from MedXAILib.models import Model, ModelDescription

    desc = ModelDescription(name="pointwise", task="segmentation", spatial_dims=3, channel_names=["a", "b"],
                            class_names=["background", "l1", "l2"], cam_layer="conv1", patch_size=[8, 8, 8],
                            training={"divisible_by": 1})
    return Model(Pointwise(), desc)


def test_pointwise_network_windowed_cams_equal_the_whole_grid_maps():
    """Windowed function == one whole-grid pass (to 1e-6), so the exact (windowed) HiResCAM and LayerCAM equal the
    whole-grid maps computed by hand with autograd; Grad-CAM of the whole-grid pass equals captum's LayerGradCam."""
    captum_attr = pytest.importorskip("captum.attr")
    from cam_reference import hirescam, layercam, leaves_at

    model = _pointwise_model()
    vol = oblique_volume(shape=(12, 20, 18))
    region = np.zeros(vol.shape, bool)
    region[3:10, 4:15, 2:16] = True
    prepared = model.prepare(vol)
    x = prepared.tensor
    with torch.no_grad():
        windowed, whole = model.infer(x), model.network(x)
    assert model.window_plan(tuple(x.shape[2:])) is not None
    torch.testing.assert_close(windowed, whole, rtol=0, atol=1e-6)
    target_kwargs = {"label": "l1", "region": region}
    weights = explain(model, vol, "hirescam", **target_kwargs).target.weights(model, prepared)
    with leaves_at(model.network.conv1, model.network) as leaves, torch.enable_grad():
        (g,) = torch.autograd.grad((model.network(x) * weights).sum(), leaves)
    a = leaves[0].detach()
    for method, combine in (("hirescam", hirescam), ("layercam", layercam)):
        ref = combine(a, g)[0, 0].numpy()
        scale = float(np.abs(ref).max())
        for exact in ("true", "false"):
            e = explain(model, vol, method, params={"exact": exact}, **target_kwargs)
            np.testing.assert_allclose(e.heatmap.array[0], ref, rtol=0, atol=1e-5 * scale, err_msg=f"{method} {exact}")
    cam = captum_attr.LayerGradCam(lambda t: (model.network(t) * weights).flatten(1).sum(1), model.network.conv1)
    ref = cam.attribute(x).detach()[0, 0].numpy()
    ours = explain(model, vol, "gradcam", params={"exact": "false"}, **target_kwargs).heatmap.array[0]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * float(np.abs(ref).max()))


def test_bundle_cam_equals_autograd_through_its_own_batched_inferer(tmp_path):
    """A MONAI bundle whose SlidingWindowInferer batches 2 windows per network call (overlap 0.5, Gaussian): the CAM
    equals the definition computed with the bundle's own inferer (built by MONAI's ConfigParser from the file)."""
    from bundle_helpers import TINY_INFERENCE, TINY_METADATA, write_bundle
    from cam_reference import COMBINE, monai_reference
    from monai.bundle import ConfigParser

    from MedXAILib.models import load_model

    folder = write_bundle(tmp_path / "bundle", TINY_INFERENCE, TINY_METADATA)
    model = load_model(folder)
    vol = oblique_volume(channels=1, shape=(20, 28, 24))
    e = explain(model, vol, "hirescam")
    prepared = model.prepare(vol)
    assert e.details["network_calls"] < e.details["function"]["n_windows"]  # two windows per call
    inferer = ConfigParser(dict(TINY_INFERENCE)).get_parsed_content("inferer")
    ref = monai_reference(lambda t: inferer(inputs=t, network=model.network), model.network, model.layer(None),
                          prepared.tensor, e.target.weights(model, prepared), (16, 16, 16), 0.5, COMBINE["hirescam"])
    expected = model.to_input_grid(ref, prepared)[0]
    np.testing.assert_allclose(e.heatmap.array[0], expected, rtol=0, atol=2e-5 * float(np.abs(expected).max()))


def test_convolution_input_gradients_as_forward_convolutions_equal_autograd():
    """The tail's shortcut (:mod:`MedXAILib.explain.conv_adjoint`) against PyTorch's own backward, convolution by
    convolution: stride-1 (padding, dilation), transposed (stride 2, output padding), 2D and 3D; a strided
    convolution keeps PyTorch's backward."""
    from MedXAILib.explain.conv_adjoint import fast_input_gradients

    torch.manual_seed(0)
    layers = [torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.Conv3d(3, 4, (3, 1, 5), padding=(2, 0, 1), dilation=2),
              torch.nn.Conv3d(3, 8, 3, padding=1), torch.nn.Conv2d(3, 8, 3, padding=1),
              torch.nn.ConvTranspose3d(3, 4, 3, stride=2, padding=1, output_padding=1),
              torch.nn.ConvTranspose3d(3, 4, 2, stride=2), torch.nn.Conv2d(3, 4, 3, padding=1),
              torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1), torch.nn.Conv3d(3, 4, 3, stride=2, padding=1)]
    for layer in layers:
        layer.requires_grad_(False)
        shape = (2, 3, 9, 10, 11) if isinstance(layer, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) else (2, 3, 9, 10)
        x = torch.randn(shape, requires_grad=True)
        ref_out = torch.tanh(layer(x * 1.5))
        go = torch.randn_like(ref_out)
        (ref,) = torch.autograd.grad(ref_out, x, go)
        with fast_input_gradients(layer, lambda: True):
            out = torch.tanh(layer(x * 1.5))
            swapped = out.grad_fn.next_functions[0][0].name() == "_InputGradientBackward"
            (got,) = torch.autograd.grad(out, x, go)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        assert swapped == (layer.stride[0] == 1 or isinstance(layer, (torch.nn.ConvTranspose2d,
                                                                       torch.nn.ConvTranspose3d))), layer
