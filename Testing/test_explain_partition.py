"""shap: our KernelSHAP against shap.KernelExplainer; PartitionSHAP (shap.PartitionExplainer) in 2D and 3D; plots."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from test_explain_shapley import LinearClassifier, PointwiseSegmenter, classifier_model, oblique_volume, volume_2d

from MedXAILib.explain import explain
from MedXAILib.explain.partition import supervoxel_linkage
from MedXAILib.explain.shapley import kernel_shap, make_baseline
from MedXAILib.explain.supervoxels import grid_supervoxels
from MedXAILib.models import Model, ModelDescription

shap = pytest.importorskip("shap")


def game(m: int, seed: int = 1):
    """A small non-additive game on coalitions ``(S, m)``: linear + pair and triple interactions + sin(|z|)."""
    w = np.random.default_rng(seed).normal(size=m)

    def f(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        return z @ w + 0.8 * z[:, 0] * z[:, 1] - 0.5 * z[:, 2] * z[:, 3] * z[:, 4] + np.sin(z.sum(1))

    return f


def exact_shapley(f, m: int) -> np.ndarray:
    """Shapley values by the subset formula over all 2^m coalitions."""
    allz = np.array(list(itertools.product((0, 1), repeat=m)), dtype=np.float64)
    value = dict(zip(map(tuple, allz.astype(int)), f(allz)))
    phi = np.zeros(m)
    for z, v in value.items():
        s = sum(z)
        for i in (i for i in range(m) if z[i] == 0):
            with_i = z[:i] + (1,) + z[i + 1:]
            phi[i] += math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) * (value[with_i] - v)
    return phi


def shap_kernel(f, m: int, nsamples: int, seed: int) -> np.ndarray:
    np.random.seed(seed)  # shap.KernelExplainer samples with numpy's global generator
    values = shap.KernelExplainer(f, np.zeros((1, m))).shap_values(np.ones((1, m)), nsamples=nsamples, silent=True)
    return np.asarray(values, dtype=np.float64).reshape(-1)


def test_kernelshap_equals_shap_kernel_explainer_when_exact() -> None:
    f, m = game(8), 8
    ours, details = kernel_shap(lambda z, progress=None: f(z), m, 300, seed=0)
    assert details["exact_enumeration"]
    np.testing.assert_allclose(ours, exact_shapley(f, m), atol=1e-10)
    np.testing.assert_allclose(ours, shap_kernel(f, m, 300, 0), atol=1e-10)


def test_kernelshap_matches_shap_kernel_explainer_within_sampling_error() -> None:
    """300 of the 1022 coalitions of a 10-player game, 20 seeds each: the two estimators' means agree within
    4.5 standard errors for every player, and each mean is within 4.5 of its own standard errors of the exact value."""
    f, m, n, seeds = game(10), 10, 300, 20
    ours = np.array([kernel_shap(lambda z, progress=None: f(z), m, n, seed=s, ridge=0.0)[0] for s in range(seeds)])
    theirs = np.array([shap_kernel(f, m, n, s) for s in range(seeds)])
    se_ours = ours.std(0, ddof=1) / np.sqrt(seeds)
    se_theirs = theirs.std(0, ddof=1) / np.sqrt(seeds)
    z = (ours.mean(0) - theirs.mean(0)) / np.sqrt(se_ours**2 + se_theirs**2)
    assert np.all(np.abs(z) < 4.5), z
    truth = exact_shapley(f, m)
    assert np.all(np.abs(ours.mean(0) - truth) < 4.5 * se_ours + 1e-3)
    assert np.all(np.abs(theirs.mean(0) - truth) < 4.5 * se_theirs + 1e-3)
    assert np.abs(ours - truth).max() < 0.25  # one run's error, for scale (|phi| up to 1.5)


def test_supervoxel_linkage_is_a_valid_spatial_tree() -> None:
    from scipy.cluster.hierarchy import is_valid_linkage

    labels = grid_supervoxels((12, 12), (1.0, 1.0), 4.0)  # 3 × 3 squares
    tree = supervoxel_linkage(labels, (1.0, 1.0))
    assert tree.shape == (8, 4) and is_valid_linkage(tree) and tree[-1, 3] == 9
    both = supervoxel_linkage(labels, (1.0, 1.0), n_channels=2, per_channel=True)
    assert both.shape == (17, 4) and is_valid_linkage(both) and both[-1, 3] == 18
    # each supervoxel's two channel features are joined first
    assert {(int(a), int(b)) for a, b, *_ in both[:9]} == {(s, s + 9) for s in range(9)}


def test_partitionshap_2d_linear_model_equals_closed_form() -> None:
    """For a linear score, Owen values are each supervoxel's contribution Σ_v w_v (x_v − b_v), b = the blurred x."""
    vol = volume_2d(12, seed=2)
    net = LinearClassifier((1, 12, 12))
    model = classifier_model(net)
    params = {"segmentation": "grid", "supervoxel_mm": 4.0, "n_samples": 200, "blur_mm": 2.0}
    e = explain(model, vol, "partitionshap", label="a", params=params)
    prepared = model.prepare(vol)
    x = prepared.tensor
    b = make_baseline(x, "blur", (1.0, 1.0), 2.0)
    contrib = (net.weight[0:1] * (x - b)).detach().numpy()[0, 0]
    labels = grid_supervoxels((12, 12), (1.0, 1.0), 4.0)
    truth = np.bincount(labels.ravel(), weights=contrib.ravel().astype(np.float64))
    np.testing.assert_allclose(e.details["feature_values"], truth, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(e.heatmap.array[0, 0], truth[labels], rtol=1e-4, atol=1e-4)
    assert e.details["efficiency_gap_relative"] < 1e-6 and e.details["baseline"] == "blur"


def test_partitionshap_3d_region_per_sequence_and_shap_plot(tmp_path) -> None:
    from MedXAILib.figures.shap_plots import feature_tables, shap_figure

    model = Model(PointwiseSegmenter(2, 3), ModelDescription(
        name="pw", task="segmentation", spatial_dims=3, channel_names=["t1", "flair"],
        class_names=["background", "x", "y"], training={"divisible_by": 1}))
    vol = oblique_volume()
    region = np.zeros(vol.shape, bool)
    region[2:6, 2:9, 3:9] = True
    with torch.no_grad():
        e = explain(model, vol, "partitionshap", label="x", region=region,
                    params={"n_samples": 120, "segmentation": "grid", "supervoxel_mm": 12.0,
                            "per_channel_groups": True})
    d = e.details
    assert d["efficiency_gap_relative"] < 1e-5
    assert d["n_features"] == 2 * d["n_supervoxels"] and e.channel_maps is not None
    assert e.heatmap.same_geometry(vol) and e.heatmap.array.shape == (1,) + vol.shape
    values, names, per_sequence = feature_tables(e, ["t1", "flair"])
    assert set(per_sequence) == {"t1", "flair"} and len(values) == d["n_supervoxels"]
    assert sum(per_sequence.values()) == pytest.approx(d["sum_attributions"], rel=1e-9, abs=1e-9)
    out = shap_figure(tmp_path / "shap.png", e, ["t1", "flair"])
    assert out.stat().st_size > 10_000


def test_explain_command_writes_the_shap_plot_and_states_conventions(tmp_path) -> None:
    import json

    from helpers import save_model, tiny_classifier

    from MedXAILib.cli import main
    from MedXAILib.io import write_volume
    from MedXAILib.volume import Volume, make_ijk_to_ras

    folder = save_model(tiny_classifier(), tmp_path / "model")
    img = tmp_path / "x.nrrd"
    write_volume(Volume(np.random.default_rng(0).random((1, 1, 32, 32)).astype(np.float32),
                        make_ijk_to_ras((1.0, 1.0, 1.0))), img)
    out, png = tmp_path / "h.nrrd", tmp_path / "shap.png"
    argv = ["explain", "--model", str(folder), "--input", str(img), "--method", "partitionshap", "--param",
            "n_samples=40", "--param", "segmentation=grid", "--param", "supervoxel_mm=8", "--output", str(out),
            "--shap-plot", str(png), "--progress", "none"]
    assert main(argv) == 0
    assert png.stat().st_size > 10_000
    side = json.loads((tmp_path / "h.nrrd.json").read_text())
    assert side["conventions"]["map_resampling"] == "interpolate" and len(side["details"]["feature_values"]) == 16
    assert main(argv[:5] + ["--method", "gradcam", "--output", str(out), "--shap-plot", str(png)]) == 2


def brute_force_owen(f, linkage_matrix: np.ndarray, m: int) -> np.ndarray:
    """Owen values of a binary hierarchy by their definition: for player i, the mean over every choice of which
    sibling groups along its path from the root are present (each level: absent or present, probability 1/2) of
    its marginal contribution f(C ∪ {i}) − f(C)."""
    from scipy.cluster.hierarchy import to_tree

    root = to_tree(linkage_matrix)

    def path(node, i, siblings):
        if node.is_leaf():
            return siblings if node.id == i else None
        for child, other in ((node.left, node.right), (node.right, node.left)):
            found = path(child, i, siblings + [other.pre_order()])
            if found is not None:
                return found
        return None

    phi = np.zeros(m)
    for i in range(m):
        groups = path(root, i, [])
        total = 0.0
        for choice in itertools.product((0, 1), repeat=len(groups)):
            z = np.zeros(m)
            for present, group in zip(choice, groups):
                z[group] = present
            with_i = z.copy()
            with_i[i] = 1
            total += float(f(with_i[None])[0] - f(z[None])[0])
        phi[i] = total / 2 ** len(groups)
    return phi


def test_partitionshap_full_budget_equals_shap_and_the_owen_values():
    """With the budget the full expansion needs, our run is complete and equals shap's PartitionExplainer (called
    directly with a generous budget) and the Owen values by their definition; with less it says it is truncated."""
    from scipy.cluster.hierarchy import linkage

    from MedXAILib.explain.partition import owen_evaluations_needed, partition_shap

    m = 7
    f = game(m, seed=3)
    tree = linkage(np.random.default_rng(2).random((m, 3)), "ward")
    needed = owen_evaluations_needed(tree, m)
    ours, d = partition_shap(lambda z: f(z), m, tree, needed, batch_size=4)
    assert d["complete"] and d["needed"] == needed and d["evaluations"] == needed and d["truncated"] is None
    explainer = shap.PartitionExplainer(f, shap.maskers.Partition(np.zeros((1, m)), clustering=tree))
    theirs = np.asarray(explainer(np.ones((1, m)), max_evals=10 * needed, silent=True).values).reshape(-1)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    np.testing.assert_allclose(ours, brute_force_owen(f, tree, m), atol=1e-12)
    short, ds = partition_shap(lambda z: f(z), m, tree, needed // 2, batch_size=4)
    assert not ds["complete"] and ds["evaluations"] < needed and "not the Owen values" in ds["truncated"]
    assert np.abs(short - ours).max() > 1e-3


def test_partitionshap_default_budget_is_the_full_expansion_when_it_fits_the_time():
    vol = volume_2d(12, seed=2)
    model = classifier_model(LinearClassifier((1, 12, 12)))
    params = {"segmentation": "grid", "supervoxel_mm": 4.0}
    full = explain(model, vol, "partitionshap", label="a", params=params).details
    assert full["complete"] and full["evaluations"] == full["needed"] and "fits" in full["budget_rule"]
    short = explain(model, vol, "partitionshap", label="a", params={**params, "max_seconds": "1e-9"}).details
    assert not short["complete"] and short["truncated"] and "more than max_seconds" in short["budget_rule"]
    assert short["evaluations"] < short["needed"] == full["needed"]
