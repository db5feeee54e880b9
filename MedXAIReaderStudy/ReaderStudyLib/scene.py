"""What one reading shows, as MRML nodes: loaded from the study's files, named by the reading id only.

Volumes are read by MRML's own storage node (``vtkMRMLVolumeArchetypeStorageNode``, ITK's readers), so the image a
reader sees is the file the study hashed, with its exact geometry; no pixel passes through Python. Each map becomes a
heat-coloured volume (Slicer's PET-Heat colours) meant for the foreground layer, thresholded at a fraction of its
maximum so that the image stays visible where the map is low. No node keeps the file's path: the storage node that
read it is removed (the path holds the case's key, the same in every arm, so a reader could link readings of one
case across arms in the Data module or a save dialog). Every node made for a reading carries the attribute
``MedXAIReaderStudy.ReadingId``; :func:`remove_reading_nodes` removes them all (with their display and storage
nodes) before the next case, so two cases are never on screen together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import slicer

READING_ATTRIBUTE = "MedXAIReaderStudy.ReadingId"
ROLE_ATTRIBUTE = "MedXAIReaderStudy.Role"
HEAT_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
MAP_THRESHOLD_FRACTION = 0.1  # map values below this fraction of the map's maximum are transparent
LOCATION_NODE_NAME = "Finding location"


@dataclass
class ReadingNodes:
    """The nodes of one reading: ``images`` (one per channel), ``maps`` (method → node), ``counterfactual``."""

    reading_id: str
    images: list[Any] = field(default_factory=list)
    maps: dict[str, Any] = field(default_factory=dict)
    counterfactual: list[Any] = field(default_factory=list)

    def all(self) -> list[Any]:
        return [*self.images, *self.maps.values(), *self.counterfactual]


def _load_volume(scene: slicer.vtkMRMLScene, path: Path, name: str, reading_id: str, role: str) -> Any:
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    storage.SetSingleFile(1)
    read = storage.ReadData(node)
    scene.RemoveNode(storage)  # a storage node would keep the file's path (its case key, the same in every arm)
    if not read:
        scene.RemoveNode(node)
        raise RuntimeError(f"could not read {path.name} of reading {reading_id}")
    display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
    node.SetAndObserveDisplayNodeID(display.GetID())
    node.SetAttribute(READING_ATTRIBUTE, reading_id)
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    return node


def _show_as_image(node: Any) -> None:
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    display.AutoWindowLevelOn()


def _show_as_map(node: Any) -> None:
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(HEAT_COLOR_NODE_ID)
    low, high = node.GetImageData().GetScalarRange()
    top = high if high > 0 else max(abs(low), 1e-12)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, top)
    display.AutoThresholdOff()
    display.SetLowerThreshold(MAP_THRESHOLD_FRACTION * top)
    display.SetUpperThreshold(max(high, top) + 1.0)
    display.ApplyThresholdOn()


def load_reading(scene: slicer.vtkMRMLScene, reading: Any) -> ReadingNodes:
    """Load a :class:`MedXAILib.study.session.Reading` (only what its arm shows) into ``scene``."""
    rid = reading.reading_id
    nodes = ReadingNodes(rid)
    try:
        for path, channel in zip(reading.images, reading.channel_names):
            name = rid if len(reading.images) == 1 else f"{rid} {channel}"
            node = _load_volume(scene, path, name, rid, "image")
            _show_as_image(node)
            nodes.images.append(node)
        for method, path in reading.maps.items():
            node = _load_volume(scene, path, f"{rid} map ({method})", rid, "map")
            _show_as_map(node)
            nodes.maps[method] = node
        for path, channel in zip(reading.counterfactual, reading.channel_names):
            node = _load_volume(scene, path, f"{rid} counterfactual" + ("" if len(reading.images) == 1
                                                                        else f" {channel}"), rid, "counterfactual")
            _show_as_image(node)
            nodes.counterfactual.append(node)
    except BaseException:
        remove_reading_nodes(scene)
        raise
    return nodes


def remove_reading_nodes(scene: slicer.vtkMRMLScene) -> int:
    """Remove every node loaded for a reading (and its display and storage nodes); return how many volumes."""
    doomed = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLVolumeNode")
        if node.GetAttribute(READING_ATTRIBUTE):
            doomed.append(node)
    for node in doomed:
        for j in range(node.GetNumberOfDisplayNodes()):
            if node.GetNthDisplayNode(j) is not None:
                scene.RemoveNode(node.GetNthDisplayNode(j))
        if node.GetStorageNode() is not None:
            scene.RemoveNode(node.GetStorageNode())
        scene.RemoveNode(node)
    return len(doomed)


def location_node(scene: slicer.vtkMRMLScene) -> Any:
    """The markup point node where the reader locates the finding (one point at most; made once, then reused)."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
        if node.GetAttribute(ROLE_ATTRIBUTE) == "location":
            return node
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", LOCATION_NODE_NAME)
    node.SetAttribute(ROLE_ATTRIBUTE, "location")
    node.SetMaximumNumberOfControlPoints(1)
    node.CreateDefaultDisplayNodes()
    return node


def location_ras(node: Any) -> tuple[float, float, float] | None:
    """The reader's point in world (RAS) millimetres, or None when no point is placed."""
    if node is None or node.GetNumberOfControlPoints() < 1:
        return None
    point = [0.0, 0.0, 0.0]
    node.GetNthControlPointPositionWorld(0, point)
    return (float(point[0]), float(point[1]), float(point[2]))


def clear_location(node: Any) -> None:
    if node is not None:
        node.RemoveAllControlPoints()
