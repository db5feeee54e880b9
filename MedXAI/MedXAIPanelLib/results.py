"""*Results*: the selected heat map over the anatomy (opacity, 3D, threshold to a segment), the counterfactual
series, shap's plots and the selected table."""

from __future__ import annotations

from typing import Any

import qt
import slicer
from slicer.i18n import tr as _

from .section import Section

#: Widest shap plot shown in the panel, in pixels (the PNG is scaled down to it).
SHAP_PLOT_WIDTH = 360


def nodeID(node: Any) -> str:
    return node.GetID() if node is not None else ""


def pixmapFromPng(png: bytes) -> Any:
    """A QPixmap of PNG bytes (read from a temporary file, which is removed again)."""
    import os
    import tempfile

    handle, path = tempfile.mkstemp(suffix=".png", prefix="MedXAI-shap-")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(png)
        return qt.QPixmap(path)
    finally:
        os.remove(path)


class ResultsSection(Section):
    """Follows the parameter node's ``heatmap`` and ``resultsTable`` (the *Outputs* selectors)."""

    def setup(self) -> None:
        self._shownHeatmap = ""  # the ID of the node shown ('' none yet), compared by ID: wrappers may differ
        self._shownTable = ""
        self.series = None  # the counterfactual series of the shown heat map: {"sequence", "browser", "proxy"}
        self.ui.opacitySlider.connect("valueChanged(double)", self.logic.setHeatmapOpacity)
        self.ui.volumeRenderCheckBox.connect("toggled(bool)", self.onVolumeRenderToggled)
        self.ui.show3DButton.connect("clicked(bool)", self.onShow3DButton)
        self.ui.thresholdButton.connect("clicked(bool)", self.onThresholdButton)
        self.ui.seriesSlider.connect("valueChanged(int)", self.onSeriesStep)

    def update(self) -> None:
        p = self.parameterNode
        if p is None:
            return
        if nodeID(p.heatmap) != self._shownHeatmap:
            self._shownHeatmap = nodeID(p.heatmap)
            if p.heatmap is not None:
                with slicer.util.tryWithErrorDisplay(_("Failed to show the heat map."), waitCursor=True):
                    self.logic.showHeatmap(p.heatmap, p.heatmapOpacity, volumeRendering=p.heatmapVolumeRendering)
            self.followSeries(p.heatmap)
        if p.resultsTable is not None and nodeID(p.resultsTable) != self._shownTable:
            self.showTable(p.resultsTable)
        self.ui.show3DButton.enabled = bool(p.prediction)
        self.ui.thresholdButton.enabled = bool(p.heatmap)
        self.ui.volumeRenderCheckBox.enabled = bool(p.heatmap)

    def showTable(self, table: Any) -> None:
        self._shownTable = nodeID(table)
        self.ui.resultsTableView.setMRMLTableNode(table)

    # -- counterfactual series and shap plots ------------------------------------------------------------------------
    def showExplanationExtras(self, outputs: dict) -> None:
        """After an explanation: its counterfactual series (a slider over the steps) and shap's plots."""
        if outputs.get("heatmap") is not None:
            series = outputs.get("series")
            if series is not None:
                outputs["heatmap"].SetNodeReferenceID("MedXAI.SeriesBrowser", series["browser"].GetID())
            self.followSeries(outputs["heatmap"])
        png = outputs.get("shap_plot_png")
        label = self.ui.shapPlotImageLabel
        if png:
            pixmap = pixmapFromPng(png)
            if pixmap.width() > SHAP_PLOT_WIDTH:
                pixmap = pixmap.scaledToWidth(SHAP_PLOT_WIDTH)
            label.setPixmap(pixmap)
        label.visible = bool(png)

    def followSeries(self, heatmap: Any) -> None:
        from MedXAILogicLib.counterfactual import series_of_browser

        browser = heatmap.GetNodeReference("MedXAI.SeriesBrowser") if heatmap is not None else None
        self.series = series_of_browser(browser) if browser is not None else None
        slider = self.ui.seriesSlider
        slider.blockSignals(True)
        count = self.series["sequence"].GetNumberOfDataNodes() if self.series else 0
        slider.maximum = max(0, count - 1)
        slider.value = browser.GetSelectedItemNumber() if self.series else 0
        slider.blockSignals(False)
        slider.enabled = self.series is not None
        self.ui.seriesLabel.toolTip = _("{count} steps; the last is the counterfactual").format(count=count)

    def onSeriesStep(self, index: int) -> None:
        if self.series is not None:
            self.logic.showSeriesStep(self.series, index)

    # -- buttons ---------------------------------------------------------------------------------------------------
    def onVolumeRenderToggled(self, checked: bool) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to volume-render the heat map."), waitCursor=True):
            p = self.parameterNode
            if p and p.heatmap:
                self.logic.showHeatmap3D(p.heatmap, bool(checked))

    def onShow3DButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to show the segmentation in 3D."), waitCursor=True):
            p = self.parameterNode
            if not p.prediction:
                raise ValueError(_("Run a segmentation first"))
            self.logic.showSegmentation3D(p.prediction)

    def onThresholdButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to threshold the heat map."), waitCursor=True):
            p = self.parameterNode
            if not p.heatmap:
                raise ValueError(_("Run an explanation first"))
            p.thresholdSegmentation = self.logic.thresholdHeatmap(p.heatmap, p.heatmapThreshold,
                                                                  p.thresholdSegmentation)
