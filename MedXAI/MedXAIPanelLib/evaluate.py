"""*Evaluate*: Dice / IoU / HD95 of a prediction, the explanation's quality, and methods compared; each a
cancellable background job whose table goes to the *Outputs* table (none: a new one)."""

from __future__ import annotations

from typing import Any

import slicer
from slicer.i18n import tr as _

from .results import nodeID
from .section import Section


class EvaluateSection(Section):
    """The prediction and reference segment selectors are saved in the parameter node (code-set parameters
    ``evaluatePrediction``, ``evaluatePredictionSegmentID``, ``evaluateReferenceSegmentID``)."""

    def setup(self) -> None:
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.qualityButton.connect("clicked(bool)", self.onQualityButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        for selector in (self.ui.predictionSegmentSelector, self.ui.referenceSegmentSelector):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.storeSelection)
            selector.connect("currentSegmentChanged(QString)", self.storeSelection)

    def setPrediction(self, node: Any) -> None:
        self.ui.predictionSegmentSelector.setCurrentNode(node)

    def setReference(self, node: Any) -> None:
        self.ui.referenceSegmentSelector.setCurrentNode(node)

    def storeSelection(self, *args: Any) -> None:
        p = self.parameterNode
        if not p:
            return
        prediction = self.ui.predictionSegmentSelector
        reference = self.ui.referenceSegmentSelector
        if nodeID(p.evaluatePrediction) != nodeID(prediction.currentNode()):
            p.evaluatePrediction = prediction.currentNode()
        if p.evaluatePredictionSegmentID != (prediction.currentSegmentID() or ""):
            p.evaluatePredictionSegmentID = prediction.currentSegmentID() or ""
        if reference.currentNode() is not None and nodeID(p.referenceSegmentation) != nodeID(reference.currentNode()):
            p.referenceSegmentation = reference.currentNode()
        if p.evaluateReferenceSegmentID != (reference.currentSegmentID() or ""):
            p.evaluateReferenceSegmentID = reference.currentSegmentID() or ""

    def restore(self) -> None:
        p = self.parameterNode
        for selector, node, segment in ((self.ui.predictionSegmentSelector, p.evaluatePrediction,
                                         p.evaluatePredictionSegmentID),
                                        (self.ui.referenceSegmentSelector, p.referenceSegmentation,
                                         p.evaluateReferenceSegmentID)):
            selector.blockSignals(True)
            selector.setCurrentNode(node)
            if segment:
                selector.setCurrentSegmentID(segment)
            selector.blockSignals(False)

    def update(self) -> None:
        p = self.parameterNode
        selector = self.ui.referenceSegmentSelector
        if p and nodeID(selector.currentNode()) != nodeID(p.referenceSegmentation):  # chosen under Inputs
            selector.blockSignals(True)
            selector.setCurrentNode(p.referenceSegmentation)
            selector.blockSignals(False)
        idle = not self.jobs.running
        ready = self.panel.inputs.ready()
        self.ui.evaluateButton.enabled = idle and bool(p and (p.evaluatePrediction or p.prediction))
        self.ui.qualityButton.enabled = idle and ready and bool(p and p.heatmap)
        self.ui.compareButton.enabled = idle and ready

    def onEvaluateButton(self) -> None:
        """Dice, IoU, HD95 and volumes, as a background job (Cancel stops it)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to evaluate."), waitCursor=True):
            p = self.parameterNode
            prediction = p.evaluatePrediction or p.prediction
            reference = p.referenceSegmentation
            grid = self.panel.inputs.rowSelectors()[0].currentNode()
            if not prediction or not reference or not grid:
                raise ValueError(_("Choose a prediction, a reference segmentation and the input volume"))
            if not self.panel.run.ensurePackages(None):  # evaluate needs no model: torch and MONAI only
                return
            task = self.logic.evaluate(prediction, reference, grid,
                                       predictionSegment=p.evaluatePredictionSegmentID or None,
                                       referenceSegment=p.evaluateReferenceSegmentID or None, tableNode=p.resultsTable)
            self.jobs.run(task, _("Computing Dice, IoU and HD95…"), self.onTable)

    def onQualityButton(self) -> None:
        """Explanation quality of the current heat map, as a background job."""
        with slicer.util.tryWithErrorDisplay(_("Failed to evaluate the explanation."), waitCursor=True):
            p = self.parameterNode
            if not p.heatmap or not p.referenceSegmentation:
                raise ValueError(_("Run an explanation and choose a reference segmentation first"))
            run = self.panel.run
            entry, model = run.modelAndEntry()
            method = p.heatmap.GetAttribute("MedXAI.Method") or p.method  # stability and sanity re-run it
            if not run.ensurePackages(entry, method, shapPlot=False):
                return
            task = self.logic.evaluateExplanation(
                p.heatmap, self.panel.inputs.inputNodes(entry), model, p.referenceSegmentation,
                referenceSegment=p.evaluateReferenceSegmentID or None, slowMetrics=p.qualitySlowMetrics,
                tableNode=p.resultsTable)
            self.jobs.run(task, _("Measuring explanation quality…"), self.onTable)

    def onCompareButton(self) -> None:
        """Explain the same target with several methods and measure their agreement, as a background job."""
        with slicer.util.tryWithErrorDisplay(_("Failed to compare the methods."), waitCursor=True):
            p = self.parameterNode
            run = self.panel.run
            entry, model = run.modelAndEntry()
            methods = [m.strip() for m in p.compareMethods.split(",") if m.strip()]
            if not run.ensurePackages(entry, "partitionshap" if "partitionshap" in methods else None, shapPlot=False):
                return
            target = self.panel.explain.targetArguments()
            task = self.logic.compare(self.panel.inputs.inputNodes(entry), model, p.compareMethods,
                                      device=run.device(), opacity=p.heatmapOpacity,
                                      extraArgs=run.modelArguments("compare", entry), **target)
            self.jobs.run(task, _("Comparing {methods}…").format(methods=p.compareMethods), self.onCompared)

    def onTable(self, outputs: dict) -> None:
        self.parameterNode.resultsTable = outputs["table"]

    def onCompared(self, outputs: dict) -> None:
        self.parameterNode.heatmap = outputs["heatmap"]
        self.panel.results.showTable(outputs["table"])
