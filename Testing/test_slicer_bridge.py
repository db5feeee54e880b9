"""The MRML bridge against real MRML (the ``slicer-core`` wheel): no fakes, nothing skipped."""

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
from MedXAILogicLib import bridge  # noqa: E402

from MedXAILib.errors import InputError  # noqa: E402
from MedXAILib.volume import Volume, make_ijk_to_ras  # noqa: E402


def oblique_geometry() -> np.ndarray:
    """An oblique (rotated about two axes), anisotropic IJK→RAS matrix with a non-trivial origin."""
    a, b = np.deg2rad(17.0), np.deg2rad(-31.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    direction = rz @ rx @ np.diag([-1.0, 1.0, 1.0])
    return make_ijk_to_ras(spacing=(0.7, 1.3, 3.1), origin=(-91.25, 12.5, 33.125), direction=direction)


@pytest.fixture
def scene() -> slicer.vtkMRMLScene:
    s = slicer.vtkMRMLScene()
    logic = slicer.vtkMRMLColorLogic()  # default colour tables, as the application adds them
    logic.SetMRMLScene(s)
    s._medxai_color_logic = logic  # keep it alive with the scene
    return s


def add_volume(scene: slicer.vtkMRMLScene, array: np.ndarray, matrix: np.ndarray, name: str = "t1"):
    return bridge.add_volume_node(scene, Volume(array[None], matrix), name, channel=None)


def test_volume_round_trip_exact_on_oblique_anisotropic(scene):
    rng = np.random.default_rng(0)
    array = rng.normal(size=(5, 7, 9)).astype(np.float32)  # (K, J, I)
    matrix = oblique_geometry()
    node = add_volume(scene, array, matrix)
    # the node's own view of the geometry matches
    assert node.GetImageData().GetDimensions() == (9, 7, 5)
    assert np.allclose(node.GetSpacing(), (0.7, 1.3, 3.1), atol=1e-12)
    back = bridge.node_to_volume(node)
    assert back.array.dtype == np.float32 and back.array.shape == (1, 5, 7, 9)
    assert np.array_equal(back.array[0], array)
    assert np.allclose(back.ijk_to_ras, matrix, rtol=0, atol=1e-12)
    assert back.channel_names == ["t1"]
    # and the node maps a voxel index to the same RAS point as the Volume does
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    assert np.allclose(m.MultiplyPoint([3, 2, 1, 1]), matrix @ np.array([3, 2, 1, 1]), atol=1e-12)


def test_round_trip_keeps_integer_dtype_and_vector_channels(scene):
    labels = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    node = bridge.add_volume_node(scene, Volume(labels[None], oblique_geometry()), "labels",
                                  "vtkMRMLLabelMapVolumeNode", channel=None)
    back = bridge.node_to_volume(node)
    assert back.array.dtype == np.int16 and np.array_equal(back.array[0], labels)
    rgb = np.random.default_rng(1).integers(0, 255, size=(3, 1, 4, 5)).astype(np.uint8)  # (C, K, J, I)
    vec = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    bridge.update_node_from_volume(vec, Volume(rgb, np.eye(4)))
    assert vec.GetImageData().GetNumberOfScalarComponents() == 3
    assert np.array_equal(bridge.node_to_volume(vec).array, rgb)


def test_nodes_to_volume_stacks_channels_and_names_the_odd_one(scene):
    matrix = oblique_geometry()
    nodes = [add_volume(scene, np.full((2, 3, 4), float(c), np.float32), matrix, name) for c, name in
             enumerate(["t1", "t1ce", "t2", "flair"])]
    vol = bridge.nodes_to_volume(nodes)
    assert vol.array.shape == (4, 2, 3, 4) and vol.channel_names == ["t1", "t1ce", "t2", "flair"]
    assert [float(vol.array[c].mean()) for c in range(4)] == [0.0, 1.0, 2.0, 3.0]
    shifted = matrix.copy()
    shifted[0, 3] += 5.0
    odd = add_volume(scene, np.zeros((2, 3, 4), np.float32), shifted, "flair2")
    with pytest.raises(InputError, match="flair2"):
        bridge.nodes_to_volume(nodes[:2] + [odd])
    with pytest.raises(InputError, match="no image data"):
        bridge.node_to_volume(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))


def test_heatmap_node_geometry_colour_and_window(scene):
    matrix = oblique_geometry()
    anatomy = add_volume(scene, np.zeros((6, 8, 10), np.float32), matrix)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    anatomy.SetAndObserveTransformNodeID(transform.GetID())
    heat = np.linspace(-1.0, 4.0, 480, dtype=np.float32).reshape(6, 8, 10)
    node = bridge.add_heatmap_node(scene, Volume(heat[None], matrix), anatomy)
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(bridge.ijk_to_ras_of(node), bridge.ijk_to_ras_of(anatomy))
    assert node.GetImageData().GetDimensions() == anatomy.GetImageData().GetDimensions()
    assert node.GetParentTransformNode() is transform
    back = bridge.node_to_volume(node)
    assert np.array_equal(back.array[0], heat)  # signed raw values kept
    display = node.GetDisplayNode()
    color = display.GetColorNode()
    assert color.GetName() == bridge.INFERNO_NODE_NAME and color.GetNumberOfColors() == 256
    first, last = [0.0] * 4, [0.0] * 4
    color.GetColor(0, first)
    color.GetColor(255, last)
    assert sum(first[:3]) < 0.1 and last[0] > 0.9 and last[1] > 0.9  # black → light yellow
    assert not display.GetAutoWindowLevel()
    low, high = bridge.display_range(heat)
    assert low == 0.0 and high == pytest.approx(np.percentile(heat[heat > 0], 99.5))
    assert display.GetWindow() == pytest.approx(high - low) and display.GetLevel() == pytest.approx((high + low) / 2)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() > 0
    # a second heat map reuses the colour table
    bridge.add_heatmap_node(scene, Volume(heat[None], matrix), anatomy)
    assert scene.GetNodesByClassByName("vtkMRMLColorTableNode", bridge.INFERNO_NODE_NAME).GetNumberOfItems() == 1


def test_heatmap_on_another_grid_is_refused(scene):
    anatomy = add_volume(scene, np.zeros((6, 8, 10), np.float32), oblique_geometry())
    with pytest.raises(InputError, match="voxel grid"):
        bridge.add_heatmap_node(scene, Volume(np.zeros((1, 6, 8, 11), np.float32)), anatomy)


def test_slicer_inferno_is_used_when_the_scene_has_it(scene):
    # the application's file-based colour tables are singletons: ID = class name + singleton tag
    inferno = slicer.vtkMRMLColorTableNode()
    inferno.SetName("Inferno")
    inferno.SetSingletonTag("FileInferno.txt")
    scene.AddNode(inferno)
    assert inferno.GetID() == bridge.SLICER_INFERNO_ID
    assert bridge.heat_color_node(scene) is inferno


def test_relevance_levels_bins_top_fractions():
    heat = np.arange(1, 1001, dtype=np.float64).reshape(10, 10, 10)  # 1..1000, all positive
    levels = bridge.relevance_levels(heat)
    counts = {v: int((levels == v).sum()) for v in range(5)}
    assert counts[1] == 10 and counts[2] == 40 and counts[3] == 50 and counts[4] == 150 and counts[0] == 750
    assert levels.flat[-1] == 1 and levels.flat[0] == 0
    # voxels at or below zero never become relevant, even when most of the map is zero
    sparse = np.zeros((10, 10, 10))
    sparse[0, 0, :3] = [1.0, 2.0, 3.0]
    binned = bridge.relevance_levels(sparse)
    assert int((binned > 0).sum()) == 3 and binned[0, 0, 2] == 1
    assert not bridge.relevance_levels(np.full((2, 2, 2), np.nan)).any()


def test_relevance_overlay_labelmap_and_colour_table(scene):
    matrix = oblique_geometry()
    anatomy = add_volume(scene, np.zeros((10, 10, 10), np.float32), matrix)
    heat = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    node = bridge.add_relevance_overlay(scene, Volume(heat[None], matrix), anatomy)
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(bridge.ijk_to_ras_of(node), bridge.ijk_to_ras_of(anatomy))
    labels = bridge.node_to_volume(node).array[0]
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    color = node.GetDisplayNode().GetColorNode()
    assert color.GetName() == bridge.RELEVANCE_COLOR_NODE_NAME
    assert [color.GetColorName(i) for i in range(5)] == ["background", "top 1%", "top 5%", "top 10%", "top 25%"]
    rgba = [0.0] * 4
    color.GetColor(0, rgba)
    assert rgba[3] == 0.0  # background transparent


def test_show_in_slice_views_sets_layers_and_opacity(scene):
    anatomy = add_volume(scene, np.zeros((2, 2, 2), np.float32), np.eye(4))
    heat = bridge.add_heatmap_node(scene, Volume(np.ones((1, 2, 2, 2), np.float32)), anatomy)
    for name in ("Red", "Green"):
        composite = slicer.vtkMRMLSliceCompositeNode()
        composite.SetLayoutName(name)
        scene.AddNode(composite)
    assert bridge.show_in_slice_views(scene, background=anatomy, foreground=heat, foreground_opacity=0.4) == 2
    bridge.set_foreground_opacity(scene, 0.8)
    for i in range(2):
        composite = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        assert composite.GetBackgroundVolumeID() == anatomy.GetID()
        assert composite.GetForegroundVolumeID() == heat.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.8)


def test_segmentation_import_names_colours_and_export_round_trip(scene):
    matrix = oblique_geometry()
    anatomy = add_volume(scene, np.zeros((8, 9, 10), np.float32), matrix)
    labels = np.zeros((8, 9, 10), np.int16)
    labels[2:5, 3:6, 4:8] = 2
    labels[3, 4, 5] = 1
    labels[6:8, 0:2, 0:3] = 3
    seg = bridge.labelmap_to_segmentation(scene, Volume(labels[None], matrix), anatomy,
                                          {1: "necrotic core", 2: "oedema", 3: "enhancing rim"})
    ids = bridge.segment_ids(seg)
    names = [seg.GetSegmentation().GetSegment(s).GetName() for s in ids]
    assert names == ["necrotic core", "oedema", "enhancing rim"]
    colours = {tuple(np.round(seg.GetSegmentation().GetSegment(s).GetColor(), 2)) for s in ids}
    assert len(colours) == 3
    assert scene.GetNodesByName("__medxai_temp_labels__").GetNumberOfItems() == 0  # temporary node removed
    slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)  # made once, on first use
    n_nodes = scene.GetNumberOfNodes()
    back = bridge.segmentation_to_labelmap(seg, anatomy)
    assert scene.GetNumberOfNodes() == n_nodes  # neither the temporary label map nor its colour table stays
    assert np.allclose(back.ijk_to_ras, matrix, atol=1e-12)
    assert np.array_equal(back.array[0], labels)
    mask = bridge.segment_to_mask(seg, "oedema", anatomy)
    assert mask.array.dtype == np.uint8 and np.array_equal(mask.array[0], labels == 2)
    assert scene.GetNodesByName("__medxai_temp_export__").GetNumberOfItems() == 0
    with pytest.raises(InputError, match="no segment named 'tumour'.*oedema"):
        bridge.segment_id_by_name(seg, "tumour")


def test_threshold_segment_from_heat_map(scene):
    anatomy = add_volume(scene, np.zeros((4, 4, 4), np.float32), oblique_geometry())
    heat = np.zeros((4, 4, 4), np.float32)
    heat[1:3, 1:3, 1:3] = 0.9
    seg = bridge.add_threshold_segment(scene, Volume(heat[None], oblique_geometry()), 0.5, anatomy)
    assert seg.GetSegmentation().GetNumberOfSegments() == 1
    assert seg.GetSegmentation().GetNthSegment(0).GetName() == "heat map >= 0.5"
    assert int(bridge.segment_to_mask(seg, "heat map >= 0.5", anatomy).array.sum()) == 8
    # a second threshold goes into the same segmentation
    bridge.add_threshold_segment(scene, Volume(heat[None], oblique_geometry()), 0.1, anatomy, seg, "low")
    assert seg.GetSegmentation().GetNumberOfSegments() == 2


def test_table_node_round_trip(scene):
    rows = [["oedema", 0.91, 0.83, 2.5, None], ["enhancing rim", 0.7, 0.54, float("nan"), 3.0]]
    node = bridge.add_table_node(scene, "metrics", ["segment", "Dice", "IoU", "HD95 (mm)", "volume (mL)"], rows)
    columns, back = bridge.table_to_rows(node)
    assert columns == ["segment", "Dice", "IoU", "HD95 (mm)", "volume (mL)"]
    assert back[0][:3] == ["oedema", 0.91, 0.83] and np.isnan(back[0][4])
    assert node.GetTable().GetNumberOfRows() == 2
    assert isinstance(node.GetTable().GetColumn(1), vtk.vtkDoubleArray)
    assert isinstance(node.GetTable().GetColumn(0), vtk.vtkStringArray)


def test_results_go_under_the_inputs_study(scene):
    anatomy = add_volume(scene, np.zeros((2, 2, 2), np.float32), np.eye(4))
    sh = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "patient")
    study = sh.CreateStudyItem(patient, "study")
    anatomy_item = sh.GetItemByDataNode(anatomy) or sh.CreateItem(study, anatomy)
    sh.SetItemParent(anatomy_item, study)
    table = bridge.add_table_node(scene, "metrics", ["a"], [[1.0]])
    heat = bridge.add_heatmap_node(scene, Volume(np.ones((1, 2, 2, 2), np.float32)), anatomy)
    folder = bridge.place_in_subject_hierarchy(scene, [table, heat, None], anatomy)
    assert sh.GetItemParent(folder) == study
    assert sh.GetItemName(folder) == "MedXAI results"
    assert sh.GetItemParent(sh.GetItemByDataNode(table)) == folder
    assert sh.GetItemParent(sh.GetItemByDataNode(heat)) == folder
    # the same folder is reused
    assert bridge.place_in_subject_hierarchy(scene, [table], anatomy) == folder


def test_markup_point_to_voxel(scene):
    matrix = oblique_geometry()
    anatomy = add_volume(scene, np.zeros((5, 6, 7), np.float32), matrix)
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "target")
    ras = matrix @ np.array([4.2, 2.9, 1.1, 1.0])
    markups.AddControlPoint(vtk.vtkVector3d(*ras[:3]))
    assert bridge.markup_point_to_ijk(markups, anatomy) == (4, 3, 1)
    outside = matrix @ np.array([40.0, 2.0, 1.0, 1.0])
    markups.SetNthControlPointPosition(0, *outside[:3])
    with pytest.raises(InputError, match="outside"):
        bridge.markup_point_to_ijk(markups, anatomy)
    with pytest.raises(InputError, match="markup point"):
        bridge.markup_point_to_ijk(scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "none"), anatomy)


def test_remove_nodes_removes_display_nodes(scene):
    anatomy = add_volume(scene, np.zeros((2, 2, 2), np.float32), np.eye(4))
    heat = bridge.add_heatmap_node(scene, Volume(np.ones((1, 2, 2, 2), np.float32)), anatomy)
    display_id = heat.GetDisplayNodeID()
    bridge.remove_nodes(scene, [heat, None])
    assert scene.GetNodeByID(display_id) is None and heat.GetScene() is None
