"""Counterfactual nodes against real MRML (the ``slicer-core`` wheel): volumes per channel, the difference map and a
sequence with a browser over the progressive series."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "MedXAI"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

slicer = pytest.importorskip("slicer")
from MedXAILogicLib import bridge, counterfactual  # noqa: E402

from MedXAILib.volume import Volume, make_ijk_to_ras  # noqa: E402


@pytest.fixture
def scene():
    s = slicer.vtkMRMLScene()
    logic = slicer.vtkMRMLColorLogic()
    logic.SetMRMLScene(s)
    s._medxai_color_logic = logic
    return s


def test_counterfactual_difference_and_series_become_nodes(scene):
    rng = np.random.default_rng(0)
    geometry = make_ijk_to_ras(spacing=(0.9, 1.2, 2.5), origin=(-10.0, 4.0, 7.5))
    image = Volume(rng.normal(size=(2, 5, 6, 7)).astype(np.float32), geometry, ["t1", "flair"])
    reference = bridge.add_volume_node(scene, image, "input", channel=0)
    change = np.zeros_like(image.array)
    change[:, 2:4, 2:4, 2:4] = -1.5
    series = [image.with_array(image.array + f * change) for f in (0.25, 0.5, 1.0)]
    cf = series[-1]
    diff = image.with_array((cf.array - image.array).sum(0, keepdims=True), channel_names=["relevance"])
    out = counterfactual.add_counterfactual_nodes(scene, reference, cf, diff, series, name="cf")
    assert [n.GetName() for n in out["counterfactual"]] == ["cf t1", "cf flair"]
    for c, node in enumerate(out["counterfactual"]):
        back = bridge.node_to_volume(node)
        np.testing.assert_allclose(back.array[0], cf.array[c], atol=1e-6)
        np.testing.assert_allclose(back.ijk_to_ras, geometry, atol=1e-6)
    d = bridge.node_to_volume(out["difference"])
    np.testing.assert_allclose(d.array, diff.array, atol=1e-6)
    display = out["difference"].GetDisplayNode()
    assert display.GetColorNode().GetName() == counterfactual.DIFFERENCE_COLOR_NODE_NAME
    assert display.GetWindow() == pytest.approx(2 * np.abs(diff.array).max(), rel=1e-5)
    steps = out["series"]
    assert steps["sequence"].GetNumberOfDataNodes() == 3
    assert steps["browser"].GetMasterSequenceNode() is steps["sequence"]
    for k in (2, 0, 1):
        counterfactual.show_series_step(steps, k)
        assert steps["browser"].GetSelectedItemNumber() == k
        shown = bridge.node_to_volume(steps["proxy"])
        np.testing.assert_allclose(shown.array[0], series[k].array[1], atol=1e-6)  # the last channel (flair)
    counterfactual.show_series_step(steps, 99)
    assert steps["browser"].GetSelectedItemNumber() == 2


def test_sedc_results_have_no_series(scene):
    image = Volume(np.ones((1, 3, 4, 5), np.float32), make_ijk_to_ras())
    reference = bridge.add_volume_node(scene, image, "input")
    out = counterfactual.add_counterfactual_nodes(scene, reference, image, image.with_array(image.array * 0), ())
    assert out["series"] is None and len(out["counterfactual"]) == 1


def test_the_cli_outputs_load_as_nodes(scene, tmp_path):
    from MedXAILib.cli import main
    from MedXAILib.io import read_image, write_volume
    from MedXAILib.models import builtin_model_names
    from MedXAILib.phantoms import make_chest_phantom

    if "demo-chest-xray" not in builtin_model_names():
        pytest.skip("demo models not built")
    xray = write_volume(make_chest_phantom(3, size=96).image, tmp_path / "xray.nrrd")
    heat = tmp_path / "diff.nrrd"
    argv = ["explain", "--model", "demo-chest-xray", "--input", str(xray), "--method", "counterfactual", "--output",
            str(heat), "--counterfactual", str(tmp_path / "cf.nrrd"), "--series", str(tmp_path / "s"),
            "--progress", "none"]
    assert main(argv) == 0
    reference = bridge.add_volume_node(scene, read_image(xray), "xray")
    out = counterfactual.load_counterfactual_outputs(scene, reference, str(heat))
    np.testing.assert_allclose(bridge.node_to_volume(out["counterfactual"][0]).array,
                               read_image(tmp_path / "cf.nrrd").array, atol=1e-6)
    assert out["series"]["sequence"].GetNumberOfDataNodes() >= 2
