"""The *Results* section's logic: the heat map over the anatomy, in 3D, thresholded; the counterfactual series."""

from __future__ import annotations

from typing import Any

from ..i18n import tr as _


class ResultsLogic:
    """Mixin of the module logic (fast, in this process)."""

    def setHeatmapOpacity(self, opacity: float) -> None:
        from MedXAILogicLib import bridge

        bridge.set_foreground_opacity(self.scene, opacity)

    def showHeatmap(self, heatmapNode: Any, opacity: float = 0.5, volumeRendering: bool = False) -> None:
        """Show a heat map over the volume it explains (slice views), and volume-render it when asked."""
        from MedXAILogicLib import bridge

        background = None
        referenceID = heatmapNode.GetAttribute("MedXAI.Reference")
        if referenceID:
            background = self.scene.GetNodeByID(referenceID)
        bridge.show_in_slice_views(self.scene, background=background, foreground=heatmapNode,
                                   foreground_opacity=opacity)
        if volumeRendering:
            self.showHeatmap3D(heatmapNode, True)

    def showHeatmap3D(self, heatmapNode: Any, visible: bool = True):
        """Volume-render the heat map in the 3D views (transparent where not relevant), or hide it."""
        import slicer

        from MedXAILogicLib import display

        node = display.volume_render_heatmap(slicer.modules.volumerendering.logic(), heatmapNode, visible)
        if visible:
            self._ensure3DView()
        return node

    def showSegmentation3D(self, segmentationNode: Any, visible: bool = True) -> bool:
        """Show a segmentation as surfaces in the 3D views."""
        from MedXAILogicLib import display

        made = display.show_segmentation_3d(segmentationNode, visible)
        if visible:
            self._ensure3DView()
        return made

    @staticmethod
    def _ensure3DView() -> None:
        import slicer

        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None and layoutManager.threeDViewCount == 0:
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        if layoutManager is not None and layoutManager.threeDViewCount > 0:
            layoutManager.threeDWidget(0).threeDView().resetFocalPoint()

    def thresholdHeatmap(self, heatmapNode: Any, fraction: float, segmentationNode: Any = None):
        """Add a segment of the voxels at or above ``fraction`` of the heat map's display maximum.

        The segment goes into ``segmentationNode`` (never a model's prediction) or a new segmentation.
        """
        from MedXAILogicLib import bridge

        heat = bridge.node_to_volume(heatmapNode)
        low, high = bridge.display_range(heat.array[0])
        threshold = low + fraction * (high - low)
        return bridge.add_threshold_segment(
            self.scene, heat, threshold, heatmapNode, segmentationNode,
            segment_name=_("{name} ≥ {fraction:.0%}").format(name=heatmapNode.GetName(), fraction=fraction))

    @staticmethod
    def showSeriesStep(series: dict, index: int) -> None:
        """Show step ``index`` of a counterfactual series (its browser moves, the proxy volume follows)."""
        from MedXAILogicLib.counterfactual import show_series_step

        show_series_step(series, index)
