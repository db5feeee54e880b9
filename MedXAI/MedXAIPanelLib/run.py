"""*Apply*: what it runs (predict, explain, or both) and where the outputs go (the *Outputs* selectors).

Before anything runs (on the main thread, where Slicer lets pip run): torch and the required packages, then the
optional ones the model or method needs (``nnunetv2``, ``shap``), each after asking. A model file or folder that
was not described yet is described first (a background job too). Then the steps run one after the other as
background jobs; each writes into the output node chosen under *Outputs* (none: a new node, which then becomes the
selected output).
"""

from __future__ import annotations

from typing import Any

import slicer
from MedXAILogicLib.logic.model import MODEL_FILE_CHOICE
from slicer.i18n import tr as _

from .section import Section

STEPS = {"predict and explain": ["predict", "explain"], "predict": ["predict"], "explain": ["explain"]}


class RunSection(Section):
    """The Apply button and the steps it chains."""

    def setup(self) -> None:
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self._pending: list[str] = []
        self._inputs: list = []

    # -- what every job needs ------------------------------------------------------------------------------------
    def device(self) -> str:
        return "cuda" if self.parameterNode.useGpu else "cpu"

    def modelAndEntry(self) -> tuple[Any, str]:
        """``(entry, --model argument)`` of the current choice (the entry None only for an undescribed path)."""
        model = self.logic.modelFromParameters(self.parameterNode)
        return self.logic.knownModel(model), model

    def modelArguments(self, command: str, entry: Any) -> list:
        """The nnU-Net / TotalSegmentator flags ``command`` takes (folds, checkpoint, mirroring, fast, organ)."""
        return self.logic.modelOptions(self.parameterNode, entry).arguments(command, entry)

    def ensurePackages(self, entry: Any, method: str | None = None, more: tuple = (), shapPlot: bool = True
                       ) -> bool:
        """torch and the required packages, then the optional ones this run needs (and ``more``); False when the
        user declined. ``shapPlot``: the explanation draws shap's plots when *Advanced* asks for them. Main thread
        only: Slicer's pip must not run from a background thread."""
        from MedXAILogicLib.logic.dependencies import optional_packages_for

        if not self.logic.ensureDependencies():
            return False
        plots = bool(shapPlot and method is not None and self.parameterNode.shapPlot)
        needed = optional_packages_for(entry, method, plots)
        return self.logic.ensureOptionalPackages(list(dict.fromkeys([*needed, *more])))

    def update(self) -> None:
        p = self.parameterNode
        ready = bool(p and self.panel.inputs.ready())
        if p and p.modelName == MODEL_FILE_CHOICE and not self.panel.model.modelArgument():
            ready = False
        self.jobs.update(ready)

    # -- Apply ------------------------------------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start."), waitCursor=True):
            if self.jobs.running:
                return
            entry, model = self.modelAndEntry()
            if entry is None and self.parameterNode.modelName != MODEL_FILE_CHOICE:
                raise ValueError(_("{model} is not in the model list (not installed here, or the list is still "
                                   "being read): press Refresh, or choose another model").format(model=model))
            if entry is None:  # a model file or folder: read what it is first (in the background), then run
                self.panel.model.describe(model, then=lambda described: self.start())
                return
            self.start()

    def start(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start."), waitCursor=True):
            p = self.parameterNode
            entry, _model = self.modelAndEntry()
            if entry.needs_class_target and not p.targetClass:
                raise ValueError(_("{model} is several models: choose the organ (Explain, Organ) whose model "
                                   "runs").format(model=entry.display_name))
            if "explain" in STEPS[p.steps]:
                self.panel.explain.targetArguments()  # a missing target is said now, not after the prediction
            if not self.ensurePackages(entry, p.method if "explain" in STEPS[p.steps] else None):
                return
            self._inputs = self.panel.inputs.inputNodes(entry)
            self._pending = list(STEPS[p.steps])
            self.ui.logTextEdit.clear()
            self.nextStep()

    def nextStep(self) -> None:
        p = self.parameterNode
        step = self._pending.pop(0)
        entry, model = self.modelAndEntry()
        explain = self.panel.explain
        if step == "predict" and entry.is_classification:
            task = self.logic.classify(self._inputs, model, device=self.device(), tableNode=p.resultsTable,
                                       extraArgs=self.modelArguments("classify", entry))
        elif step == "predict":
            task = self.logic.segment(self._inputs, model, device=self.device(), segmentationNode=p.prediction,
                                      extraArgs=self.modelArguments("segment", entry))
        else:
            task = self.logic.explain(
                self._inputs, model, method=p.method, device=self.device(), opacity=p.heatmapOpacity,
                methodArgs=explain.methodArguments() + self.modelArguments("explain", entry),
                heatmapNode=p.heatmap, shapPlot=p.shapPlot, **explain.targetArguments())
        self.jobs.run(task, _("Running {command}…").format(command=task.command), self.onStepDone)

    def onStepDone(self, outputs: dict) -> None:
        self.showOutputs(outputs)
        if self._pending:
            with slicer.util.tryWithErrorDisplay(_("Failed to start the next step.")):
                self.nextStep()
            return
        self.log(_("Done."))

    def showOutputs(self, outputs: dict) -> None:
        """Select the new nodes as the outputs (so Results shows them) and report the model's card and warning."""
        p = self.parameterNode
        if outputs.get("segmentation") is not None:
            p.prediction = outputs["segmentation"]
            self.panel.evaluate.setPrediction(outputs["segmentation"])
        if outputs.get("heatmap") is not None:
            p.heatmap = outputs["heatmap"]
        table = outputs.get("importance") or outputs.get("table")
        if table is not None and outputs.get("importance") is None:
            p.resultsTable = table
        elif table is not None:
            self.panel.results.showTable(table)
        if "card" in outputs or "domain_warning" in outputs:
            self.panel.model.showCard({"card": outputs.get("card"), "domain_warning": outputs.get("domain_warning")})
            if outputs.get("domain_warning"):
                self.log(_("Warning: {warning}").format(warning=outputs["domain_warning"]))
        if outputs.get("cost"):
            self.ui.costLabel.text = self.logic.describeCost(outputs["cost"])
        self.panel.results.showExplanationExtras(outputs)
