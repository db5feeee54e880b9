"""*Inputs*: one volume row per channel of the selected model, RGB inputs, sample data, one voxel grid."""

from __future__ import annotations

from typing import Any

import qt
import slicer
from MedXAILogicLib.logic.inputs import INPUT_HIDDEN_NODE_TYPES, INPUT_SELECTOR_NODE_TYPES
from slicer.i18n import tr as _

from .section import Section

#: Rows of the ``.ui`` bound to ``inputVolume1..4``; a model with more channels gets more rows, made here.
BOUND_ROWS = 4


class InputsSection(Section):
    """The channel rows follow the model (:meth:`setChannels`); extra rows keep their nodes as parameter-node
    references ``MedXAI.inputN`` (saved with the scene)."""

    def setup(self) -> None:
        self.channels = ["t1", "t1ce", "t2", "flair"]
        self.labels = [getattr(self.ui, f"inputLabel{i}") for i in range(1, BOUND_ROWS + 1)]
        self.selectors = [getattr(self.ui, f"inputVolume{i}") for i in range(1, BOUND_ROWS + 1)]
        self.extra: list[tuple[Any, Any, str]] = []  # (label, selector, reference role)
        for selector in self.selectors:
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.autoFillButton.connect("clicked(bool)", self.onAutoFillButton)
        self.ui.loadPhantomButton.connect("clicked(bool)", self.onLoadSampleButton)

    # -- rows ------------------------------------------------------------------------------------------------------
    def setChannels(self, channels: list[str]) -> None:
        """One labelled row per model channel: the bound rows, then rows made here."""
        self.channels = list(channels)
        for i, (label, selector) in enumerate(zip(self.labels, self.selectors)):
            label.visible = selector.visible = i < len(channels)
            if i < len(channels):
                label.text = channels[i] + ":"
                selector.toolTip = _("The {channel} volume (RGB volumes are converted to grey)").format(
                    channel=channels[i])
        layout = self.ui.extraInputsWidget.layout()
        while len(self.extra) < len(channels) - BOUND_ROWS:
            role = f"MedXAI.input{BOUND_ROWS + len(self.extra) + 1}"
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = list(INPUT_SELECTOR_NODE_TYPES)  # as the bound rows of the .ui: scalar and RGB
            selector.showChildNodeTypes = True  # volumes, no label maps
            selector.hideChildNodeTypes = list(INPUT_HIDDEN_NODE_TYPES)
            selector.noneEnabled = True
            selector.addEnabled = selector.removeEnabled = False
            selector.setMRMLScene(slicer.mrmlScene)
            label = qt.QLabel()
            layout.addRow(label, selector)
            selector.connect("currentNodeChanged(vtkMRMLNode*)",
                             lambda node, role=role: self.onExtraChanged(role, node))
            self.extra.append((label, selector, role))
            self._restoreExtra(selector, role)
        for i, (label, selector, _role) in enumerate(self.extra):
            channel = BOUND_ROWS + i
            label.visible = selector.visible = channel < len(channels)
            if channel < len(channels):
                label.text = channels[channel] + ":"
        self.ui.extraInputsWidget.visible = len(channels) > BOUND_ROWS
        self.update()

    def _restoreExtra(self, selector: Any, role: str) -> None:
        p = self.parameterNode
        node = p.parameterNode.GetNodeReference(role) if p else None
        selector.blockSignals(True)
        selector.setCurrentNode(node)
        selector.blockSignals(False)

    def restore(self) -> None:
        for _label, selector, role in self.extra:
            self._restoreExtra(selector, role)

    def onExtraChanged(self, role: str, node: Any) -> None:
        p = self.parameterNode
        if p:
            p.parameterNode.SetNodeReferenceID(role, node.GetID() if node else None)
        self.onInputChanged()

    def rowSelectors(self) -> list:
        selectors = self.selectors + [s for _label, s, _role in self.extra]
        return selectors[:len(self.channels)]

    def onInputChanged(self, node: Any = None) -> None:
        """Say at once when an input is an RGB volume (it is converted to grey when the model runs)."""
        notes = self.logic.colourNotes([s.currentNode() for s in self.rowSelectors()])
        self.ui.colourNoteLabel.text = "\n".join(notes)
        self.ui.colourNoteLabel.visible = bool(notes)

    def update(self) -> None:
        self.ui.loadPhantomButton.enabled = not self.jobs.running

    # -- what a run gets -------------------------------------------------------------------------------------------
    def ready(self) -> bool:
        return bool(self.rowSelectors() and self.rowSelectors()[0].currentNode())

    def inputNodes(self, entry: Any) -> list:
        """The selected input volumes, one per model channel (checked against the model), on one grid."""
        nodes = self.logic.checkInputs([s.currentNode() for s in self.rowSelectors()], entry)
        return self.offerResampling(nodes)

    def offerResampling(self, nodes: list) -> list:
        """When the inputs are on different grids, offer to resample them onto the first (declined: an error)."""
        mismatches = self.logic.gridMismatches(nodes)
        if not mismatches:
            return nodes
        from MedXAILogicLib import grids

        details = grids.describe_mismatches(nodes[0], mismatches)
        if not slicer.util.confirmYesNoDisplay(
            _("The input volumes are not on one voxel grid:\n{details}\n\nResample them onto {reference} "
              "(linear interpolation; new volumes are made, the originals are kept)?").format(
                details=details, reference=nodes[0].GetName())):
            raise ValueError(_("The inputs must share one voxel grid: {details}").format(details=details))
        resampled = self.logic.resampleInputs(nodes)
        for selector, node in zip(self.rowSelectors(), resampled):
            selector.setCurrentNode(node)
        self.log(_("Resampled onto {reference}: {names}").format(
            reference=nodes[0].GetName(), names=", ".join(n.GetName() for n in resampled[1:])))
        return resampled

    # -- buttons ---------------------------------------------------------------------------------------------------
    def onAutoFillButton(self) -> None:
        """Fill the channel rows from node names (t1, t1ce, t2, flair, or the model's channel names)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to pick the input volumes."), waitCursor=True):
            for selector, node in zip(self.rowSelectors(), self.logic.guessInputVolumes(self.channels)):
                if node is not None:
                    selector.setCurrentNode(node)

    def onLoadSampleButton(self) -> None:
        """The sample case of the selected built-in model: the brain phantom, or the chest X-ray phantom."""
        with slicer.util.tryWithErrorDisplay(_("Failed to make the sample data."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            p = self.parameterNode
            xray = p.modelName == "demo-chest-xray"
            case = self.logic.loadChestXrayCase() if xray else self.logic.loadPhantomCase()
            self.panel.model.selectModel("demo-chest-xray" if xray else "demo-brain-tumour")
            for selector, node in zip(self.rowSelectors(), case["volumes"]):
                selector.setCurrentNode(node)
            p.referenceSegmentation = case["reference"]
            self.panel.evaluate.setReference(case["reference"])
