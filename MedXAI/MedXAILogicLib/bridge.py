"""The MRML bridge: Slicer nodes ↔ :class:`MedXAILib.volume.Volume`, and results as nodes.

Qt-free: imports ``slicer`` MRML classes, ``vtk``, ``numpy`` and ``MedXAILib`` only, so it runs in Slicer and against
the ``slicer-core`` wheel alike. Every function takes the nodes (or the scene) it works on; nothing reads the global
``slicer.mrmlScene``.

Layouts and geometry:
- A volume node's voxels, as ``arrayFromVolume`` gives them, are ``(K, J, I)``; a vector volume's are
  ``(K, J, I, C)``. A :class:`Volume` is channel-first ``(C, K, J, I)``.
- ``Volume.ijk_to_ras`` is exactly the node's ``GetIJKToRASMatrix`` (both RAS, millimetres). A node's parent
  transform is not baked in; results are put under the same parent transform as their reference node instead, so
  they sit in the same world place as the reference whether its transform is linear, non-linear or hardened.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from MedXAILib.errors import InputError
from MedXAILib.volume import Volume

# Relevance levels of the overlay labelmap: label value -> (top fraction of voxels, name, RGBA).
RELEVANCE_LEVELS: tuple[tuple[int, float, str, tuple[float, float, float, float]], ...] = (
    (1, 0.01, "top 1%", (0.99, 1.00, 0.65, 1.0)),
    (2, 0.05, "top 5%", (0.98, 0.60, 0.05, 1.0)),
    (3, 0.10, "top 10%", (0.85, 0.27, 0.22, 1.0)),
    (4, 0.25, "top 25%", (0.45, 0.09, 0.43, 1.0)),
)

# Inferno, sampled at 9 evenly spaced points (0, 1/8, ..., 1); interpolated linearly to 256 entries.
_INFERNO_ANCHORS = (
    (0.001, 0.000, 0.014),
    (0.129, 0.047, 0.291),
    (0.342, 0.062, 0.429),
    (0.541, 0.135, 0.415),
    (0.736, 0.216, 0.330),
    (0.894, 0.353, 0.194),
    (0.978, 0.558, 0.035),
    (0.975, 0.798, 0.206),
    (0.988, 0.998, 0.645),
)
INFERNO_NODE_NAME = "MedXAI Inferno"
RELEVANCE_COLOR_NODE_NAME = "MedXAI Relevance levels"
# Slicer's own Inferno table (file-based; present in the application, absent from the slicer-core wheel).
SLICER_INFERNO_ID = "vtkMRMLColorTableNodeFileInferno.txt"

# Distinct, colour-blind-friendly segment colours (Okabe-Ito), used in label order.
SEGMENT_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.84, 0.37, 0.00),
    (0.00, 0.45, 0.70),
    (0.94, 0.89, 0.26),
    (0.00, 0.62, 0.45),
    (0.80, 0.47, 0.65),
    (0.34, 0.71, 0.91),
    (0.90, 0.62, 0.00),
)


# ---- geometry --------------------------------------------------------------------------------------------------
def matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """A ``vtkMatrix4x4`` as a 4×4 float64 array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def array_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A 4×4 array as a ``vtkMatrix4x4``."""
    m = vtk.vtkMatrix4x4()
    a = np.asarray(array, dtype=np.float64)
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def ijk_to_ras_of(node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The node's IJK→RAS matrix (4×4, mm), without any parent transform."""
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return matrix_to_array(m)


# ---- volume nodes ↔ Volume ---------------------------------------------------------------------------------------
def node_to_volume(node: slicer.vtkMRMLVolumeNode, channel_names: Sequence[str] | None = None) -> Volume:
    """Copy a scalar, labelmap or vector volume node into a :class:`Volume` (``(C, K, J, I)``, node's dtype).

    Raises:
        InputError: the node has no voxels.
    """
    image = node.GetImageData() if node is not None else None
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        name = node.GetName() if node is not None else "the input"
        raise InputError(f"{name} has no image data; load or select a volume with voxels")
    dims_ijk = image.GetDimensions()
    n_comp = image.GetNumberOfScalarComponents()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    kji = (dims_ijk[2], dims_ijk[1], dims_ijk[0])
    if n_comp == 1:
        array = flat.reshape(kji)[None]
    else:
        array = np.moveaxis(flat.reshape(kji + (n_comp,)), -1, 0)
    names = list(channel_names) if channel_names is not None else ([node.GetName()] if n_comp == 1 else [])
    return Volume(np.array(array, copy=True), ijk_to_ras_of(node), names)


def nodes_to_volume(nodes: Sequence[slicer.vtkMRMLVolumeNode], channel_names: Sequence[str] | None = None) -> Volume:
    """Stack one scalar node per channel into one multi-channel float32 Volume; grids must agree.

    Raises:
        InputError: no node, or a node whose grid differs from the first (the message names it).
    """
    if not nodes:
        raise InputError("no input volume selected")
    volumes = [node_to_volume(n, channel_names=[]) for n in nodes]
    names = list(channel_names) if channel_names else [n.GetName() for n in nodes]
    stacked = Volume.stack(volumes, names=[n.GetName() for n in nodes])
    return Volume(stacked.array.astype(np.float32, copy=False), stacked.ijk_to_ras, names)


def _vtk_array(data: np.ndarray) -> vtk.vtkDataArray:
    data = np.ascontiguousarray(data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    return numpy_support.numpy_to_vtk(data.ravel(order="C"), deep=True, array_type=None)


def update_node_from_volume(node: slicer.vtkMRMLVolumeNode, volume: Volume, channel: int | None = None) -> None:
    """Replace the node's voxels and IJK→RAS matrix with ``volume``'s (one channel, or all as a vector image)."""
    array = volume.array if channel is None else volume.array[channel : channel + 1]
    n_comp, k, j, i = array.shape
    data = array[0] if n_comp == 1 else np.moveaxis(array, 0, -1)
    vtk_data = _vtk_array(data)
    vtk_data.SetNumberOfComponents(n_comp)
    image = vtk.vtkImageData()
    image.SetDimensions(i, j, k)
    image.GetPointData().SetScalars(vtk_data)
    node.SetIJKToRASMatrix(array_to_matrix(volume.ijk_to_ras))
    node.SetAndObserveImageData(image)


def _copy_parent_transform(node: slicer.vtkMRMLNode, reference: slicer.vtkMRMLNode | None,
                           clear: bool = False) -> None:
    """Put ``node`` under ``reference``'s parent transform (``clear``: also when that is none)."""
    parent = reference.GetParentTransformNode() if reference is not None else None
    if parent is not None:
        node.SetAndObserveTransformNodeID(parent.GetID())
    elif clear:
        node.SetAndObserveTransformNodeID(None)


def check_output_node(node: slicer.vtkMRMLNode | None, inputs: Sequence[slicer.vtkMRMLNode]) -> None:
    """Refuse an output node that is one of the inputs (a job never writes over what it reads).

    Raises:
        InputError: ``node`` is one of ``inputs``.
    """
    if node is not None and any(node is n for n in inputs if n is not None):
        raise InputError(f"{node.GetName()} is an input; choose another output node, or none to make a new one")


def add_volume_node(
    scene: slicer.vtkMRMLScene,
    volume: Volume,
    name: str,
    class_name: str = "vtkMRMLScalarVolumeNode",
    reference: slicer.vtkMRMLVolumeNode | None = None,
    channel: int | None = 0,
) -> slicer.vtkMRMLVolumeNode:
    """Add a new volume node (with a display node) holding ``volume``; it follows ``reference``'s parent transform."""
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    update_node_from_volume(node, volume, channel=channel if volume.n_channels > 1 or channel else None)
    node.CreateDefaultDisplayNodes()
    _copy_parent_transform(node, reference)
    return node


def set_volume_node(
    scene: slicer.vtkMRMLScene, volume: Volume, name: str, reference: slicer.vtkMRMLVolumeNode,
    node: slicer.vtkMRMLVolumeNode | None = None,
) -> slicer.vtkMRMLVolumeNode:
    """A new scalar volume node holding ``volume`` (one channel), or ``node`` with its voxels and grid replaced.

    Either way it follows ``reference``'s parent transform and has a display node; a given node keeps its name.
    """
    if node is None:
        return add_volume_node(scene, volume, name, "vtkMRMLScalarVolumeNode", reference=reference, channel=None)
    update_node_from_volume(node, volume, channel=None)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    _copy_parent_transform(node, reference, clear=True)
    return node


# ---- colour tables -------------------------------------------------------------------------------------------------
def inferno_rgb(n: int = 256) -> np.ndarray:
    """``(n, 3)`` Inferno colours in [0, 1] (linear interpolation between 9 samples)."""
    anchors = np.asarray(_INFERNO_ANCHORS)
    x = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], axis=1)


def _find_by_name(scene: slicer.vtkMRMLScene, class_name: str, name: str) -> slicer.vtkMRMLNode | None:
    nodes = scene.GetNodesByClassByName(class_name, name)
    node = nodes.GetItemAsObject(0) if nodes.GetNumberOfItems() else None
    return node


def _keep_color_names(node: slicer.vtkMRMLColorTableNode) -> None:
    """Keep the names given with ``SetColor``: Slicer < 5.10 replaces them with colour-derived names unless the
    node is marked with ``SetNamesInitialised``; Slicer >= 5.10 keeps them and logs an error for that deprecated
    call (its new API, ``SetColorDefined``, tells the two apart)."""
    if not hasattr(node, "SetColorDefined"):
        node.SetNamesInitialised(True)


def _new_user_color_table(scene: slicer.vtkMRMLScene, name: str, n_colors: int) -> slicer.vtkMRMLColorTableNode:
    """A new, empty user colour table of ``n_colors`` entries whose names survive (see :func:`_keep_color_names`)."""
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    node.SetTypeToUser()
    node.SetNumberOfColors(n_colors)
    _keep_color_names(node)
    return node


def heat_color_node(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLColorNode:
    """Slicer's Inferno colour table if the scene has it, else a 256-entry MedXAI Inferno table (created once)."""
    node = scene.GetNodeByID(SLICER_INFERNO_ID)
    if node is not None:
        return node
    node = _find_by_name(scene, "vtkMRMLColorTableNode", INFERNO_NODE_NAME)
    if node is not None:
        return node
    node = _new_user_color_table(scene, INFERNO_NODE_NAME, 256)
    for index, (r, g, b) in enumerate(inferno_rgb(256)):
        node.SetColor(index, f"{index}", float(r), float(g), float(b), 1.0)
    node.SetAttribute("Category", "MedXAI")
    return node


def relevance_color_node(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLColorTableNode:
    """The colour table of the relevance overlay: 0 transparent, then one named colour per level (created once)."""
    node = _find_by_name(scene, "vtkMRMLColorTableNode", RELEVANCE_COLOR_NODE_NAME)
    if node is not None:
        return node
    node = _new_user_color_table(scene, RELEVANCE_COLOR_NODE_NAME, len(RELEVANCE_LEVELS) + 1)
    node.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for value, _fraction, name, (r, g, b, a) in RELEVANCE_LEVELS:
        node.SetColor(value, name, r, g, b, a)
    node.SetAttribute("Category", "MedXAI")
    return node


# ---- heat map and overlay ------------------------------------------------------------------------------------------
def display_range(array: np.ndarray) -> tuple[float, float]:
    """A robust (low, high) display range of a heat map: 0 .. the 99.5th percentile of its positive values.

    Maps with no positive value fall back to their own (min, max); a constant map gets a unit-wide range.
    """
    finite = array[np.isfinite(array)]
    positive = finite[finite > 0]
    if positive.size:
        high = float(np.percentile(positive, 99.5))
        return 0.0, high if high > 0 else float(positive.max())
    if finite.size and finite.max() > finite.min():
        return float(finite.min()), float(finite.max())
    base = float(finite[0]) if finite.size else 0.0
    return base, base + 1.0


def add_heatmap_node(
    scene: slicer.vtkMRMLScene,
    heatmap: Volume,
    reference: slicer.vtkMRMLVolumeNode,
    name: str = "MedXAI heat map",
    node: slicer.vtkMRMLScalarVolumeNode | None = None,
) -> slicer.vtkMRMLScalarVolumeNode:
    """Add the heat map as a float volume on ``reference``'s grid (or write it into ``node``), with a heat colour table.

    The raw signed values are kept (float32). The display uses the Inferno table, a window/level over
    :func:`display_range`, and a lower threshold just above zero so that non-relevant voxels are transparent in the
    foreground layer.

    Raises:
        InputError: the heat map's grid differs from the reference's.
    """
    ref_volume_geometry = Volume(np.zeros((1,) + _shape_kji(reference), np.uint8), ijk_to_ras_of(reference))
    diff = ref_volume_geometry.geometry_difference(heatmap)
    if diff is not None:
        raise InputError(f"the heat map has {diff} than {reference.GetName()}; it must lie on the input's voxel grid")
    data = heatmap.with_array(heatmap.array[:1].astype(np.float32))
    data.ijk_to_ras = ijk_to_ras_of(reference)  # identical up to rounding; use the reference's exactly
    node = set_volume_node(scene, data, name, reference, node)
    display = node.GetDisplayNode()
    low, high = display_range(data.array[0])
    display.SetAndObserveColorNodeID(heat_color_node(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(low, high)
    display.AutoThresholdOff()
    display.SetLowerThreshold(low + 0.02 * (high - low))
    display.SetUpperThreshold(float(np.nanmax(data.array)) + 1.0)
    display.ApplyThresholdOn()
    node.SetAttribute("MedXAI.Role", "heatmap")
    return node


def _shape_kji(node: slicer.vtkMRMLVolumeNode) -> tuple[int, int, int]:
    dims = node.GetImageData().GetDimensions()
    return (dims[2], dims[1], dims[0])


def relevance_levels(heat: np.ndarray, levels: Iterable[tuple[int, float]] | None = None) -> np.ndarray:
    """Bin a heat map into relevance levels (uint8, same shape).

    A voxel gets the value of the smallest level whose top fraction it belongs to (1 = top 1 %, 2 = top 5 %, …);
    fractions are of all finite voxels. Voxels with a value ≤ 0 are never relevant and stay 0, so a map that is
    zero almost everywhere yields small overlays rather than arbitrary ties.
    """
    levels = list(levels) if levels is not None else [(v, f) for v, f, _n, _c in RELEVANCE_LEVELS]
    out = np.zeros(heat.shape, dtype=np.uint8)
    finite = heat[np.isfinite(heat)]
    if finite.size == 0:
        return out
    valid = np.isfinite(heat) & (heat > 0)
    # widest level first, narrower levels overwrite it
    for value, fraction in sorted(levels, key=lambda vf: -vf[1]):
        threshold = np.quantile(finite, 1.0 - fraction)
        out[valid & (heat >= threshold)] = value
    return out


def add_relevance_overlay(
    scene: slicer.vtkMRMLScene,
    heatmap: Volume,
    reference: slicer.vtkMRMLVolumeNode,
    name: str = "MedXAI relevance levels",
) -> slicer.vtkMRMLLabelMapVolumeNode:
    """Add a labelmap of binned relevance (top 1/5/10/25 %) on the reference grid with its colour table."""
    labels = relevance_levels(np.asarray(heatmap.array[0], dtype=np.float64))
    volume = Volume(labels[None], ijk_to_ras_of(reference))
    node = add_volume_node(scene, volume, name, "vtkMRMLLabelMapVolumeNode", reference=reference, channel=None)
    node.GetDisplayNode().SetAndObserveColorNodeID(relevance_color_node(scene).GetID())
    node.SetAttribute("MedXAI.Role", "relevance-overlay")
    return node


def show_in_slice_views(
    scene: slicer.vtkMRMLScene,
    background: slicer.vtkMRMLNode | None = None,
    foreground: slicer.vtkMRMLNode | None = None,
    label: slicer.vtkMRMLNode | None = None,
    foreground_opacity: float | None = None,
) -> int:
    """Set the layers of every slice view in the scene; returns how many views were changed.

    ``None`` leaves a layer as it is. Works on the slice composite nodes, so it needs no GUI.
    """
    count = 0
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if background is not None:
            composite.SetBackgroundVolumeID(background.GetID())
        if foreground is not None:
            composite.SetForegroundVolumeID(foreground.GetID())
        if label is not None:
            composite.SetLabelVolumeID(label.GetID())
        if foreground_opacity is not None:
            composite.SetForegroundOpacity(float(foreground_opacity))
        count += 1
    return count


def set_foreground_opacity(scene: slicer.vtkMRMLScene, opacity: float) -> None:
    """Set the foreground (heat-map) opacity in every slice view."""
    show_in_slice_views(scene, foreground_opacity=opacity)


# ---- segmentations -------------------------------------------------------------------------------------------------
def _logic() -> type:
    return slicer.vtkSlicerSegmentationsModuleLogic


def labelmap_to_segmentation(
    scene: slicer.vtkMRMLScene,
    labels: Volume,
    reference: slicer.vtkMRMLVolumeNode,
    names: dict[int, str] | None = None,
    name: str = "MedXAI prediction",
    segmentation_node: slicer.vtkMRMLSegmentationNode | None = None,
    terminology: dict[int, str] | None = None,
    follow_reference: bool = False,
) -> slicer.vtkMRMLSegmentationNode:
    """Import an integer label map as a segmentation node with one named, coloured segment per non-zero label.

    ``labels`` lies on ``reference``'s voxel grid, in the reference's local coordinates (before its parent
    transform). Uses the static ``vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode``, which maps the
    labelmap through world into the segmentation's coordinates: the temporary labelmap node therefore gets the
    reference's parent transform, and a new segmentation node gets it too (the mapping is then the identity, exact
    for linear and non-linear transforms). A given ``segmentation_node`` under another transform is mapped by Slicer;
    with ``follow_reference`` (an output node the user chose for a prediction) it is put under the reference's
    transform and grid first, like a new one. The reference image geometry is set after the parent transform, so it
    equals the reference volume's own IJK-to-RAS.
    ``terminology`` maps a label value to a serialized Slicer terminology entry (see :mod:`.terminology`).
    The temporary node is removed again. Labels absent from the map get no segment.
    """
    names = dict(names or {})
    array = np.asarray(labels.array[0])
    values = [int(v) for v in np.unique(array) if v != 0]
    temp = add_volume_node(scene, labels.with_array(array[None].astype(np.int16)), "__medxai_temp_labels__",
                           "vtkMRMLLabelMapVolumeNode", reference=reference, channel=None)
    temp.SetIJKToRASMatrix(array_to_matrix(ijk_to_ras_of(reference)))
    created = segmentation_node is None
    if created:
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
        segmentation_node.CreateDefaultDisplayNodes()
    if created or follow_reference:
        # the parent transform first: the reference geometry is computed in the segmentation's own coordinates
        # (vtkMRMLSegmentationNode maps the volume through the transform between the two nodes), so set after the
        # transform it is the reference's own IJK-to-RAS, whatever that transform is
        _copy_parent_transform(segmentation_node, reference, clear=True)
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    segmentation = segmentation_node.GetSegmentation()
    before = {segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())}
    try:
        if values and not _logic().ImportLabelmapToSegmentationNode(temp, segmentation_node, ""):
            raise InputError("the label map could not be imported as a segmentation")
    finally:
        _remove_with_display(scene, temp)
    new_ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    new_ids = [s for s in new_ids if s not in before]
    # segments are created in ascending label order
    for segment_id, value in zip(new_ids, values):
        segment = segmentation.GetSegment(segment_id)
        segment.SetName(names.get(value, f"label {value}"))
        segment.SetColor(*SEGMENT_COLORS[(value - 1) % len(SEGMENT_COLORS)])
        segment.SetTag("MedXAI.Label", str(value))
        if terminology and terminology.get(value):
            set_segment_terminology(segment, terminology[value])
    return segmentation_node


def set_segment_terminology(segment: slicer.vtkSegment, entry: str) -> None:
    """Set a segment's terminology (a serialized ``TerminologyEntry`` string: ``context~SCT^code^meaning~…``).

    ``vtkSegment.SetTerminology`` where Slicer has it, else the ``TerminologyEntry`` tag it stands for.
    """
    if hasattr(segment, "SetTerminology"):
        segment.SetTerminology(entry)
    else:  # older Slicer: the terminology is a segment tag
        segment.SetTag("TerminologyEntry", entry)


def segment_terminology(segment: slicer.vtkSegment) -> str:
    """A segment's serialized terminology entry ('' when it has none)."""
    if hasattr(segment, "GetTerminology"):
        return segment.GetTerminology() or ""
    value = ""
    if segment.HasTag("TerminologyEntry"):
        value = segment.GetTag("TerminologyEntry") or ""
    return value


def segment_ids(segmentation_node: slicer.vtkMRMLSegmentationNode) -> list[str]:
    """The segment IDs of a segmentation node, in order."""
    seg = segmentation_node.GetSegmentation()
    return [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]


def segment_id_by_name(segmentation_node: slicer.vtkMRMLSegmentationNode, name_or_id: str) -> str:
    """Resolve a segment name (or ID) to its ID.

    Raises:
        InputError: no such segment.
    """
    seg = segmentation_node.GetSegmentation()
    if seg.GetSegment(name_or_id) is not None:
        return name_or_id
    segment_id = seg.GetSegmentIdBySegmentName(name_or_id)
    if not segment_id:
        available = ", ".join(seg.GetSegment(s).GetName() for s in segment_ids(segmentation_node)) or "none"
        raise InputError(f"{segmentation_node.GetName()} has no segment named {name_or_id!r} (available: {available})")
    return segment_id


def segmentation_to_labelmap(
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    reference: slicer.vtkMRMLVolumeNode,
    ids: Sequence[str] | None = None,
) -> Volume:
    """Export segments as one integer label map on ``reference``'s grid (segment *n* in ``ids`` → label *n*).

    Uses the static ``ExportSegmentsToLabelmapNode`` with a temporary labelmap node that is removed afterwards,
    together with the colour table the export makes for it (one per call otherwise piles up in the scene).
    """
    scene = segmentation_node.GetScene()
    ids = list(ids) if ids is not None else segment_ids(segmentation_node)
    colors_before = _node_ids(scene, "vtkMRMLColorTableNode")
    temp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__medxai_temp_export__")
    try:
        id_array = vtk.vtkStringArray()
        for segment_id in ids:
            id_array.InsertNextValue(segment_id)
        if ids and not _logic().ExportSegmentsToLabelmapNode(segmentation_node, id_array, temp, reference):
            raise InputError(
                f"{segmentation_node.GetName()} could not be exported on the grid of {reference.GetName()}"
            )
        if not ids or temp.GetImageData() is None:
            return Volume(np.zeros((1,) + _shape_kji(reference), np.int16), ijk_to_ras_of(reference))
        exported = node_to_volume(temp, channel_names=[])
        return Volume(exported.array.astype(np.int16), ijk_to_ras_of(reference))
    finally:
        _remove_with_display(scene, temp)
        for node_id in _node_ids(scene, "vtkMRMLColorTableNode") - colors_before:
            scene.RemoveNode(scene.GetNodeByID(node_id))


def _node_ids(scene: slicer.vtkMRMLScene, class_name: str) -> set[str]:
    nodes = scene.GetNodesByClass(class_name)
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def segment_to_mask(
    segmentation_node: slicer.vtkMRMLSegmentationNode, segment: str, reference: slicer.vtkMRMLVolumeNode
) -> Volume:
    """One segment (by name or ID) as a 0/1 uint8 mask on ``reference``'s grid."""
    labels = segmentation_to_labelmap(segmentation_node, reference, [segment_id_by_name(segmentation_node, segment)])
    return labels.with_array((labels.array > 0).astype(np.uint8))


def add_threshold_segment(
    scene: slicer.vtkMRMLScene,
    heatmap: Volume,
    threshold: float,
    reference: slicer.vtkMRMLVolumeNode,
    segmentation_node: slicer.vtkMRMLSegmentationNode | None = None,
    segment_name: str | None = None,
) -> slicer.vtkMRMLSegmentationNode:
    """Add a segment holding the voxels where the heat map is ≥ ``threshold`` (to a new or a given segmentation).

    ``reference`` is the heat-map node (or the volume it lies on): the segment follows its grid and parent transform.
    A new segmentation is marked ``MedXAI.Role = heatmap-threshold``; a model's prediction is never written into.
    """
    mask = (np.asarray(heatmap.array[0]) >= threshold).astype(np.int16)
    name = segment_name or f"heat map >= {threshold:g}"
    if segmentation_node is not None and segmentation_node.GetAttribute("MedXAI.Role") == "prediction":
        raise InputError(f"{segmentation_node.GetName()} is a model's prediction; choose another segmentation "
                         "for the thresholded heat map (or none to make a new one)")
    node = labelmap_to_segmentation(scene, Volume(mask[None], ijk_to_ras_of(reference)), reference, {1: name},
                                    name="MedXAI heat-map threshold", segmentation_node=segmentation_node)
    if segmentation_node is None:
        node.SetAttribute("MedXAI.Role", "heatmap-threshold")
    return node


def _remove_with_display(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLNode) -> None:
    for index in range(node.GetNumberOfDisplayNodes()):
        display = node.GetNthDisplayNode(index)
        if display is not None:
            scene.RemoveNode(display)
    scene.RemoveNode(node)


def remove_nodes(scene: slicer.vtkMRMLScene, nodes: Iterable[slicer.vtkMRMLNode]) -> None:
    """Remove nodes (and their display and storage nodes) from the scene; ``None`` entries are skipped."""
    for node in nodes:
        if node is None or node.GetScene() is None:
            continue
        if hasattr(node, "GetNumberOfStorageNodes"):
            for index in range(node.GetNumberOfStorageNodes()):
                storage = node.GetNthStorageNode(index)
                if storage is not None:
                    scene.RemoveNode(storage)
        if hasattr(node, "GetNumberOfDisplayNodes"):
            _remove_with_display(scene, node)
        else:
            scene.RemoveNode(node)


# ---- tables --------------------------------------------------------------------------------------------------------
def add_table_node(
    scene: slicer.vtkMRMLScene,
    name: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    table_node: slicer.vtkMRMLTableNode | None = None,
) -> slicer.vtkMRMLTableNode:
    """A table node with the given columns; numbers become double columns, anything else string columns.

    A column is numeric when every row's value in it is an int or float (``None`` counts as NaN).
    """
    node = table_node or scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table = node.GetTable()
    table.Initialize()
    for col, title in enumerate(columns):
        values = [row[col] if col < len(row) else None for row in rows]
        numeric = all(v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))
                      for v in values) and any(v is not None for v in values)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(str(title))
        for v in values:
            if numeric:
                array.InsertNextValue(float("nan") if v is None else float(v))
            else:
                array.InsertNextValue("" if v is None else str(v))
        table.AddColumn(array)
    node.Modified()
    return node


def table_to_rows(node: slicer.vtkMRMLTableNode) -> tuple[list[str], list[list[object]]]:
    """Read a table node back as (column names, rows)."""
    table = node.GetTable()
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows: list[list[object]] = []
    for r in range(table.GetNumberOfRows()):
        row: list[object] = []
        for c in range(table.GetNumberOfColumns()):
            array = table.GetColumn(c)
            row.append(array.GetValue(r) if isinstance(array, vtk.vtkStringArray) else float(array.GetValue(r)))
        rows.append(row)
    return columns, rows


# ---- subject hierarchy -------------------------------------------------------------------------------------------
def place_in_subject_hierarchy(
    scene: slicer.vtkMRMLScene,
    nodes: Iterable[slicer.vtkMRMLNode],
    reference: slicer.vtkMRMLNode,
    folder_name: str = "MedXAI results",
) -> int:
    """Put nodes in a folder under the reference node's study (or under its parent item if it has no study).

    Returns the folder's item ID (0 when the scene has no subject hierarchy). Items missing for a node (as when
    no application plug-in created them) are created.
    """
    sh = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    if sh is None:
        return 0
    ref_item = sh.GetItemByDataNode(reference)
    if not ref_item:
        ref_item = sh.CreateItem(sh.GetSceneItemID(), reference)
    parent = sh.GetItemParent(ref_item) or sh.GetSceneItemID()
    folder = sh.GetItemChildWithName(parent, folder_name)
    if not folder:
        folder = sh.CreateFolderItem(parent, folder_name)
    for node in nodes:
        if node is None:
            continue
        item = sh.GetItemByDataNode(node)
        if item:
            sh.SetItemParent(item, folder)
        else:
            sh.CreateItem(folder, node)
    return folder


# ---- markups -------------------------------------------------------------------------------------------------------
def markup_point_to_ijk(
    markups_node: slicer.vtkMRMLMarkupsNode, reference: slicer.vtkMRMLVolumeNode, index: int = 0
) -> tuple[int, int, int]:
    """The voxel (i, j, k) of ``reference`` nearest to a markup control point (world coordinates).

    Raises:
        InputError: no such point, or it lies outside the volume.
    """
    if markups_node is None or markups_node.GetNumberOfControlPoints() <= index:
        raise InputError("place a markup point on the voxel to explain first")
    world = [0.0, 0.0, 0.0]
    markups_node.GetNthControlPointPositionWorld(index, world)
    point = np.array(world + [1.0])
    parent = reference.GetParentTransformNode()
    if parent is not None:
        to_local = vtk.vtkGeneralTransform()
        parent.GetTransformFromWorld(to_local)
        point[:3] = to_local.TransformPoint(world)
    ijk = np.linalg.solve(ijk_to_ras_of(reference), point)[:3]
    voxel = tuple(int(v) for v in np.round(ijk))
    k, j, i = _shape_kji(reference)
    if not (0 <= voxel[0] < i and 0 <= voxel[1] < j and 0 <= voxel[2] < k):
        raise InputError(f"the markup point is outside {reference.GetName()} (voxel {voxel})")
    return voxel  # type: ignore[return-value]
