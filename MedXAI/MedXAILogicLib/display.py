"""Results in the 3D views: a prediction as surfaces, a heat map volume-rendered with its slice colours. Qt-free.

The heat map's volume rendering is set through its volume property *node*
(``vtkMRMLVolumePropertyNode.SetScalarOpacity`` / ``SetColor`` and its effective range), not by replacing the
functions of the raw ``vtkVolumeProperty``: the node observes the functions it was given, so later edits (in the
*Volume Rendering* module, or a preset) reach the views and the saved scene. Tested against the ``slicer-core``
wheel.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from .bridge import display_range, inferno_rgb, node_to_volume

#: The fraction of the display range below which the volume-rendered heat map is transparent.
TRANSPARENT_BELOW = 0.02


def show_segmentation_3d(segmentation_node: slicer.vtkMRMLSegmentationNode, visible: bool = True) -> bool:
    """Show (or hide) a segmentation in the 3D views: builds its closed-surface representation once.

    Returns False when the surface could not be made (an empty segmentation).
    """
    display = segmentation_node.GetDisplayNode()
    if display is None:
        segmentation_node.CreateDefaultDisplayNodes()
        display = segmentation_node.GetDisplayNode()
    made = True
    if visible:
        made = bool(segmentation_node.CreateClosedSurfaceRepresentation())
    display.SetVisibility3D(bool(visible))
    return made


def heatmap_transfer_functions(low: float, high: float, max_opacity: float = 0.6
                               ) -> tuple[vtk.vtkPiecewiseFunction, vtk.vtkColorTransferFunction]:
    """Opacity (0 up to :data:`TRANSPARENT_BELOW` of ``[low, high]``, rising linearly to ``max_opacity`` at ``high``)
    and Inferno colours over ``[low, high]`` (9 points), in the heat map's units."""
    opacity = vtk.vtkPiecewiseFunction()
    start = low + TRANSPARENT_BELOW * (high - low)
    opacity.AddPoint(min(low, start) - 1e-6, 0.0)
    opacity.AddPoint(start, 0.0)
    opacity.AddPoint(high, float(max_opacity))
    colours = vtk.vtkColorTransferFunction()
    for t, (r, g, b) in zip(np.linspace(0.0, 1.0, 9), inferno_rgb(9)):
        colours.AddRGBPoint(low + t * (high - low), float(r), float(g), float(b))
    return opacity, colours


def volume_render_heatmap(
    volume_rendering_logic: slicer.vtkSlicerVolumeRenderingLogic,
    heatmap_node: slicer.vtkMRMLScalarVolumeNode,
    visible: bool = True,
    max_opacity: float = 0.6,
) -> slicer.vtkMRMLVolumeRenderingDisplayNode:
    """Volume-render a heat map with its slice colours: transparent below 2 % of its display range, Inferno above.

    ``volume_rendering_logic`` is Slicer's (``slicer.modules.volumerendering.logic()``); the opacity rises linearly
    from the display range's 2 % to ``max_opacity`` at its top (:func:`~.bridge.display_range`). The functions are
    given to the volume property node, whose effective range becomes the display range.
    """
    display = volume_rendering_logic.GetFirstVolumeRenderingDisplayNode(heatmap_node)
    if display is None:
        display = volume_rendering_logic.CreateDefaultVolumeRenderingNodes(heatmap_node)
    low, high = display_range(node_to_volume(heatmap_node).array[0])
    opacity, colours = heatmap_transfer_functions(low, high, max_opacity)
    property_node = display.GetVolumePropertyNode()
    property_node.SetScalarOpacity(opacity)
    property_node.SetColor(colours)
    property_node.SetEffectiveRange(low, high)
    property_node.GetVolumeProperty().ShadeOff()
    display.SetVisibility(bool(visible))
    return display
