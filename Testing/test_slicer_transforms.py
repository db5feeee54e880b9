"""Every node the module makes sits where its input sits, under linear and non-linear parent transforms.

Real MRML (the ``slicer-core`` wheel). Inputs are under a linear transform (a 50 mm shift and a rotation), under a
non-linear one (a smooth displacement grid), or hardened (the transform applied to the node: no parent left). For the
prediction and the thresholded heat map the check is twofold: the segment's world bounds match a label map node
holding the same voxels under the same transform (Slicer's own world mapping), and exporting the segmentation back
onto the input grid gives the prediction voxel for voxel. The heat map, the relevance overlay and a resampled input
follow the input's transform too.
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
from MedXAILogicLib import bridge, grids  # noqa: E402

from MedXAILib.volume import Volume, make_ijk_to_ras  # noqa: E402

SHAPE = (8, 10, 12)  # (K, J, I)


@pytest.fixture
def scene() -> slicer.vtkMRMLScene:
    return slicer.vtkMRMLScene()


def geometry() -> np.ndarray:
    a = np.deg2rad(20.0)
    direction = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return make_ijk_to_ras(spacing=(1.5, 1.0, 2.0), origin=(-10.0, 5.0, 3.0), direction=direction)


def prediction(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    labels = np.zeros(shape, np.int16)
    labels[2:6, 3:8, 4:9] = 2
    labels[3:5, 4:6, 5:7] = 1
    return labels


def linear_transform(scene):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift 50 mm and rotate")
    t = vtk.vtkTransform()
    t.Translate(50.0, -7.0, 12.0)
    t.RotateZ(15.0)
    t.RotateX(-10.0)
    node.SetMatrixTransformToParent(t.GetMatrix())
    return node


def grid_transform(scene):
    """A smooth non-linear displacement (up to ~6 mm) on a coarse grid covering the volume."""
    grid = vtk.vtkImageData()
    grid.SetOrigin(-60.0, -60.0, -60.0)
    grid.SetSpacing(15.0, 15.0, 15.0)
    grid.SetDimensions(10, 10, 10)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    values = np.zeros((10, 10, 10, 3))
    z, y, x = np.meshgrid(*[np.linspace(-60, 75, 10)] * 3, indexing="ij")
    values[..., 0] = 6.0 * np.sin(y / 40.0)
    values[..., 1] = 4.0 * np.cos(x / 50.0)
    values[..., 2] = 3.0 * np.sin((x + z) / 60.0)
    from vtk.util import numpy_support

    grid.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values.reshape(-1, 3), deep=True))
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetInterpolationModeToCubic()
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    node.SetAndObserveTransformToParent(transform)
    return node


def make_input(scene, how: str):
    volume = Volume(np.random.default_rng(0).normal(size=(1,) + SHAPE).astype(np.float32), geometry())
    node = bridge.add_volume_node(scene, volume, "t1", channel=None)
    if how in ("linear", "hardened linear"):
        node.SetAndObserveTransformNodeID(linear_transform(scene).GetID())
    elif how in ("non-linear", "hardened non-linear"):
        node.SetAndObserveTransformNodeID(grid_transform(scene).GetID())
    if how.startswith("hardened"):
        logic = slicer.vtkSlicerTransformLogic()
        logic.hardenTransform(node)
        assert node.GetParentTransformNode() is None
    return node


def world_bounds(node) -> np.ndarray:
    bounds = [0.0] * 6
    node.GetRASBounds(bounds)
    return np.array(bounds)


def _box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def expected_world_bounds(labels: np.ndarray, reference) -> np.ndarray:
    """Where the labelled voxels must be: their voxel box (edges at ±½ voxel) through the reference's IJK→RAS gives
    an axis-aligned local box (as a segmentation keeps it), whose corners go through the reference's parent
    transform to the world."""
    k, j, i = np.nonzero(labels)
    ijk = _box_corners(np.array([i.min(), j.min(), k.min()]) - 0.5, np.array([i.max(), j.max(), k.max()]) + 0.5)
    local = (bridge.ijk_to_ras_of(reference) @ np.c_[ijk, np.ones(8)].T).T[:, :3]
    corners = _box_corners(local.min(axis=0), local.max(axis=0))
    parent = reference.GetParentTransformNode()
    if parent is not None:
        to_world = vtk.vtkGeneralTransform()
        parent.GetTransformToWorld(to_world)
        corners = np.array([to_world.TransformPoint(*c) for c in corners])
    return np.array([corners[:, 0].min(), corners[:, 0].max(), corners[:, 1].min(), corners[:, 1].max(),
                     corners[:, 2].min(), corners[:, 2].max()])


CASES = ["none", "linear", "non-linear", "hardened linear", "hardened non-linear"]


@pytest.mark.parametrize("how", CASES)
def test_prediction_segmentation_sits_on_its_input(scene, how):
    reference = make_input(scene, how)
    labels = prediction(bridge._shape_kji(reference))  # a hardened non-linear transform resamples the input
    seg = bridge.labelmap_to_segmentation(scene, Volume(labels[None], bridge.ijk_to_ras_of(reference)), reference,
                                          {1: "core", 2: "oedema"})
    assert seg.GetParentTransformNode() is reference.GetParentTransformNode()
    # voxel for voxel back on the input grid
    back = bridge.segmentation_to_labelmap(seg, reference)
    assert int((back.array[0] > 0).sum()) == int((labels > 0).sum())
    assert np.array_equal(back.array[0], labels)
    # in the right place in the world
    tolerance = 1e-3 if how in ("none", "linear", "hardened linear", "hardened non-linear") else 0.5
    assert np.allclose(world_bounds(seg), expected_world_bounds(labels, reference), atol=tolerance)


def stored_reference_geometry(seg) -> tuple[np.ndarray, tuple[int, ...]]:
    """The segmentation's reference image geometry as Slicer reads it back (``DeserializeImageGeometry``)."""
    text = seg.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    image = slicer.vtkOrientedImageData()
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(text, image, False), text
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return bridge.matrix_to_array(matrix), tuple(image.GetExtent())


@pytest.mark.parametrize("how", CASES)
@pytest.mark.parametrize("into", ["new node", "chosen node under another transform"])
def test_reference_geometry_is_the_inputs_own_grid(scene, how, into):
    """Segment Editor's grid and the labelmap export use the stored geometry: it must be the input's own IJK-to-RAS
    (the segmentation shares the input's parent transform), not the input mapped through that transform again."""
    reference = make_input(scene, how)
    labels = prediction(bridge._shape_kji(reference))
    chosen = None
    if into != "new node":
        chosen = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "chosen output")
        chosen.SetAndObserveTransformNodeID(linear_transform(scene).GetID())
    seg = bridge.labelmap_to_segmentation(scene, Volume(labels[None], bridge.ijk_to_ras_of(reference)), reference,
                                          {1: "core", 2: "oedema"}, segmentation_node=chosen,
                                          follow_reference=chosen is not None)
    matrix, extent = stored_reference_geometry(seg)
    assert np.allclose(matrix, bridge.ijk_to_ras_of(reference), atol=1e-6), (how, matrix[:3, 3])
    k, j, i = bridge._shape_kji(reference)
    assert extent == (0, i - 1, 0, j - 1, 0, k - 1)
    assert seg.GetParentTransformNode() is reference.GetParentTransformNode()


def test_fifty_mm_shift_lands_where_the_input_is(scene):
    """The measured case of the issue: a 50 mm translation put the segment at R 4.5-9.5 instead of 54.5-59.5."""
    reference = bridge.add_volume_node(scene, Volume(np.zeros((1, 10, 10, 10), np.float32), np.eye(4)), "ref",
                                       channel=None)
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 50.0)
    shift.SetMatrixTransformToParent(matrix)
    reference.SetAndObserveTransformNodeID(shift.GetID())
    labels = np.zeros((10, 10, 10), np.int16)
    labels[5:10, 5:10, 5:10] = 1
    seg = bridge.labelmap_to_segmentation(scene, Volume(labels[None], np.eye(4)), reference, {1: "x"})
    bounds = world_bounds(seg)
    assert bounds[:2] == pytest.approx([54.5, 59.5])
    assert int(bridge.segmentation_to_labelmap(seg, reference).array.sum()) == 125


@pytest.mark.parametrize("how", CASES)
def test_threshold_segment_heatmap_and_overlay_follow_the_input(scene, how):
    reference = make_input(scene, how)
    grid = bridge.ijk_to_ras_of(reference)
    heat = np.zeros(bridge._shape_kji(reference), np.float32)
    heat[1:4, 2:5, 6:10] = 0.9
    heat_volume = Volume(heat[None], grid)
    heat_node = bridge.add_heatmap_node(scene, heat_volume, reference)
    overlay = bridge.add_relevance_overlay(scene, heat_volume, reference)
    for node in (heat_node, overlay):
        assert node.GetParentTransformNode() is reference.GetParentTransformNode()
        assert np.array_equal(bridge.ijk_to_ras_of(node), grid)
    seg = bridge.add_threshold_segment(scene, bridge.node_to_volume(heat_node), 0.5, heat_node)
    assert seg.GetParentTransformNode() is reference.GetParentTransformNode()
    assert seg.GetAttribute("MedXAI.Role") == "heatmap-threshold"
    expected = (heat >= 0.5).astype(np.int16)
    assert np.array_equal(bridge.segmentation_to_labelmap(seg, reference).array[0], expected)
    tolerance = 0.5 if how == "non-linear" else 1e-3
    assert np.allclose(world_bounds(seg), expected_world_bounds(expected, reference), atol=tolerance)


def test_threshold_never_writes_into_a_prediction(scene):
    reference = make_input(scene, "linear")
    seg = bridge.labelmap_to_segmentation(scene, Volume(prediction()[None], bridge.ijk_to_ras_of(reference)),
                                          reference, {1: "core", 2: "oedema"})
    seg.SetAttribute("MedXAI.Role", "prediction")
    heat = Volume(np.ones((1,) + SHAPE, np.float32), bridge.ijk_to_ras_of(reference))
    with pytest.raises(Exception, match="prediction"):
        bridge.add_threshold_segment(scene, heat, 0.5, reference, seg)
    assert seg.GetSegmentation().GetNumberOfSegments() == 2


@pytest.mark.parametrize("how", ["none", "linear", "non-linear"])
def test_resampled_input_lands_on_the_reference_grid(scene, how):
    reference = make_input(scene, how)
    # the same anatomy on a grid shifted by whole voxels, no transform of its own (as a second loaded series)
    matrix = bridge.ijk_to_ras_of(reference)
    shifted = matrix.copy()
    shifted[:3, 3] = (matrix @ np.array([-2.0, -1.0, -1.0, 1.0]))[:3]
    values = np.zeros((1, SHAPE[0] + 2, SHAPE[1] + 2, SHAPE[2] + 4), np.float32)
    values[0, 1:1 + SHAPE[0], 1:1 + SHAPE[1], 2:2 + SHAPE[2]] = bridge.node_to_volume(reference).array[0]
    other = bridge.add_volume_node(scene, Volume(values, shifted), "flair", channel=None)
    other.SetAndObserveTransformNodeID(reference.GetTransformNodeID())
    mismatches = grids.grid_mismatches([reference, other])
    assert [n for n, _ in mismatches] == [other] and "size" in mismatches[0][1]
    out = grids.resample_to_reference(scene, other, reference)
    assert grids.grid_mismatches([reference, out]) == []
    assert np.allclose(bridge.node_to_volume(out).array[0], bridge.node_to_volume(reference).array[0], atol=1e-4)
    assert np.array_equal(bridge.node_to_volume(other).array, values)  # the input is untouched
    assert out.GetAttribute("MedXAI.Role") == "resampled input"


def test_same_matrix_under_another_transform_is_another_grid(scene):
    reference = make_input(scene, "none")
    twin = bridge.add_volume_node(scene, bridge.node_to_volume(reference), "t2", channel=None)
    shift = linear_transform(scene)
    twin.SetAndObserveTransformNodeID(shift.GetID())
    mismatches = grids.grid_mismatches([reference, twin])
    assert mismatches and "parent transform" in mismatches[0][1]
    # Slicer's logic does not handle a reference and an input under different transforms: the exact reslice does
    reference.SetAndObserveTransformNodeID(linear_transform(scene).GetID())
    out = grids.resample_to_reference(scene, twin, reference)
    assert out.GetParentTransformNode() is reference.GetParentTransformNode()
    # a world point of the twin's centre voxel maps to the same value in the resampled node
    ijk_twin = np.array([6.0, 5.0, 4.0, 1.0])
    to_world = vtk.vtkGeneralTransform()
    shift.GetTransformToWorld(to_world)
    world = to_world.TransformPoint((bridge.ijk_to_ras_of(twin) @ ijk_twin)[:3])
    from_world = vtk.vtkGeneralTransform()
    reference.GetParentTransformNode().GetTransformFromWorld(from_world)
    local = np.array(list(from_world.TransformPoint(world)) + [1.0])
    ijk_out = np.linalg.solve(bridge.ijk_to_ras_of(out), local)[:3]
    value = bridge.node_to_volume(twin).array[0, 4, 5, 6]
    i, j, k = np.floor(ijk_out).astype(int)
    neighbourhood = bridge.node_to_volume(out).array[0, k:k + 2, j:j + 2, i:i + 2]
    assert neighbourhood.min() - 1e-4 <= value <= neighbourhood.max() + 1e-4


@pytest.mark.parametrize("how", ["linear", "non-linear"])
def test_point_and_region_targets_are_read_in_the_inputs_own_grid(scene, how):
    """What goes to the CLI: a markup point and a painted segment, placed in the world, become input voxels."""
    reference = make_input(scene, how)
    to_world = vtk.vtkGeneralTransform()
    reference.GetParentTransformNode().GetTransformToWorld(to_world)
    local = bridge.ijk_to_ras_of(reference) @ np.array([4.0, 3.0, 2.0, 1.0])
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "target")  # not under any transform
    markups.AddControlPoint(vtk.vtkVector3d(*to_world.TransformPoint(*local[:3])))
    assert bridge.markup_point_to_ijk(markups, reference) == (4, 3, 2)
    labels = np.zeros(SHAPE, np.int16)
    labels[2:5, 3:6, 4:8] = 1
    painted = bridge.labelmap_to_segmentation(scene, Volume(labels[None], bridge.ijk_to_ras_of(reference)),
                                              reference, {1: "region"})
    assert np.array_equal(bridge.segment_to_mask(painted, "region", reference).array[0], labels)
    if how == "linear":  # the same segment hardened into world coordinates (no parent) is still the same voxels
        painted.SetAndObserveTransformNodeID(None)
        painted.ApplyTransform(to_world)
        assert np.array_equal(bridge.segment_to_mask(painted, "region", reference).array[0], labels)
