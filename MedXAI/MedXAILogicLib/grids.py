"""Do input volumes share one voxel grid in the world, and if not, resample them onto the first one.

A model takes its channels as one array, so every input node must lie on the same voxel grid *in the world*: the
same IJK→RAS matrix and the same parent transform (two nodes with equal matrices under different transforms are
not aligned). :func:`grid_mismatches` says which nodes differ and how; :func:`resample_to_reference` makes a new
node on the reference's grid with Slicer's own resampling (``vtkSlicerVolumesLogic.ResampleVolumeToReferenceVolume``)
where that logic is exact (a reference without a parent transform), and with the same reslicing through the exact
transform between the two nodes (``vtkMRMLTransformNode.GetTransformBetweenNodes``) otherwise. Inputs are never
modified. Qt-free; tested against the ``slicer-core`` wheel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import slicer
import vtk

from MedXAILib.errors import InputError
from MedXAILib.volume import Volume

from .bridge import _shape_kji, ijk_to_ras_of


def _grid_of(node: slicer.vtkMRMLVolumeNode) -> Volume:
    if node.GetImageData() is None:
        raise InputError(f"{node.GetName()} has no image data; load or select a volume with voxels")
    return Volume(np.zeros((1,) + _shape_kji(node), np.uint8), ijk_to_ras_of(node))


def grid_mismatches(nodes: Sequence[slicer.vtkMRMLVolumeNode], atol: float = 1e-4) -> list[tuple[object, str]]:
    """``(node, how it differs)`` for every node whose world grid differs from the first node's (empty: all agree).

    Raises:
        InputError: a node has no voxels.
    """
    if not nodes:
        return []
    reference = nodes[0]
    grid = _grid_of(reference)
    out: list[tuple[object, str]] = []
    for node in nodes[1:]:
        diff = grid.geometry_difference(_grid_of(node), atol=atol)
        if diff is None and node.GetParentTransformNode() is not reference.GetParentTransformNode():
            parent = node.GetParentTransformNode()
            diff = f"parent transform {parent.GetName() if parent else 'none'}"
        if diff is not None:
            out.append((node, diff))
    return out


def describe_mismatches(reference: slicer.vtkMRMLVolumeNode, mismatches: Sequence[tuple[object, str]]) -> str:
    """One line per differing node, for a question or an error message."""
    return "\n".join(f"{node.GetName()}: {diff} than {reference.GetName()}" for node, diff in mismatches)


def _slicer_logic_handles(node: slicer.vtkMRMLVolumeNode, reference: slicer.vtkMRMLVolumeNode) -> bool:
    """Does ``ResampleVolumeToReferenceVolume`` map ``node`` exactly onto ``reference``?

    It applies the input's transform to world and, when both have one, the *input's* world-to-parent transform
    again: right for a reference without a transform. For a reference under a transform (even the input's own, where
    a non-linear forward-and-inverse pair is only approximately the identity) the exact transform between the two
    nodes is used instead (:func:`_reslice`, the same reslicing).
    """
    return reference.GetParentTransformNode() is None


def _reslice(node: slicer.vtkMRMLVolumeNode, reference: slicer.vtkMRMLVolumeNode) -> vtk.vtkImageData:
    """``node``'s voxels sampled on ``reference``'s grid through the exact transform between the two nodes."""
    chain = vtk.vtkGeneralTransform()
    chain.PostMultiply()
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    chain.Concatenate(ijk_to_ras)
    between = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(node.GetParentTransformNode(),
                                                         reference.GetParentTransformNode(), between)
    chain.Concatenate(between)
    ras_to_ijk = vtk.vtkMatrix4x4()
    reference.GetRASToIJKMatrix(ras_to_ijk)
    chain.Concatenate(ras_to_ijk)
    chain.Inverse()  # reslice maps output (reference IJK) points to input (node IJK) points
    reslice = vtk.vtkImageReslice()
    reslice.SetInputData(node.GetImageData())
    reslice.SetOutputOrigin(0, 0, 0)
    reslice.SetOutputSpacing(1, 1, 1)
    i, j, k = reference.GetImageData().GetDimensions()
    reslice.SetOutputExtent(0, i - 1, 0, j - 1, 0, k - 1)
    linear = vtk.vtkTransform()
    if slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(chain, linear):
        reslice.SetResliceTransform(linear)
    else:
        reslice.SetResliceTransform(chain)
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        reslice.SetInterpolationModeToNearestNeighbor()
    else:
        reslice.SetInterpolationModeToLinear()
    reslice.Update()
    image = vtk.vtkImageData()
    image.DeepCopy(reslice.GetOutput())
    image.SetOrigin(0, 0, 0)
    image.SetSpacing(1, 1, 1)
    return image


def resample_to_reference(
    scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLVolumeNode, reference: slicer.vtkMRMLVolumeNode,
    name: str | None = None,
) -> slicer.vtkMRMLScalarVolumeNode:
    """A new scalar volume node with ``node``'s values on ``reference``'s grid, under ``reference``'s transform.

    Linear interpolation (nearest neighbour for a label map); voxels outside ``node`` become 0. ``node`` is not
    changed. The new node is marked ``MedXAI.Role = resampled input``.

    Raises:
        InputError: a node has no voxels, or Slicer's resampling failed.
    """
    for n in (node, reference):
        _grid_of(n)
    if _slicer_logic_handles(node, reference):
        out = slicer.vtkSlicerVolumesLogic.ResampleVolumeToReferenceVolume(node, reference)
        if out is None:
            raise InputError(f"{node.GetName()} could not be resampled onto {reference.GetName()}")
    else:
        out = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        out.SetAndObserveImageData(_reslice(node, reference))
        out.CopyOrientation(reference)
    # the values now lie on the reference's grid, so they take the reference's place in the world
    parent = reference.GetParentTransformNode()
    out.SetAndObserveTransformNodeID(parent.GetID() if parent is not None else None)
    out.SetName(scene.GenerateUniqueName(name or f"{node.GetName()} on {reference.GetName()} grid"))
    if out.GetDisplayNode() is None:
        out.CreateDefaultDisplayNodes()
    out.SetAttribute("MedXAI.Role", "resampled input")
    return out
