"""Results in 3D on real MRML (the ``slicer-core`` wheel): the prediction as surfaces, the heat map volume-rendered.

The heat map's transfer functions are set on its volume property *node*: the node then observes them, so an edit
of the functions (the Volume Rendering module's editor does exactly that) modifies the node, and its effective range
is the map's display range. Replacing the raw ``vtkVolumeProperty``'s functions, as before, left the node observing
the old ones: the edit did not reach it.

The application's Segmentations module registers the labelmap ↔ surface converter rules at startup; the wheel has
no application, so the test registers them the same way before any segmentation is made.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "MedXAI"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import slicer  # noqa: E402
import vtk  # noqa: E402
from MedXAILogicLib import bridge, display  # noqa: E402

from MedXAILib.volume import Volume  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def converter_rules():
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


@pytest.fixture
def scene() -> slicer.vtkMRMLScene:
    return slicer.vtkMRMLScene()


def test_show_prediction_in_3d(scene):
    reference = bridge.add_volume_node(scene, Volume(np.zeros((1, 10, 10, 10), np.float32)), "t1", channel=None)
    labels = np.zeros((10, 10, 10), np.int16)
    labels[2:7, 3:8, 2:6] = 1
    seg = bridge.labelmap_to_segmentation(scene, Volume(labels[None]), reference, {1: "tumour"})
    assert display.show_segmentation_3d(seg)
    assert seg.GetSegmentation().ContainsRepresentation("Closed surface")
    assert seg.GetDisplayNode().GetVisibility3D()
    bounds = [0.0] * 6
    seg.GetRASBounds(bounds)
    assert bounds[4] == pytest.approx(1.5, abs=0.6) and bounds[5] == pytest.approx(6.5, abs=0.6)
    display.show_segmentation_3d(seg, visible=False)
    assert not seg.GetDisplayNode().GetVisibility3D()


def test_volume_rendered_heatmap_is_transparent_where_not_relevant(scene):
    reference = bridge.add_volume_node(scene, Volume(np.zeros((1, 8, 8, 8), np.float32)), "t1", channel=None)
    heat = np.zeros((8, 8, 8), np.float32)
    heat[2:6, 2:6, 2:6] = np.linspace(0.1, 2.0, 64, dtype=np.float32).reshape(4, 4, 4)
    node = bridge.add_heatmap_node(scene, Volume(heat[None]), reference)
    logic = slicer.vtkSlicerVolumeRenderingLogic()
    logic.SetMRMLScene(scene)
    shown = display.volume_render_heatmap(logic, node, max_opacity=0.6)
    assert shown.GetVisibility() and shown.GetVolumeNode() is node
    property_node = shown.GetVolumePropertyNode()
    prop = property_node.GetVolumeProperty()
    low, high = bridge.display_range(heat)
    opacity = prop.GetScalarOpacity()
    assert opacity.GetValue(0.0) == 0.0 and opacity.GetValue(low + 0.01 * (high - low)) == 0.0
    assert opacity.GetValue(high) == pytest.approx(0.6)
    rgb = prop.GetRGBTransferFunction().GetColor(high)
    assert rgb[0] > 0.9 and rgb[1] > 0.9  # Inferno's light yellow at the top, as in the slice views
    # the node's own functions: editing them modifies the node, and its effective range is the display range
    assert property_node.GetScalarOpacity() is opacity and property_node.GetColor() is prop.GetRGBTransferFunction()
    assert property_node.GetEffectiveRange() == pytest.approx((low, high))
    modified = []
    property_node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: modified.append(event))
    opacity.AddPoint(0.5 * (low + high), 0.3)
    assert modified, "an edit of the opacity function did not reach the volume property node"
    # asking again reuses the display node and can hide it
    again = display.volume_render_heatmap(logic, node, visible=False)
    assert again is shown and not shown.GetVisibility()
