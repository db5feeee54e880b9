"""MedXAI: explainable AI for medical images, as a 3D Slicer module.

The panel (this file and ``Resources/UI/MedXAI.ui``) collects choices in a parameter node; the logic turns nodes
into files through the Qt-free bridge (``MedXAILogicLib``), runs ``python -m MedXAILib`` in a background process
and turns its outputs back into nodes. The panel follows the selected model: its input rows, target classes and the
method parameters all come from the core (``models --json``, ``methods --json``). Nothing third-party is imported at
file scope and nothing runs on import: numpy, MedXAILib and the bridge are imported inside the functions that need
them (importing ``MedXAILogicLib`` also finds ``MedXAILib`` in a developer's checkout).
"""

import json
import logging
import os
import pathlib
import time
from typing import Annotated, Any, Optional

import qt
import slicer
import vtk
from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODEL_FILE_CHOICE = "model file or folder"
#: Shown until the core has listed its models (and when it cannot): the built-in demos.
BUILTIN_MODEL_NAMES = ["demo-brain-tumour", "demo-chest-xray"]
#: Shown until the core has listed its methods (and when it cannot).
METHOD_CHOICES = ["gradcam", "gradcampp", "hirescam", "scorecam", "lrp", "ig", "gradientshap", "kernelshap", "lime",
                  "occlusion"]
TARGET_CHOICES = ["predicted region or top class", "class", "segment", "markup point"]
STEP_CHOICES = ["predict and explain", "predict", "explain"]
#: Input rows bound to the parameter node; a model with more channels gets more rows, made in code.
CHANNEL_WIDGETS = ["inputVolume1", "inputVolume2", "inputVolume3", "inputVolume4"]
#: Parameters the panel sets from code because their choices come from the selected model or method (no binding).
CODE_SET_PARAMETERS = ["modelName", "method", "methodParameters", "targetClass"]
PHANTOM_SEED = 7
XRAY_SEED = 20261126  # the `demo` command's held-out chest phantom (the demo models were trained on seeds < 10 000)


#
# MedXAI
#


class MedXAI(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedXAI")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedXAI contributors"]
        self.parent.helpText = _(
            "Segment or classify an image with a model, explain the result with a heat map (Grad-CAM and more), "
            "and measure how far to trust it (Dice, IoU, HD95). Work runs in a background process and can be "
            "cancelled. See <a href=\"https://github.com/medxai/SlicerMedXAI/blob/main/docs/slicer.md\">the "
            "documentation</a>."
        )
        self.parent.acknowledgementText = _(
            "MedXAI builds on MONAI, PyTorch (through the PyTorch extension), SimpleITK and captum."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data
#


def registerSampleData():
    """Add one sample per built-in model to the Sample Data module (both generated locally; no download)."""
    try:
        import SampleData
    except ImportError:
        return
    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    for sampleName, loader in (("MedXAIBrainPhantom", loadPhantomSample), ("MedXAIChestXray", loadChestXraySample)):
        try:
            SampleData.SampleDataLogic.registerCustomSampleDataSource(
                category="MedXAI",
                sampleName=sampleName,
                thumbnailFileName=os.path.join(iconsPath, "MedXAI.png"),
                customDownloader=loader,
            )
        except Exception as exc:  # an older Sample Data module: the samples are still in the panel's button
            logging.warning(f"MedXAI: could not register the sample {sampleName} ({exc})")


def loadPhantomSample(source=None):
    """Sample Data's callback: make the brain phantom (for demo-brain-tumour) and return its nodes."""
    logic = MedXAILogic()
    if not logic.ensureDependencies():
        return []
    case = logic.loadPhantomCase()
    return case["volumes"] + [case["reference"]]


def loadChestXraySample(source=None):
    """Sample Data's callback: make the chest X-ray phantom (for demo-chest-xray) and return its nodes."""
    logic = MedXAILogic()
    if not logic.ensureDependencies():
        return []
    case = logic.loadChestXrayCase()
    return case["volumes"] + [case["reference"]]


#
# MedXAIParameterNode
#


@parameterNodeWrapper
class MedXAIParameterNode:
    """The panel's state.

    inputVolume1..4 - one scalar volume per model channel (more rows are made in code for models with more channels).
    referenceSegmentation - optional ground truth for Evaluate.
    modelName / modelPath - a listed model (built-in, Model Zoo, cached, nnU-Net …), or a model file or folder;
    useGpu asks for CUDA (CPU fallback).
    steps - what Apply runs. method / methodParameters - the explainer and its parameter values (a JSON object).
    targetKind / targetClass / targetPoint - what is explained (the segment comes from the segment selector).
    heatmapOpacity / heatmapThreshold / heatmapVolumeRendering - display of the result; heatmap, prediction,
    resultsTable - outputs; thresholdSegmentation - where "Threshold to segment" adds its segment.
    qualitySlowMetrics - Evaluate's explanation quality also runs stability and sanity (they re-run the explainer).
    compareMethods - the methods "Compare methods" runs on the same target (comma-separated).
    modelName, method, methodParameters and targetClass are set by the panel (CODE_SET_PARAMETERS): their choices
    come from the selected model and method.
    """

    inputVolume1: vtkMRMLScalarVolumeNode
    inputVolume2: vtkMRMLScalarVolumeNode
    inputVolume3: vtkMRMLScalarVolumeNode
    inputVolume4: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    modelName: str = "demo-brain-tumour"
    modelPath: pathlib.Path
    useGpu: bool = False
    steps: Annotated[str, Choice(STEP_CHOICES)] = "predict and explain"
    method: str = "gradcam"
    methodParameters: str = ""
    targetKind: Annotated[str, Choice(TARGET_CHOICES)] = "predicted region or top class"
    targetClass: str = ""
    targetPoint: vtkMRMLMarkupsFiducialNode
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    heatmapThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    heatmapVolumeRendering: bool = False
    heatmap: vtkMRMLScalarVolumeNode
    prediction: vtkMRMLSegmentationNode
    thresholdSegmentation: vtkMRMLSegmentationNode
    resultsTable: vtkMRMLTableNode
    qualitySlowMetrics: bool = False
    compareMethods: str = "gradcam,saliency,lrp"


#
# MedXAIWidget
#


class MedXAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: Inputs, Model, Explain, Run/Cancel, Results, Evaluate. It follows the selected model."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._task = None
        self._pendingSteps = []
        self._timer = None
        self._extraSelectors = []  # (label, qMRMLNodeComboBox) for channels beyond the four bound rows
        self._parameterWidgets = {}  # parameter name -> widget of the selected method
        self._updatingModel = False
        self._refreshing = False
        self._channels = ["t1", "t1ce", "t2", "flair"]  # the selected model's input channels (one row each)
        self._inputs = []

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedXAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedXAILogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self.onTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.estimateButton.connect("clicked(bool)", self.onEstimateButton)
        self.ui.autoFillButton.connect("clicked(bool)", self.onAutoFillButton)
        self.ui.loadPhantomButton.connect("clicked(bool)", self.onLoadSampleButton)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshModelsButton)
        self.ui.browseModelFolderButton.connect("clicked(bool)", self.onBrowseModelFolderButton)
        self.ui.thresholdButton.connect("clicked(bool)", self.onThresholdButton)
        self.ui.show3DButton.connect("clicked(bool)", self.onShow3DButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.qualityButton.connect("clicked(bool)", self.onQualityButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.reportButton.connect("clicked(bool)", self.onReportButton)
        self.ui.opacitySlider.connect("valueChanged(double)", self.onOpacityChanged)
        self.ui.volumeRenderCheckBox.connect("toggled(bool)", self.onVolumeRenderToggled)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.targetClassComboBox.connect("currentIndexChanged(int)", self.onTargetClassChanged)
        self.ui.targetKindComboBox.connect("currentIndexChanged(int)", self.updateTargetWidgets)
        self.ui.targetPointSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onTargetPointChanged)
        self.ui.heatmapSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onHeatmapSelected)
        self.ui.resultsTableSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onTableSelected)

        self.initializeParameterNode()
        self._fillModelList(self.logic.builtinModels(), None)
        self._fillMethodList()
        self.updateTargetWidgets()
        # ask the core which models and method parameters it offers once the panel is shown
        qt.QTimer.singleShot(0, self.onRefreshModelsButton)

    def cleanup(self) -> None:
        if self._task is not None and not self._task.finished:
            self._task.cancel()
        if self._timer is not None:
            self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        if self._task is not None and not self._task.finished:
            self._task.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        combo = self.ui.modelComboBox
        if combo.count:  # a new scene's parameter node: show its model (and the rows that follow from it)
            self._updatingModel = True
            combo.setCurrentIndex(max(0, combo.findData(self._parameterNode.modelName)))
            self._updatingModel = False
            self.onModelChanged()
        if not self._parameterNode.inputVolume1:
            self.onAutoFillButton()

    def setParameterNode(self, inputParameterNode: Optional[MedXAIParameterNode]) -> None:  # noqa: UP045 - Slicer 5.8 runs Python 3.9
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    # -- state -----------------------------------------------------------------------------------------------
    def _running(self) -> bool:
        return self._task is not None and not self._task.finished

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._running():
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the running job; nothing it made is kept")
            self.ui.applyButton.enabled = True
            self.ui.qualityButton.enabled = False
            self.ui.compareButton.enabled = False
            self.ui.reportButton.enabled = False
            return
        self.ui.applyButton.text = _("Apply")
        p = self._parameterNode
        ready = bool(p and p.inputVolume1)
        if p and p.modelName == MODEL_FILE_CHOICE and not str(p.modelPath or "").strip(". "):
            ready = False
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Run the model and explain it") if ready else _("Select the inputs first")
        self.ui.estimateButton.enabled = ready
        self.ui.qualityButton.enabled = bool(ready and p.heatmap)
        self.ui.compareButton.enabled = ready
        self.ui.reportButton.enabled = bool(ready)
        self.ui.show3DButton.enabled = bool(p and p.prediction)

    # -- the model list and what follows the model -------------------------------------------------------------
    def onRefreshModelsButton(self) -> None:
        """Ask the core for its models (and each method's parameters); describe a chosen model file or folder.

        The child processes are waited for with the GUI painting (``processEvents``); a second click meanwhile is
        ignored.
        """
        if self._refreshing:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to read the model list."), waitCursor=True):
            self._refreshing = True
            self.ui.refreshModelsButton.enabled = False
            self.ui.statusLabel.text = _("Reading the models and methods the core offers…")
            try:
                models, note = self.logic.listModels(refresh=True)
                self.logic.listMethods(refresh=True)
            finally:
                self._refreshing = False
                self.ui.refreshModelsButton.enabled = True
                self.ui.statusLabel.text = ""
            self._fillModelList(models, note)
            self._fillMethodList()
            if self._parameterNode and self._parameterNode.modelName == MODEL_FILE_CHOICE:
                self._describeModelPath()

    def _fillModelList(self, models, note) -> None:
        combo = self.ui.modelComboBox
        wanted = self._parameterNode.modelName if self._parameterNode else BUILTIN_MODEL_NAMES[0]
        self._updatingModel = True
        try:
            combo.clear()
            for entry in models:
                combo.addItem(f"{entry.name}  ({entry.source}, {entry.task})", entry.name)
                combo.setItemData(combo.count - 1, entry.summary(), qt.Qt.ToolTipRole)
            combo.addItem(_("model file or folder…"), MODEL_FILE_CHOICE)
            index = max(0, combo.findData(wanted))
            combo.setCurrentIndex(index)
        finally:
            self._updatingModel = False
        if note:
            self._log(note)
        self.onModelChanged()

    def onModelChanged(self, index=None) -> None:
        """Input rows, target classes, methods and the model's card follow the selected model."""
        if self._updatingModel or not self._parameterNode:
            return
        name = self.ui.modelComboBox.currentData or BUILTIN_MODEL_NAMES[0]
        if self._parameterNode.modelName != name:
            self._parameterNode.modelName = name
        isFile = name == MODEL_FILE_CHOICE
        self.ui.modelPathLineEdit.enabled = self.ui.browseModelFolderButton.enabled = isFile
        entry = self.logic.knownModel(self._modelArgument())
        self._applyModelEntry(entry)

    def _modelArgument(self) -> str:
        p = self._parameterNode
        if p.modelName == MODEL_FILE_CHOICE:
            return str(p.modelPath or "").strip()
        return p.modelName

    def _applyModelEntry(self, entry) -> None:
        if entry is None:
            channels = [_("input {n}").format(n=n) for n in range(1, len(CHANNEL_WIDGETS) + 1)]
            self.ui.modelInfoLabel.text = _("Choose a model file or folder; its description is read when chosen.")
        else:
            channels = list(entry.channels)
            self.ui.modelInfoLabel.text = entry.summary()
        self._setInputRows(channels)
        classes = entry.target_classes() if entry is not None else []
        combo = self.ui.targetClassComboBox
        wanted = self._parameterNode.targetClass
        combo.blockSignals(True)
        combo.clear()
        for name in classes:
            combo.addItem(name)
        combo.setCurrentIndex(max(0, combo.findText(wanted)) if classes else -1)
        combo.blockSignals(False)
        self.onTargetClassChanged()
        self._fillMethodList()
        self._checkCanApply()

    def onModelPathChanged(self, path=None) -> None:
        """A chosen model file is described at once; a folder typed by hand waits for Folder…, Refresh or Apply
        (every existing folder on the way to it would otherwise be loaded as a model)."""
        if not self._parameterNode or self._parameterNode.modelName != MODEL_FILE_CHOICE or self._updatingModel:
            return
        path = str(self._parameterNode.modelPath or "").strip()
        if os.path.isfile(path):
            self._describeModelPath()
        else:
            self._applyModelEntry(self.logic.knownModel(path))

    def _describeModelPath(self) -> None:
        path = str(self._parameterNode.modelPath or "").strip()
        if not path or path == "." or not os.path.exists(path):
            self._applyModelEntry(None)
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to read the model's description."), waitCursor=True):
            self.ui.statusLabel.text = _("Reading the model's description…")
            try:
                entry = self.logic.modelEntry(path)
            finally:
                self.ui.statusLabel.text = ""
            self._applyModelEntry(entry)

    def onBrowseModelFolderButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to choose the model folder."), waitCursor=False):
            title = _("Choose a model folder (MONAI bundle, nnU-Net or TotalSegmentator results)")
            folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), title,
                                                         str(self._parameterNode.modelPath or ""))
            if folder:
                self._parameterNode.modelPath = pathlib.Path(folder)
                self._describeModelPath()

    def _fillMethodList(self) -> None:
        entry = self.logic.knownModel(self._modelArgument()) if self._parameterNode else None
        names = self.logic.methodNames(entry)
        combo = self.ui.methodComboBox
        wanted = self._parameterNode.method if self._parameterNode else "gradcam"
        combo.blockSignals(True)
        combo.clear()
        for name in names:
            combo.addItem(name)
        combo.setCurrentIndex(max(0, combo.findText(wanted)))
        combo.blockSignals(False)
        self.onMethodChanged()

    def onMethodChanged(self, index=None) -> None:
        """One widget per parameter of the method (type, range, default and help from ``methods --json``)."""
        if not self._parameterNode:
            return
        method = self.ui.methodComboBox.currentText or "gradcam"
        if self._parameterNode.method != method:
            self._parameterNode.method = method
        saved = self._savedParameterValues(method)
        layout = self.ui.methodParametersWidget.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self._parameterWidgets = {}
        for spec in self.logic.methodParameterSpecs(method):
            widget = self._parameterWidget(spec, saved.get(spec.name, spec.default))
            widget.toolTip = spec.help or _("default: {value}").format(value=spec.default)
            layout.addRow(spec.name.replace("_", " ") + ":", widget)
            self._parameterWidgets[spec.name] = (spec, widget)
        self.ui.methodParametersWidget.visible = bool(self._parameterWidgets)
        self._storeParameterValues()

    def _parameterWidget(self, spec, value):
        if spec.kind == "bool":
            widget = qt.QCheckBox()
            widget.checked = bool(value)
            widget.connect("toggled(bool)", self._storeParameterValues)
        elif spec.kind in ("int", "float"):
            widget = qt.QSpinBox() if spec.kind == "int" else qt.QDoubleSpinBox()
            if spec.kind == "float":
                widget.decimals = 4
            cast = int if spec.kind == "int" else float
            widget.minimum, widget.maximum = cast(spec.minimum), cast(spec.maximum)
            widget.value = cast(value if value is not None else 0)
            widget.connect("valueChanged(double)" if spec.kind == "float" else "valueChanged(int)",
                           self._storeParameterValues)
        elif spec.kind == "choice":
            widget = qt.QComboBox()
            for choice in spec.choices:
                widget.addItem(choice)
            widget.setCurrentIndex(max(0, widget.findText(str(value))))
            widget.connect("currentIndexChanged(int)", self._storeParameterValues)
        else:
            widget = qt.QLineEdit()
            widget.text = "" if value is None else str(value)
            widget.placeholderText = _("default") if spec.default in (None, "") else str(spec.default)
            widget.connect("editingFinished()", self._storeParameterValues)
        return widget

    def _parameterValues(self) -> dict:
        values = {}
        for name, (spec, widget) in self._parameterWidgets.items():
            if spec.kind == "bool":
                values[name] = bool(widget.checked)
            elif spec.kind in ("int", "float"):
                values[name] = widget.value
            elif spec.kind == "choice":
                values[name] = widget.currentText
            else:
                values[name] = widget.text
        return values

    def _savedParameterValues(self, method: str) -> dict:
        try:
            saved = json.loads(self._parameterNode.methodParameters or "{}")
        except ValueError:
            return {}
        return saved.get("values", {}) if isinstance(saved, dict) and saved.get("method") == method else {}

    def _storeParameterValues(self, *args) -> None:
        if self._parameterNode:
            text = json.dumps({"method": self._parameterNode.method, "values": self._parameterValues()})
            if self._parameterNode.methodParameters != text:
                self._parameterNode.methodParameters = text

    def onTargetClassChanged(self, index=None) -> None:
        if self._parameterNode:
            text = self.ui.targetClassComboBox.currentText or ""
            if self._parameterNode.targetClass != text:
                self._parameterNode.targetClass = text

    def updateTargetWidgets(self, index=None) -> None:
        kind = self.ui.targetKindComboBox.currentText
        self.ui.targetClassComboBox.enabled = kind == "class"
        self.ui.targetSegmentSelector.enabled = kind == "segment"
        self.ui.targetPointSelector.enabled = self.ui.targetPointPlaceWidget.enabled = kind == "markup point"

    def onTargetPointChanged(self, node) -> None:
        self.ui.targetPointPlaceWidget.setCurrentNode(node)

    # -- inputs -----------------------------------------------------------------------------------------------
    def _setInputRows(self, channels) -> None:
        """One labelled selector per model channel: the four bound rows, then rows made here."""
        self._channels = list(channels)
        labels = [self.ui.inputLabel1, self.ui.inputLabel2, self.ui.inputLabel3, self.ui.inputLabel4]
        selectors = [self.ui.inputVolume1, self.ui.inputVolume2, self.ui.inputVolume3, self.ui.inputVolume4]
        for i, (label, selector) in enumerate(zip(labels, selectors)):
            label.visible = selector.visible = i < len(channels)
            if i < len(channels):
                label.text = channels[i] + ":"
                selector.toolTip = _("The {channel} volume").format(channel=channels[i])
        layout = self.ui.extraInputsWidget.layout()
        while len(self._extraSelectors) < len(channels) - len(selectors):
            n = len(selectors) + len(self._extraSelectors) + 1
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.showChildNodeTypes = False  # no label maps
            selector.noneEnabled = True
            selector.addEnabled = selector.removeEnabled = False
            selector.setMRMLScene(slicer.mrmlScene)
            label = qt.QLabel()
            layout.addRow(label, selector)
            role = f"MedXAI.input{n}"
            selector.setCurrentNode(self._parameterNode.parameterNode.GetNodeReference(role))
            selector.connect("currentNodeChanged(vtkMRMLNode*)",
                             lambda node, role=role: self._storeExtraInput(role, node))
            self._extraSelectors.append((label, selector))
        for i, (label, selector) in enumerate(self._extraSelectors):
            channel = len(selectors) + i
            label.visible = selector.visible = channel < len(channels)
            if channel < len(channels):
                label.text = channels[channel] + ":"
        self.ui.extraInputsWidget.visible = len(channels) > len(selectors)

    def _storeExtraInput(self, role: str, node) -> None:
        if self._parameterNode:
            self._parameterNode.parameterNode.SetNodeReferenceID(role, node.GetID() if node else None)

    def _inputSelectors(self) -> list:
        selectors = [self.ui.inputVolume1, self.ui.inputVolume2, self.ui.inputVolume3, self.ui.inputVolume4]
        selectors += [s for _label, s in self._extraSelectors]
        return selectors[:len(self._channels)]  # (isVisible() is False for all until the panel is shown)

    def _inputNodes(self) -> list:
        """The selected input volumes, one per model channel (checked against the model)."""
        nodes = [s.currentNode() for s in self._inputSelectors()]
        return self.logic.checkInputs(nodes, self.logic.knownModel(self._modelArgument()))

    def onAutoFillButton(self) -> None:
        """Fill the channel selectors from node names (t1, t1ce, t2, flair, or the model's channel names)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to pick the input volumes."), waitCursor=True):
            if not self._parameterNode:
                return
            entry = self.logic.knownModel(self._parameterNode.modelName)
            chosen = self.logic.guessInputVolumes(entry.channels if entry else ["t1", "t1ce", "t2", "flair"])
            for selector, node in zip(self._inputSelectors(), chosen):
                if node is not None:
                    selector.setCurrentNode(node)

    def onLoadSampleButton(self) -> None:
        """The sample case of the selected built-in model: the brain phantom, or the chest X-ray phantom."""
        with slicer.util.tryWithErrorDisplay(_("Failed to make the sample data."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            xray = self._parameterNode.modelName == "demo-chest-xray"
            case = self.logic.loadChestXrayCase() if xray else self.logic.loadPhantomCase()
            model = "demo-chest-xray" if xray else "demo-brain-tumour"
            self.ui.modelComboBox.setCurrentIndex(max(0, self.ui.modelComboBox.findData(model)))
            for selector, node in zip(self._inputSelectors(), case["volumes"]):
                selector.setCurrentNode(node)
            self._parameterNode.referenceSegmentation = case["reference"]
            self.ui.referenceSegmentSelector.setCurrentNode(case["reference"])

    def _offerResampling(self, nodes: list) -> list:
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
        for selector, node in zip(self._inputSelectors(), resampled):
            selector.setCurrentNode(node)
        self._log(_("Resampled onto {reference}: {names}").format(
            reference=nodes[0].GetName(), names=", ".join(n.GetName() for n in resampled[1:])))
        return resampled

    # -- run / cancel -------------------------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        if self._running():
            self.onCancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            p = self._parameterNode
            if p.modelName == MODEL_FILE_CHOICE:  # read what the model is before its inputs are checked
                self._applyModelEntry(self.logic.modelEntry(self.logic.modelFromParameters(p)))
            inputs = self._offerResampling(self._inputNodes())
            steps = {"predict and explain": ["predict", "explain"], "predict": ["predict"],
                     "explain": ["explain"]}[p.steps]
            self.ui.logTextEdit.clear()
            self._pendingSteps = list(steps)
            self._inputs = inputs
            self._startNextStep()

    def _startNextStep(self) -> None:
        p = self._parameterNode
        step = self._pendingSteps.pop(0)
        inputs = self._inputs
        model = self.logic.modelFromParameters(p)
        device = "cuda" if p.useGpu else "cpu"
        if step == "predict":
            if self.logic.isClassificationModel(model):
                self._task = self.logic.classify(inputs, model, device=device)
            else:
                self._task = self.logic.segment(inputs, model, device=device)
        else:
            self._task = self.logic.explain(inputs, model, device=device, **self._targetArguments())
        self._log(_("Running {command}…").format(command=self._task.command))
        self.ui.progressBar.value = 0
        self._timer.start()
        self._checkCanApply()

    def _targetArguments(self) -> dict:
        p = self._parameterNode
        specs = [spec for spec, _widget in self._parameterWidgets.values()]
        args = {"method": p.method, "methodArgs": self.logic.methodArguments(specs, self._parameterValues()),
                "opacity": p.heatmapOpacity}
        kind = p.targetKind
        if kind == "class":
            if not p.targetClass:
                raise ValueError(_("Choose the class to explain"))
            args["target"] = p.targetClass
        elif kind == "segment":
            args["regionSegmentation"] = self.ui.targetSegmentSelector.currentNode()
            args["regionSegment"] = self.ui.targetSegmentSelector.currentSegmentID()
        elif kind == "markup point":
            args["markupsNode"] = p.targetPoint
        return args

    def onCancel(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to cancel."), waitCursor=True):
            self._pendingSteps = []
            if self._task is not None:
                self._task.cancel()
            self._log(_("Cancelled; nothing was kept."))
            self._afterTask()

    def onTimer(self) -> None:
        """Drain the running job's progress and log; handle its end (a failure shows the CLI's one line)."""
        task = self._task
        if task is None:
            self._timer.stop()
            return
        try:
            events = task.process_events()
        except Exception as exc:  # noqa: BLE001 - a bug while reading the job: one line to the user, details logged
            logging.exception("MedXAI: the running job could not be read")
            self._afterTask()
            slicer.util.errorDisplay(_("MedXAI failed: {message}").format(message=f"{type(exc).__name__}: {exc}"))
            return
        for event in events:
            if event.kind == "log" and event.text.strip():
                self._log(event.text)
        self.ui.progressBar.value = int(round(100 * task.fraction))
        self.ui.statusLabel.text = task.stage
        if not task.finished:
            return
        if task.status == "done":
            self._showOutputs(task.outputs)
            if self._pendingSteps:
                with slicer.util.tryWithErrorDisplay(_("Failed to start the next step.")):
                    self._startNextStep()
                return
            self._log(_("Done."))
        elif task.status == "failed":
            self._pendingSteps = []
            for line in task.log[-40:]:
                if line.startswith(("Traceback", "  File")):
                    self._log(line)
            self._log(_("Error: {message}").format(message=task.error))
            slicer.util.errorDisplay(_("MedXAI failed: {message}").format(message=task.error))
        self._afterTask()

    def _afterTask(self) -> None:
        self._timer.stop()
        self._task = None
        self.ui.statusLabel.text = ""
        self._checkCanApply()

    def _showOutputs(self, outputs: dict) -> None:
        p = self._parameterNode
        if outputs.get("segmentation") is not None:
            p.prediction = outputs["segmentation"]
            self.ui.predictionSegmentSelector.setCurrentNode(outputs["segmentation"])
        if outputs.get("heatmap") is not None:
            p.heatmap = outputs["heatmap"]  # onHeatmapSelected shows it
        table = outputs.get("importance") or outputs.get("table")
        if table is not None:
            p.resultsTable = table  # onTableSelected shows it
        if outputs.get("cost"):
            self.ui.costLabel.text = self.logic.describeCost(outputs["cost"])
        if outputs.get("html") is not None:
            self._log(_("Case report written: {html} and {pdf}").format(html=outputs["html"], pdf=outputs["pdf"]))

    def _log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)

    # -- explain: cost ------------------------------------------------------------------------------------------
    def onEstimateButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to estimate the cost."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            p = self._parameterNode
            text = self.logic.estimateCost(self._inputNodes(), self.logic.modelFromParameters(p), device=(
                "cuda" if p.useGpu else "cpu"), **{k: v for k, v in self._targetArguments().items() if k != "opacity"})
            self.ui.costLabel.text = text

    # -- results ------------------------------------------------------------------------------------------------
    def onOpacityChanged(self, value: float) -> None:
        self.logic.setHeatmapOpacity(value)

    def onHeatmapSelected(self, node) -> None:
        """The selected heat map is what the views show (slice overlay, and volume rendering when asked for)."""
        if node is None or not self._parameterNode:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to show the heat map."), waitCursor=True):
            self.logic.showHeatmap(node, self._parameterNode.heatmapOpacity,
                                   volumeRendering=self._parameterNode.heatmapVolumeRendering)

    def onTableSelected(self, node) -> None:
        self.ui.resultsTableView.setMRMLTableNode(node)

    def onVolumeRenderToggled(self, checked: bool) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to volume-render the heat map."), waitCursor=True):
            if self._parameterNode and self._parameterNode.heatmap:
                self.logic.showHeatmap3D(self._parameterNode.heatmap, bool(checked))

    def onShow3DButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to show the segmentation in 3D."), waitCursor=True):
            p = self._parameterNode
            if not p.prediction:
                raise ValueError(_("Run a segmentation first"))
            self.logic.showSegmentation3D(p.prediction)

    def onThresholdButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to threshold the heat map."), waitCursor=True):
            p = self._parameterNode
            if not p.heatmap:
                raise ValueError(_("Run an explanation first"))
            p.thresholdSegmentation = self.logic.thresholdHeatmap(p.heatmap, p.heatmapThreshold,
                                                                  p.thresholdSegmentation)

    # -- evaluate -----------------------------------------------------------------------------------------------
    def onEvaluateButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to evaluate."), waitCursor=True):
            p = self._parameterNode
            prediction = self.ui.predictionSegmentSelector.currentNode() or p.prediction
            reference = self.ui.referenceSegmentSelector.currentNode() or p.referenceSegmentation
            if not prediction or not reference or not p.inputVolume1:
                raise ValueError(_("Choose a prediction, a reference segmentation and the input volume"))
            outputs = self.logic.evaluate(
                prediction, reference, p.inputVolume1,
                predictionSegment=self.ui.predictionSegmentSelector.currentSegmentID() or None,
                referenceSegment=self.ui.referenceSegmentSelector.currentSegmentID() or None,
                waitForCompletion=True,
            )
            p.resultsTable = outputs["table"]

    def onQualityButton(self) -> None:
        """Explanation quality of the current heat map, as a background job (Apply turns into Cancel)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to evaluate the explanation."), waitCursor=True):
            if self._running():
                raise ValueError(_("Wait for the running job to finish, or cancel it"))
            if not self.logic.ensureDependencies():
                return
            p = self._parameterNode
            reference = self.ui.referenceSegmentSelector.currentNode() or p.referenceSegmentation
            if not p.heatmap or not reference:
                raise ValueError(_("Run an explanation and choose a reference segmentation first"))
            self.ui.logTextEdit.clear()
            self._pendingSteps = []
            self._task = self.logic.evaluateExplanation(
                p.heatmap, self._inputNodes(), self.logic.modelFromParameters(p), reference,
                referenceSegment=self.ui.referenceSegmentSelector.currentSegmentID() or None,
                slowMetrics=p.qualitySlowMetrics,
            )
            self._log(_("Measuring explanation quality…"))
            self.ui.progressBar.value = 0
            self._timer.start()
            self._checkCanApply()

    def onCompareButton(self) -> None:
        """Explain the same target with several methods and measure their agreement, as a background job."""
        with slicer.util.tryWithErrorDisplay(_("Failed to compare the methods."), waitCursor=True):
            if self._running():
                raise ValueError(_("Wait for the running job to finish, or cancel it"))
            if not self.logic.ensureDependencies():
                return
            p = self._parameterNode
            target = {k: v for k, v in self._targetArguments().items() if k not in ("method", "methodArgs")}
            self.ui.logTextEdit.clear()
            self._pendingSteps = []
            self._task = self.logic.compare(self._inputNodes(), self.logic.modelFromParameters(p), p.compareMethods,
                                            device="cuda" if p.useGpu else "cpu", **target)
            self._log(_("Comparing {methods}…").format(methods=p.compareMethods))
            self.ui.progressBar.value = 0
            self._timer.start()
            self._checkCanApply()

    def onReportButton(self) -> None:
        """Write the one-page case report (HTML + PDF) of the current inputs, model and method, in the background."""
        with slicer.util.tryWithErrorDisplay(_("Failed to write the case report."), waitCursor=True):
            if self._running():
                raise ValueError(_("Wait for the running job to finish, or cancel it"))
            if not self.logic.ensureDependencies():
                return
            path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save the case report"),
                                                  "case.html", _("HTML page (*.html)"))
            if not path:
                return
            p = self._parameterNode
            self.ui.logTextEdit.clear()
            self._pendingSteps = []
            self._task = self.logic.writeCaseReport(
                self._inputNodes(), path, self.logic.modelFromParameters(p), method=p.method,
                referenceSegmentation=self.ui.referenceSegmentSelector.currentNode() or p.referenceSegmentation,
                slowMetrics=p.qualitySlowMetrics, device="cuda" if p.useGpu else "cpu",
            )
            self._log(_("Writing the case report…"))
            self.ui.progressBar.value = 0
            self._timer.start()
            self._checkCanApply()


#
# MedXAILogic
#


class MedXAILogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, callable from the Python console.

    Example::

        logic = slicer.util.getModuleLogic("MedXAI")
        case = logic.loadPhantomCase()
        seg = logic.segment(case["volumes"], waitForCompletion=True)["segmentation"]
        heat = logic.explain(case["volumes"], waitForCompletion=True)["heatmap"]

    Args:
        runner: the job runner (default: a local subprocess per job); inject another one to test.
        commandPrefix: how to call the CLI (default: Slicer's Python with ``-m MedXAILib``).
    """

    def __init__(self, runner=None, commandPrefix=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.runner = runner
        self.commandPrefix = commandPrefix
        self._workflow = None
        self.dependenciesChecked = False
        self._models = None  # name -> ModelEntry, from `models --json` (or the built-in fallback)
        self._described = {}  # model path -> ModelEntry
        self._methods = None  # method name -> record from `methods --json`

    def getParameterNode(self):
        return MedXAIParameterNode(super().getParameterNode())

    def workflow(self):
        from MedXAILogicLib.workflow import Workflow

        if self._workflow is None or self._workflow.scene is not slicer.mrmlScene:
            self._workflow = Workflow(slicer.mrmlScene, runner=self.runner, command_prefix=self.commandPrefix)
        return self._workflow

    @staticmethod
    def _idle():
        slicer.app.processEvents()

    # -- dependencies ---------------------------------------------------------------------------------------
    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Make torch (through the PyTorch extension) and Resources/requirements.txt importable, asking first.

        Runs on the main thread (pip from a background thread crashes Slicer on macOS). Returns False when the
        user declined. In testing mode (``slicer.app.testingEnabled()``, as under ctest) the packages are installed
        without asking: ``pip_ensure`` would otherwise skip them there (Slicer ≥ 5.12) and the self-test could not run.
        """
        if self.dependenciesChecked:
            return True
        testing = bool(slicer.app.testingEnabled())
        ask = askConfirmation and not testing
        try:
            import PyTorchUtils
        except ImportError:
            message = _("MedXAI needs the PyTorch extension; install it from the Extensions Manager")
            raise RuntimeError(message) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if ask and not slicer.util.confirmOkCancelDisplay(
                _("MedXAI needs PyTorch. Install it now? This may take several minutes.")
            ):
                return False
            if torchLogic.installTorch(askConfirmation=False) is None:
                raise RuntimeError(_("PyTorch could not be installed; see the PyTorch Utils module"))
        requirements = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")
        try:
            import slicer.packaging as packaging  # Slicer >= 5.12
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            try:
                # under ctest nothing may wait for a click: no install question, no restart question
                packaging.pip_ensure(packaging.load_requirements(requirements), prompt_install=ask,
                                     prompt_restart=not testing, requester="MedXAI", skip_in_testing=False)
            except RuntimeError as exc:
                if "declined" in str(exc).lower():
                    return False
                raise
        else:  # older Slicer: check and install ourselves, after asking
            missing = missingRequirements(requirements)
            if missing:
                if ask and not slicer.util.confirmOkCancelDisplay(
                    _("MedXAI needs these Python packages: {packages}. Install them now?").format(
                        packages=", ".join(missing))
                ):
                    return False
                slicer.util.pip_install(" ".join(f'"{m}"' for m in missing))
        self.dependenciesChecked = True
        return True

    # -- what the core offers -------------------------------------------------------------------------------------
    def builtinModels(self) -> list:
        """The built-in models, read from their description files (instant; no child process)."""
        from MedXAILogicLib import catalog

        return catalog.builtin_entries()

    def listModels(self, refresh: bool = False):
        """``(entries, note)``: the models ``python -m MedXAILib models --json`` lists (built-in ones if it cannot)."""
        if self._models is None or refresh:
            entries, note = self.workflow().list_models(idle=self._idle)
            self._models = {e.name: e for e in entries}
            self._modelsNote = note
        return list(self._models.values()), getattr(self, "_modelsNote", None)

    def listMethods(self, refresh: bool = False) -> dict:
        """``{method: record}`` from ``methods --json``; empty when the core cannot list them (no torch yet)."""
        from MedXAILogicLib.workflow import JobFailedError

        if self._methods is None or refresh:
            try:
                self._methods = self.workflow().list_methods(idle=self._idle)
            except (JobFailedError, ValueError) as exc:
                logging.warning(f"MedXAI: the method list could not be read ({exc})")
                self._methods = {}
        return self._methods

    def knownModel(self, model: str):
        """The entry of a listed model or an already described path (None when unknown: no child is started)."""
        if not model:
            return None
        models = self._models if self._models is not None else {e.name: e for e in self.builtinModels()}
        return models.get(model) or self._described.get(model)

    def modelEntry(self, model: str):
        """What a model is (task, channels, classes): from the model list, or by describing a file or folder."""
        entry = self.knownModel(model)
        if entry is None:
            if not model:
                raise ValueError(_("Choose a model"))
            entry = self.workflow().describe_model(model, idle=self._idle)
            self._described[model] = entry
        return entry

    def methodNames(self, entry=None) -> list:
        """The methods that can explain ``entry`` (all listed ones when it is unknown)."""
        from MedXAILogicLib import catalog

        methods = self._methods or {}
        if not methods:
            return list(METHOD_CHOICES)
        return [name for name, record in methods.items() if entry is None or catalog.supports(record, entry)]

    def methodParameterSpecs(self, method: str) -> list:
        from MedXAILogicLib import catalog

        record = (self._methods or {}).get(method)
        return catalog.parameter_specs(record) if record else []

    @staticmethod
    def methodArguments(specs, values: dict) -> list:
        """``--param key=value`` flags for the values that differ from the method's defaults."""
        from MedXAILogicLib import catalog

        return catalog.method_arguments(specs, values)

    # -- parameters -> arguments ----------------------------------------------------------------------------
    @staticmethod
    def modelFromParameters(parameterNode) -> str:
        if parameterNode.modelName == MODEL_FILE_CHOICE:
            path = str(parameterNode.modelPath or "").strip()
            if not path or path == ".":
                raise ValueError(_("Choose a model file or folder"))
            return path
        return parameterNode.modelName

    def checkInputs(self, nodes: list, entry=None) -> list:
        """The input volumes for ``entry``'s channels: all selected, one per channel (in the model's order)."""
        nodes = list(nodes)
        if not nodes or nodes[0] is None:
            raise ValueError(_("Select the input volume(s) first"))
        if entry is not None:
            missing = [c for c, n in zip(entry.channels, nodes) if n is None]
            if missing or len(nodes) < len(entry.channels):
                raise ValueError(_("{model} takes {count} volume(s): {names}").format(
                    model=entry.name, count=len(entry.channels), names=", ".join(entry.channels)))
            return nodes[:len(entry.channels)]
        return [n for n in nodes if n is not None]

    def isClassificationModel(self, model: str) -> bool:
        """Is the model a classifier? Read from its description (the model list, or the file or folder itself)."""
        return self.modelEntry(model).is_classification

    def guessInputVolumes(self, channels) -> list:
        """One scalar volume per channel name, picked by node name (None where nothing fits)."""
        from MedXAILogicLib.workflow import match_channels

        nodes = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                 if not n.IsA("vtkMRMLLabelMapVolumeNode")
                 and n.GetAttribute("MedXAI.Role") in (None, "", "resampled input")]
        if len(channels) == 1:
            return [nodes[0] if nodes else None]
        picked = match_channels(list(channels), [n.GetName() for n in nodes])
        return [nodes[i] if i is not None else None for i in picked]

    def gridMismatches(self, nodes: list) -> list:
        """``(node, how it differs)`` for inputs whose world grid differs from the first one's."""
        from MedXAILogicLib import grids

        return grids.grid_mismatches(nodes)

    def resampleInputs(self, nodes: list) -> list:
        """The first node, and every other one resampled onto its grid where it differs (new nodes)."""
        from MedXAILogicLib import grids

        differing = {id(n) for n, _diff in grids.grid_mismatches(nodes)}
        return [nodes[0]] + [grids.resample_to_reference(slicer.mrmlScene, n, nodes[0]) if id(n) in differing else n
                             for n in nodes[1:]]

    # -- jobs ---------------------------------------------------------------------------------------------------
    def _finish(self, task, waitForCompletion: bool):
        if not waitForCompletion:
            return task
        return task.wait(idle=self._idle)

    def segment(self, inputNodes, model: str = "demo-brain-tumour", device: str = "cpu",
                waitForCompletion: bool = False):
        """Segment; returns the running task, or with ``waitForCompletion`` its outputs (``"segmentation"``).

        Segments are named after the model's classes (from its description).
        """
        entry = self.knownModel(model)
        names = entry.label_names() if entry is not None else None
        task = self.workflow().start_segment(list(inputNodes), model, device=device, class_names=names)
        return self._finish(task, waitForCompletion)

    def classify(self, inputNodes, model: str = "demo-chest-xray", device: str = "cpu",
                 waitForCompletion: bool = False):
        """Classify; outputs hold ``"table"`` and ``"scores"``. ``inputNodes``: one node or one per channel."""
        nodes = list(inputNodes) if isinstance(inputNodes, (list, tuple)) else [inputNodes]
        return self._finish(self.workflow().start_classify(nodes, model, device=device), waitForCompletion)

    def _explainTarget(self, inputNodes, regionSegmentation, regionSegment, markupsNode) -> dict:
        from MedXAILogicLib import bridge

        args: dict[str, Any] = {}
        if regionSegmentation is not None and regionSegment:
            args["region"] = (regionSegmentation, regionSegment)
        if markupsNode is not None:
            args["voxel"] = bridge.markup_point_to_ijk(markupsNode, inputNodes[0])
        return args

    def explain(self, inputNodes, model: str = "demo-brain-tumour", method: str = "gradcam",
                target: Optional[str] = None, regionSegmentation=None, regionSegment: Optional[str] = None,  # noqa: UP045 - Slicer 5.8 runs Python 3.9
                markupsNode=None, methodArgs=(), device: str = "cpu", opacity: float = 0.5,
                waitForCompletion: bool = False):
        """Explain; outputs hold ``"heatmap"``, ``"overlay"`` and, when the CLI reports them, ``"importance"``.

        ``methodArgs``: ``--param key=value`` flags (see :meth:`methodArguments`).
        """
        inputNodes = list(inputNodes)
        task = self.workflow().start_explain(
            inputNodes, model, method=method, target=target or None, method_args=methodArgs, device=device,
            opacity=opacity, **self._explainTarget(inputNodes, regionSegmentation, regionSegment, markupsNode))
        return self._finish(task, waitForCompletion)

    def compare(self, inputNodes, model: str = "demo-brain-tumour", methods: str = "gradcam,saliency,lrp",
                target: Optional[str] = None, regionSegmentation=None, regionSegment: Optional[str] = None,  # noqa: UP045 - Slicer 5.8 runs Python 3.9
                markupsNode=None, device: str = "cpu", opacity: float = 0.5, waitForCompletion: bool = False):
        """Explain one target with every method in ``methods`` (comma-separated) and measure their agreement.

        Outputs: ``"heatmap"`` (the consensus map), ``"agreement_map"``, ``"table"`` (per method: agreement with the
        consensus, seconds, Spearman rho to every other method) and ``"report"`` (``agreement.json``).
        """
        from MedXAILogicLib.compare_job import start_compare

        inputNodes = list(inputNodes)
        task = start_compare(self.workflow(), inputNodes, model, methods, target=target or None, device=device,
                             opacity=opacity,
                             **self._explainTarget(inputNodes, regionSegmentation, regionSegment, markupsNode))
        return self._finish(task, waitForCompletion)

    def estimateCost(self, inputNodes, model: str = "demo-brain-tumour", method: str = "gradcam",
                     target: Optional[str] = None, regionSegmentation=None, regionSegment: Optional[str] = None,  # noqa: UP045 - Slicer 5.8 runs Python 3.9
                     markupsNode=None, methodArgs=(), device: str = "cpu") -> str:
        """What ``explain`` would cost (``explain --dry-run``), as one line for the panel."""
        inputNodes = list(inputNodes)
        task = self.workflow().start_estimate(
            inputNodes, model, method=method, target=target or None, method_args=methodArgs, device=device,
            **self._explainTarget(inputNodes, regionSegmentation, regionSegment, markupsNode))
        return task.wait(idle=self._idle)["text"]

    @staticmethod
    def describeCost(cost: dict) -> str:
        from MedXAILogicLib.workflow import format_cost

        return format_cost(cost)

    def evaluate(self, predictionSegmentation, referenceSegmentation, referenceVolume,
                 predictionSegment: Optional[str] = None, referenceSegment: Optional[str] = None,  # noqa: UP045 - Slicer 5.8 runs Python 3.9
                 waitForCompletion: bool = False):
        """Dice, IoU, HD95 and volumes in a table node (``"table"``); one chosen pair, or segments by name."""
        pairs = [(predictionSegment, referenceSegment)] if predictionSegment and referenceSegment else None
        task = self.workflow().start_evaluate(predictionSegmentation, referenceSegmentation, referenceVolume, pairs)
        return self._finish(task, waitForCompletion)

    def evaluateExplanation(self, heatmapNode, inputNodes, model: Optional[str] = "demo-brain-tumour",  # noqa: UP045 - Slicer 5.8 runs Python 3.9
                            referenceSegmentation=None, referenceSegment: Optional[str] = None,  # noqa: UP045
                            method: Optional[str] = None, slowMetrics: bool = False,  # noqa: UP045
                            waitForCompletion: bool = False):
        """How far a heat map can be trusted, in a table node (``"table"``; numbers in ``"metrics"``).

        Localisation against the reference segment (all segments when none is chosen) and sparseness; with a
        ``model``, faithfulness (deletion / insertion AUCs with random controls); with ``slowMetrics``, also
        stability and sanity (they re-run the explainer several times: minutes). ``method`` defaults to the one
        that made the heat map.
        """
        task = self.workflow().start_quality(heatmapNode, list(inputNodes), model or None, referenceSegmentation,
                                             referenceSegment, method=method, slow=slowMetrics)
        return self._finish(task, waitForCompletion)

    def writeCaseReport(self, inputNodes, outputPath: str, model: Optional[str] = "demo-brain-tumour",  # noqa: UP045
                        method: Optional[str] = "gradcam", referenceSegmentation=None,  # noqa: UP045
                        slowMetrics: bool = True, device: str = "cpu", waitForCompletion: bool = False):
        """The one-page case report (``outputPath`` .html and a .pdf beside it; outputs ``"html"``, ``"pdf"``).

        The CLI's ``report`` command runs the model and ``method`` again; ``slowMetrics`` adds the sanity check and
        stability (minutes); a reference segmentation adds Dice / HD95 and localisation. No node is created.
        """
        from MedXAILogicLib.report import start_report

        task = start_report(self.workflow(), list(inputNodes), model or "demo-brain-tumour", outputPath,
                            method=method or "gradcam", reference=referenceSegmentation,
                            quality="sanity,stability" if slowMetrics else "none", device=device)
        return self._finish(task, waitForCompletion)

    # -- results (fast, in this process) ---------------------------------------------------------------------------
    def setHeatmapOpacity(self, opacity: float) -> None:
        from MedXAILogicLib import bridge

        bridge.set_foreground_opacity(slicer.mrmlScene, opacity)

    def showHeatmap(self, heatmapNode, opacity: float = 0.5, volumeRendering: bool = False) -> None:
        """Show a heat map over the volume it explains (slice views), and volume-render it when asked."""
        from MedXAILogicLib import bridge

        background = None
        referenceID = heatmapNode.GetAttribute("MedXAI.Reference")
        if referenceID:
            background = slicer.mrmlScene.GetNodeByID(referenceID)
        bridge.show_in_slice_views(slicer.mrmlScene, background=background, foreground=heatmapNode,
                                   foreground_opacity=opacity)
        if volumeRendering:
            self.showHeatmap3D(heatmapNode, True)

    def showHeatmap3D(self, heatmapNode, visible: bool = True):
        """Volume-render the heat map in the 3D views (transparent where not relevant), or hide it."""
        from MedXAILogicLib import bridge

        display = bridge.volume_render_heatmap(slicer.modules.volumerendering.logic(), heatmapNode, visible)
        if visible:
            self._ensure3DView()
        return display

    def showSegmentation3D(self, segmentationNode, visible: bool = True) -> bool:
        """Show a segmentation as surfaces in the 3D views."""
        from MedXAILogicLib import bridge

        made = bridge.show_segmentation_3d(segmentationNode, visible)
        if visible:
            self._ensure3DView()
        return made

    @staticmethod
    def _ensure3DView() -> None:
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None and layoutManager.threeDViewCount == 0:
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        if layoutManager is not None and layoutManager.threeDViewCount > 0:
            layoutManager.threeDWidget(0).threeDView().resetFocalPoint()

    def thresholdHeatmap(self, heatmapNode, fraction: float, segmentationNode=None):
        """Add a segment of the voxels at or above ``fraction`` of the heat map's display maximum.

        The segment goes into ``segmentationNode`` (never a model's prediction) or a new segmentation.
        """
        from MedXAILogicLib import bridge

        heat = bridge.node_to_volume(heatmapNode)
        low, high = bridge.display_range(heat.array[0])
        threshold = low + fraction * (high - low)
        return bridge.add_threshold_segment(
            slicer.mrmlScene, heat, threshold, heatmapNode, segmentationNode,
            segment_name=_("{name} ≥ {fraction:.0%}").format(name=heatmapNode.GetName(), fraction=fraction))

    def loadPhantomCase(self, seed: int = PHANTOM_SEED) -> dict:
        """Make the sample brain phantom (four sequences and its truth) as nodes; generated here, no download."""
        from MedXAILogicLib import samples

        case = samples.brain_phantom_case(slicer.mrmlScene, seed)
        slicer.util.setSliceViewerLayers(background=case["volumes"][1], fit=True)
        return case

    def loadChestXrayCase(self, seed: int = XRAY_SEED) -> dict:
        """Make the sample chest X-ray (a 2D radiograph with a nodule and cardiomegaly) and its truth regions.

        Generated here (no download); ``demo-chest-xray`` classifies it. The truth is a segmentation with one
        segment per present finding.
        """
        from MedXAILogicLib import samples

        case = samples.chest_xray_case(slicer.mrmlScene, seed)
        slicer.util.setSliceViewerLayers(background=case["volumes"][0], fit=True)
        return case


def missingRequirements(requirementsPath: str) -> list:
    """The lines of a requirements file whose package is absent or older than its ``>=`` floor."""
    from importlib import metadata

    missing = []
    with open(requirementsPath, encoding="utf-8") as f:
        for line in f:
            spec = line.split("#", 1)[0].strip()
            if not spec:
                continue
            name, _sep, floor = spec.partition(">=")
            try:
                installed = metadata.version(name.strip())
            except metadata.PackageNotFoundError:
                missing.append(spec)
                continue
            if floor and _versionTuple(installed) < _versionTuple(floor):
                missing.append(spec)
    return missing


def _versionTuple(version: str) -> tuple:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


#
# MedXAITest
#


class MedXAITest(ScriptedLoadableModuleTest):
    """The whole flow inside Slicer, on the sample data: segment, explain, overlay, 3D, metrics, classify, cancel.

    ctest (``slicer_add_python_unittest``) loads this case by name: each ``test_*`` method runs on its own, in
    alphabetical order, with :meth:`setUp` before it and without :meth:`runTest`. So every method makes its own
    data, and :meth:`setUp` installs the dependencies explicitly (Slicer >= 5.12 skips installs in testing mode
    unless asked, see :meth:`MedXAILogic.ensureDependencies`).
    """

    def setUp(self):
        slicer.mrmlScene.Clear()
        self.logic = MedXAILogic()
        self.assertTrue(self.logic.ensureDependencies(askConfirmation=False), "the dependencies are not installed")

    def runTest(self):
        """Reload and Test: every test method, each after its own setUp."""
        for name in sorted(n for n in dir(self) if n.startswith("test_")):
            self.setUp()
            getattr(self, name)()

    def test_MedXAI_cancel(self):
        logic = self.logic
        case = logic.loadPhantomCase()
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        task = logic.explain(case["volumes"], method="occlusion")
        start = time.time()
        while task.fraction <= 0.0 and task.job.is_running() and time.time() - start < 120:
            task.process_events()
            slicer.app.processEvents()
            time.sleep(0.05)
        workdir = task.workdir
        task.cancel()
        self.assertEqual(task.status, "cancelled")
        self.assertFalse(workdir.exists(), "the temporary folder was left behind")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore, "a node was left behind")
        self.delayDisplay("Cancel passed")

    def test_MedXAI_chest_xray_classification(self):
        logic = self.logic
        self.delayDisplay("Making the sample chest X-ray")
        case = logic.loadChestXrayCase()
        self.assertTrue(logic.isClassificationModel("demo-chest-xray"))
        outputs = logic.classify(case["volumes"], "demo-chest-xray", waitForCompletion=True)
        self.assertEqual(set(outputs["scores"]), {"nodule", "cardiomegaly", "effusion"})
        heat = logic.explain(case["volumes"], "demo-chest-xray", waitForCompletion=True)["heatmap"]
        self.assertEqual(heat.GetImageData().GetDimensions(), case["volumes"][0].GetImageData().GetDimensions())
        self.delayDisplay("Classification passed")

    def test_MedXAI_model_list(self):
        models, note = self.logic.listModels(refresh=True)
        names = {m.name for m in models}
        self.assertTrue({"demo-brain-tumour", "demo-chest-xray"} <= names, note)
        self.assertFalse(self.logic.isClassificationModel("demo-brain-tumour"))
        self.assertIn("gradcam", self.logic.listMethods(refresh=True))

    def test_MedXAI_phantom_flow(self):
        from MedXAILogicLib import bridge

        self.delayDisplay("Making the sample phantom")
        logic = self.logic
        case = logic.loadPhantomCase()
        volumes = case["volumes"]
        self.assertEqual(len(volumes), 4)
        before = bridge.node_to_volume(volumes[0]).array.copy()

        self.delayDisplay("Segmenting")
        seg = logic.segment(volumes, waitForCompletion=True)["segmentation"]
        self.assertGreater(seg.GetSegmentation().GetNumberOfSegments(), 0)
        segment = seg.GetSegmentation().GetNthSegment(0)
        self.assertIn("SCT^", bridge.segment_terminology(segment))
        self.assertTrue(logic.showSegmentation3D(seg))

        self.delayDisplay("Explaining")
        outputs = logic.explain(volumes, waitForCompletion=True)
        heat, overlay = outputs["heatmap"], outputs["overlay"]
        self.assertTrue(bridge.ijk_to_ras_of(heat).tolist() == bridge.ijk_to_ras_of(volumes[0]).tolist())
        self.assertTrue(overlay.IsA("vtkMRMLLabelMapVolumeNode"))
        self.assertIsNotNone(heat.GetDisplayNode().GetColorNode())
        logic.setHeatmapOpacity(0.3)
        self.assertTrue(logic.showHeatmap3D(heat).GetVisibility())
        thresholded = logic.thresholdHeatmap(heat, 0.5)
        self.assertEqual(thresholded.GetSegmentation().GetNumberOfSegments(), 1)
        self.assertIsNot(thresholded, seg)

        self.delayDisplay("Measuring explanation quality")
        quality = logic.evaluateExplanation(heat, volumes, "demo-brain-tumour", case["reference"],
                                            waitForCompletion=True)
        for key in ("pointing_game", "relevance_mass", "deletion_auc", "insertion_auc", "deletion_auc_random"):
            self.assertIn(key, quality["metrics"])
        self.assertEqual(quality["table"].GetTable().GetColumnName(0), "metric")

        self.delayDisplay("Measuring")
        metrics = logic.evaluate(seg, case["reference"], volumes[0], waitForCompletion=True)
        table = metrics["table"]
        self.assertGreater(table.GetNumberOfRows(), 0)
        self.assertEqual(table.GetTable().GetColumnName(1), "Dice")
        self.assertTrue((bridge.node_to_volume(volumes[0]).array == before).all(), "an input node was modified")
        self.delayDisplay("Flow passed")

    def test_MedXAI_transformed_input(self):
        """The prediction of an input under a transform sits on the input in the world, voxel for voxel."""
        import numpy as np
        from MedXAILogicLib import bridge

        logic = self.logic
        volumes = logic.loadPhantomCase()["volumes"]
        shift = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift 50 mm")
        matrix = vtk.vtkMatrix4x4()
        matrix.SetElement(0, 3, 50.0)
        shift.SetMatrixTransformToParent(matrix)
        for node in volumes:
            node.SetAndObserveTransformNodeID(shift.GetID())
        seg = logic.segment(volumes, waitForCompletion=True)["segmentation"]
        self.assertIs(seg.GetParentTransformNode(), shift)
        labels = bridge.segmentation_to_labelmap(seg, volumes[0])
        self.assertGreater(int((labels.array > 0).sum()), 0)
        segmentBounds, volumeBounds = [0.0] * 6, [0.0] * 6
        seg.GetRASBounds(segmentBounds)
        volumes[0].GetRASBounds(volumeBounds)
        self.assertTrue(volumeBounds[0] - 1 <= segmentBounds[0] <= segmentBounds[1] <= volumeBounds[1] + 1,
                        f"the segmentation {segmentBounds} is outside its input {volumeBounds}")
        self.assertTrue(np.isfinite(labels.array).all())
        self.delayDisplay("Transformed input passed")
