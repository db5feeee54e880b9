"""Control maps: the seeded random map and the edge map — reproducible, model-free, in the input's geometry."""

from __future__ import annotations

import numpy as np
import pytest
from test_explain_occlusion import classifier, unet, volume

from MedXAILib.errors import MethodError
from MedXAILib.explain import explain
from MedXAILib.explain.base import get_method
from MedXAILib.explain.baselines import edge_map, random_map
from MedXAILib.volume import Volume, make_ijk_to_ras


def lag1_correlation(a: np.ndarray) -> float:
    return float(np.corrcoef(a[..., :-1].ravel(), a[..., 1:].ravel())[0, 1])


def test_random_map_is_seeded_and_costs_no_pass() -> None:
    model = classifier(2, channels=1)
    img = volume((1, 24, 20), 1)
    a = explain(model, img, "random", label="a", params={"seed": 3})
    b = explain(model, img, "random", label="a", params={"seed": 3})
    c = explain(model, img, "random", label="a", params={"seed": 4})
    assert np.array_equal(a.heatmap.array, b.heatmap.array)
    assert not np.array_equal(a.heatmap.array, c.heatmap.array)
    assert a.cost.forward_passes == 0 and a.cost.backward_passes == 0
    assert 0 <= a.heatmap.array.min() and a.heatmap.array.max() <= 1
    assert get_method("random").passes(model, model.prepare(img), {}) == (0, 0)


def test_smoothed_random_map_has_blobs_of_the_requested_size() -> None:
    spacing = np.array([2.0, 1.0, 1.0])
    white = random_map((16, 32, 32), spacing, seed=0)
    smooth = random_map((16, 32, 32), spacing, seed=0, smooth_mm=3.0)
    assert abs(lag1_correlation(white)) < 0.05
    assert lag1_correlation(smooth) > 0.9
    assert smooth.min() == 0.0 and smooth.max() == 1.0


def test_edge_map_peaks_at_a_step_in_millimetres() -> None:
    x = np.zeros((2, 1, 20, 30), dtype=np.float32)
    x[:, :, :, 15:] = 1.0  # a unit step along i between columns 14 and 15
    spacing = np.array([1.0, 1.0, 2.0])
    e = edge_map(x, spacing, sigma_mm=2.0)
    assert set(np.argmax(e[0], axis=1)) <= {14, 15}
    # two channels, each a unit step between voxel centres 2 mm apart, smoothed by σ = 1 voxel: the sampled peak is
    # ≈ 2 × (Φ(½) − Φ(−½)) / 2 mm = 0.383 per mm (scipy's discrete derivative kernel gives a few % less)
    assert e.max() == pytest.approx(0.383, rel=0.1)


@pytest.mark.parametrize("method", ["random", "edges"])
def test_geometry_oblique_anisotropic_3d_and_2d(method: str) -> None:
    model = unet(target_spacing=[2.0, 1.5, 1.5])
    vol = volume((10, 21, 19), 2, spacing_ijk=(1.2, 0.9, 2.6), oblique=True)
    e = explain(model, vol, method, label="core", region=np.ones(vol.shape, bool))
    assert e.heatmap.shape == vol.shape and e.heatmap.same_geometry(vol)
    assert e.cost.forward_passes == 0 and np.isfinite(e.heatmap.array).all()

    img = Volume(np.random.default_rng(0).random((1, 1, 30, 26), dtype=np.float32),
                 make_ijk_to_ras((0.7, 0.5, 1.0), (1.0, 2.0, 0.0)))
    e2 = explain(classifier(2, channels=1), img, method, label="a", params={})
    assert e2.heatmap.shape == img.shape and e2.heatmap.same_geometry(img)


def test_refusals() -> None:
    model = classifier(2, channels=1)
    img = volume((1, 16, 16), 1)
    with pytest.raises(MethodError, match="smooth_mm"):
        explain(model, img, "random", label="a", params={"smooth_mm": -1.0})
    with pytest.raises(MethodError, match="sigma_mm"):
        explain(model, img, "edges", label="a", params={"sigma_mm": 0.0})
    with pytest.raises(MethodError, match="no parameter"):
        explain(model, img, "random", label="a", params={"sed": 1})


CHEAP = {
    "random": {"smooth_mm": 20.0},
    "edges": {},
    "occlusion": {"window_mm": [256.0], "stride_mm": [256.0]},
    "scorecam": {"top_k": 3, "error_samples": 1},
    "ig": {"steps": 4},
    "saliency": {"smoothgrad_samples": 2},
    "gradientshap": {"n_samples": 2},
}


@pytest.mark.parametrize("method", sorted(CHEAP))
def test_every_method_real_nih_chest_xray_geometry(test_data_dir, method: str) -> None:
    """A real 1024² NIH ChestX-ray14 image through a 64² classifier: each map comes back at 1024² in its geometry."""
    from MedXAILib.io import read_image
    from MedXAILib.models import Model
    from MedXAILib.models.description import ModelDescription

    img = read_image(test_data_dir / "nih-chestxray14" / "images" / "00000075_000.png")
    img = img.with_array(img.array.astype(np.float32))
    base = classifier(2, channels=1)
    d = base.description
    desc = ModelDescription(name=d.name, task=d.task, spatial_dims=2, channel_names=d.channel_names,
                            class_names=d.class_names, cam_layer=d.cam_layer,
                            preprocessing={"normalize": "minmax", "input_size": [64, 64]})
    e = explain(Model(base.network, desc), img, method, label="b", params=CHEAP[method])
    assert e.heatmap.shape == img.shape and e.heatmap.same_geometry(img)
    assert np.isfinite(e.heatmap.array).all() and np.abs(e.heatmap.array).max() > 0
