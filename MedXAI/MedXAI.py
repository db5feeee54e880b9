"""MedXAI: explainable AI for medical images, as a 3D Slicer module.

The panel (this file and ``Resources/UI/MedXAI.ui``) collects choices in a parameter node; the logic turns nodes
into files through the Qt-free bridge (``MedXAILogicLib``), runs ``python -m MedXAILib`` in a background process
and turns its outputs back into nodes. Nothing third-party is imported at file scope and nothing runs on import:
numpy, MedXAILib and the bridge are imported inside the functions that need them.
"""

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

MODEL_CHOICES = ["demo-brain-tumour", "demo-chest-xray", "model file or folder"]
METHOD_CHOICES = ["gradcam", "gradcampp", "scorecam", "lrp", "ig", "gradientshap", "kernelshap", "lime", "occlusion"]
TARGET_CHOICES = ["predicted region or top class", "class", "segment", "markup point"]
STEP_CHOICES = ["predict and explain", "predict", "explain"]
CHANNEL_WIDGETS = ["inputVolume1", "inputVolume2", "inputVolume3", "inputVolume4"]
DEMO_CHANNELS = {"demo-brain-tumour": ["t1", "t1ce", "t2", "flair"], "demo-chest-xray": ["x-ray"]}
PHANTOM_SEED = 7


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
    """Add the MedXAI brain phantom to the Sample Data module (generated locally; no download)."""
    try:
        import SampleData
    except ImportError:
        return
    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    try:
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category="MedXAI",
            sampleName="MedXAIBrainPhantom",
            thumbnailFileName=os.path.join(iconsPath, "MedXAI.png"),
            customDownloader=loadPhantomSample,
        )
    except Exception as exc:  # an older Sample Data module: the phantom is still in the panel's button
        logging.warning(f"MedXAI: could not register the sample phantom ({exc})")


def loadPhantomSample(source=None):
    """Sample Data's callback: make the phantom case and return its nodes."""
    return MedXAILogic().loadPhantomCase()


#
# MedXAIParameterNode
#


@parameterNodeWrapper
class MedXAIParameterNode:
    """The panel's state.

    inputVolume1..4 - one scalar volume per model channel (t1, t1ce, t2, flair), or one 2D X-ray in inputVolume1.
    referenceSegmentation - optional ground truth for Evaluate.
    modelName / modelPath - a built-in model, or a model file or folder; useGpu asks for CUDA (CPU fallback).
    steps - what Apply runs. method / methodParameters - the explainer and extra `explain` flags.
    targetKind / targetClass / targetPoint - what is explained (the segment comes from the segment selector).
    heatmapOpacity / heatmapThreshold - display of the result; heatmap, prediction, resultsTable - outputs.
    qualitySlowMetrics - Evaluate's explanation quality also runs stability and sanity (they re-run the explainer).
    """

    inputVolume1: vtkMRMLScalarVolumeNode
    inputVolume2: vtkMRMLScalarVolumeNode
    inputVolume3: vtkMRMLScalarVolumeNode
    inputVolume4: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    modelName: Annotated[str, Choice(MODEL_CHOICES)] = "demo-brain-tumour"
    modelPath: pathlib.Path
    useGpu: bool = False
    steps: Annotated[str, Choice(STEP_CHOICES)] = "predict and explain"
    method: Annotated[str, Choice(METHOD_CHOICES)] = "gradcam"
    methodParameters: str = ""
    targetKind: Annotated[str, Choice(TARGET_CHOICES)] = "predicted region or top class"
    targetClass: str = ""
    targetPoint: vtkMRMLMarkupsFiducialNode
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    heatmapThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    heatmap: vtkMRMLScalarVolumeNode
    prediction: vtkMRMLSegmentationNode
    resultsTable: vtkMRMLTableNode
    qualitySlowMetrics: bool = False


#
# MedXAIWidget
#


class MedXAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: Inputs, Model, Explain, Run/Cancel, Results, Evaluate."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._task = None
        self._pendingSteps = []
        self._timer = None

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
        self.ui.loadPhantomButton.connect("clicked(bool)", self.onLoadPhantomButton)
        self.ui.thresholdButton.connect("clicked(bool)", self.onThresholdButton)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.qualityButton.connect("clicked(bool)", self.onQualityButton)
        self.ui.opacitySlider.connect("valueChanged(double)", self.onOpacityChanged)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.targetKindComboBox.connect("currentIndexChanged(int)", self.updateTargetWidgets)

        self.initializeParameterNode()
        self.onModelChanged()

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
            return
        self.ui.applyButton.text = _("Apply")
        p = self._parameterNode
        ready = bool(p and p.inputVolume1)
        if p and p.modelName == "model file or folder" and not str(p.modelPath or "").strip(". "):
            ready = False
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Run the model and explain it") if ready else _("Select the inputs first")
        self.ui.estimateButton.enabled = ready
        self.ui.qualityButton.enabled = bool(ready and p.heatmap)

    def onModelChanged(self, index=None) -> None:
        """Label the channel selectors with the model's channel names and show only as many as it takes."""
        name = self.ui.modelComboBox.currentText
        channels = DEMO_CHANNELS.get(name, ["channel 1", "channel 2", "channel 3", "channel 4"])
        labels = [self.ui.inputLabel1, self.ui.inputLabel2, self.ui.inputLabel3, self.ui.inputLabel4]
        selectors = [self.ui.inputVolume1, self.ui.inputVolume2, self.ui.inputVolume3, self.ui.inputVolume4]
        for i, (label, selector) in enumerate(zip(labels, selectors)):
            visible = i < len(channels) or name == "model file or folder"
            label.visible = selector.visible = visible
            if i < len(channels):
                label.text = channels[i] + ":"
        self.ui.modelPathLineEdit.enabled = name == "model file or folder"
        self._checkCanApply()

    def updateTargetWidgets(self, index=None) -> None:
        kind = self.ui.targetKindComboBox.currentText
        self.ui.targetClassLineEdit.enabled = kind == "class"
        self.ui.targetSegmentSelector.enabled = kind == "segment"
        self.ui.targetPointSelector.enabled = kind == "markup point"

    # -- inputs -----------------------------------------------------------------------------------------------
    def onAutoFillButton(self) -> None:
        """Fill the channel selectors from node names (t1, t1ce, t2, flair)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to pick the input volumes."), waitCursor=True):
            if not self._parameterNode:
                return
            chosen = self.logic.guessInputVolumes(self.ui.modelComboBox.currentText)
            for field, node in zip(CHANNEL_WIDGETS, chosen):
                if node is not None:
                    setattr(self._parameterNode, field, node)

    def onLoadPhantomButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to make the sample phantom."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            nodes = self.logic.loadPhantomCase()
            for field, node in zip(CHANNEL_WIDGETS, nodes["volumes"]):
                setattr(self._parameterNode, field, node)
            self._parameterNode.referenceSegmentation = nodes["reference"]
            self.ui.referenceSegmentSelector.setCurrentNode(nodes["reference"])
            self._parameterNode.modelName = "demo-brain-tumour"

    # -- run / cancel -------------------------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        if self._running():
            self.onCancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            p = self._parameterNode
            steps = {"predict and explain": ["predict", "explain"], "predict": ["predict"],
                     "explain": ["explain"]}[p.steps]
            self.ui.logTextEdit.clear()
            self._pendingSteps = list(steps)
            self._startNextStep()

    def _startNextStep(self) -> None:
        p = self._parameterNode
        step = self._pendingSteps.pop(0)
        inputs = self.logic.inputNodesFromParameters(p)
        model = self.logic.modelFromParameters(p)
        device = "cuda" if p.useGpu else "cpu"
        if step == "predict":
            if self.logic.isClassificationModel(model):
                self._task = self.logic.classify(inputs[0], model, device=device)
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
        args = {"method": p.method, "methodArgs": p.methodParameters, "opacity": p.heatmapOpacity}
        kind = p.targetKind
        if kind == "class":
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
        """Drain the running job's progress and log; handle its end."""
        task = self._task
        if task is None:
            self._timer.stop()
            return
        try:
            events = task.process_events()
        except Exception as exc:  # a bug while making result nodes
            self._log(_("Error: {message}").format(message=str(exc)))
            self._afterTask()
            slicer.util.errorDisplay(_("MedXAI failed: {message}").format(message=str(exc)))
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
            p.heatmap = outputs["heatmap"]
        table = outputs.get("importance") or outputs.get("table")
        if table is not None:
            p.resultsTable = table
            self.ui.resultsTableView.setMRMLTableNode(table)
        if outputs.get("cost"):
            self.ui.costLabel.text = self.logic.describeCost(outputs["cost"])

    def _log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)

    # -- explain: cost ------------------------------------------------------------------------------------------
    def onEstimateButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to estimate the cost."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            p = self._parameterNode
            inputs = self.logic.inputNodesFromParameters(p)
            text = self.logic.estimateCost(inputs, self.logic.modelFromParameters(p), device=(
                "cuda" if p.useGpu else "cpu"), **{k: v for k, v in self._targetArguments().items() if k != "opacity"})
            self.ui.costLabel.text = text

    # -- results ------------------------------------------------------------------------------------------------
    def onOpacityChanged(self, value: float) -> None:
        self.logic.setHeatmapOpacity(value)

    def onThresholdButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to threshold the heat map."), waitCursor=True):
            p = self._parameterNode
            if not p.heatmap:
                raise ValueError(_("Run an explanation first"))
            p.prediction = self.logic.thresholdHeatmap(p.heatmap, p.heatmapThreshold, p.prediction)

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
            self.ui.resultsTableView.setMRMLTableNode(outputs["table"])

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
                p.heatmap, self.logic.inputNodesFromParameters(p), self.logic.modelFromParameters(p), reference,
                referenceSegment=self.ui.referenceSegmentSelector.currentSegmentID() or None,
                slowMetrics=p.qualitySlowMetrics,
            )
            self._log(_("Measuring explanation quality…"))
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

    def getParameterNode(self):
        return MedXAIParameterNode(super().getParameterNode())

    def workflow(self):
        from MedXAILogicLib.workflow import Workflow

        if self._workflow is None or self._workflow.scene is not slicer.mrmlScene:
            self._workflow = Workflow(slicer.mrmlScene, runner=self.runner, command_prefix=self.commandPrefix)
        return self._workflow

    # -- dependencies ---------------------------------------------------------------------------------------
    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Make torch (through the PyTorch extension) and Resources/requirements.txt importable, asking first.

        Runs on the main thread (pip from a background thread crashes Slicer on macOS). Returns False when the
        user declined.
        """
        if self.dependenciesChecked:
            return True
        try:
            import PyTorchUtils
        except ImportError:
            message = _("MedXAI needs the PyTorch extension; install it from the Extensions Manager")
            raise RuntimeError(message) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                _("MedXAI needs PyTorch. Install it now? This may take several minutes.")
            ):
                return False
            if torchLogic.installTorch(askConfirmation=False) is None:
                raise RuntimeError(_("PyTorch could not be installed; see the PyTorch Utils module"))
        requirements = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")
        ensure = None
        for moduleName in ("slicer.packaging", "slicer.pydeps"):
            try:
                module = __import__(moduleName, fromlist=["pip_ensure"])
            except ImportError:
                continue
            if hasattr(module, "pip_ensure") and hasattr(module, "load_requirements"):
                ensure = module
                break
        if ensure is not None:
            ensure.pip_ensure(ensure.load_requirements(requirements), prompt_install=askConfirmation,
                              requester="MedXAI")
        else:
            missing = missingRequirements(requirements)
            if missing:
                if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("MedXAI needs these Python packages: {packages}. Install them now?").format(
                        packages=", ".join(missing))
                ):
                    return False
                slicer.util.pip_install(" ".join(f'"{m}"' for m in missing))
        self.dependenciesChecked = True
        return True

    # -- parameters -> arguments ----------------------------------------------------------------------------
    @staticmethod
    def modelFromParameters(parameterNode) -> str:
        if parameterNode.modelName == "model file or folder":
            path = str(parameterNode.modelPath or "").strip()
            if not path or path == ".":
                raise ValueError(_("Choose a model file or folder"))
            return path
        return parameterNode.modelName

    @staticmethod
    def inputNodesFromParameters(parameterNode) -> list:
        nodes = [getattr(parameterNode, field) for field in CHANNEL_WIDGETS]
        count = len(DEMO_CHANNELS.get(parameterNode.modelName, CHANNEL_WIDGETS))
        chosen = [n for n in nodes[:count] if n is not None]
        if not chosen:
            raise ValueError(_("Select the input volume(s) first"))
        if parameterNode.modelName in DEMO_CHANNELS and len(chosen) != count:
            raise ValueError(_("{model} takes {count} volume(s): {names}").format(
                model=parameterNode.modelName, count=count, names=", ".join(DEMO_CHANNELS[parameterNode.modelName])))
        return chosen

    @staticmethod
    def isClassificationModel(model: str) -> bool:
        return model == "demo-chest-xray"

    def guessInputVolumes(self, model: str = "demo-brain-tumour") -> list:
        """One scalar volume per channel of ``model``, picked by node name (None where nothing fits)."""
        from MedXAILogicLib.workflow import match_channels

        nodes = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                 if not n.IsA("vtkMRMLLabelMapVolumeNode") and not n.GetAttribute("MedXAI.Role")]
        channels = DEMO_CHANNELS.get(model)
        if channels is None or len(channels) == 1:
            return [nodes[0] if nodes else None]
        picked = match_channels(channels, [n.GetName() for n in nodes])
        return [nodes[i] if i is not None else None for i in picked]

    # -- jobs ---------------------------------------------------------------------------------------------------
    def _finish(self, task, waitForCompletion: bool):
        if not waitForCompletion:
            return task
        return task.wait(idle=lambda: slicer.app.processEvents())

    def segment(self, inputNodes, model: str = "demo-brain-tumour", device: str = "cpu",
                waitForCompletion: bool = False):
        """Segment; returns the running task, or with ``waitForCompletion`` its outputs (``"segmentation"``)."""
        return self._finish(self.workflow().start_segment(list(inputNodes), model, device=device), waitForCompletion)

    def classify(self, inputNode, model: str = "demo-chest-xray", device: str = "cpu",
                 waitForCompletion: bool = False):
        """Classify a 2D image; outputs hold ``"table"`` and ``"scores"``."""
        return self._finish(self.workflow().start_classify(inputNode, model, device=device), waitForCompletion)

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
                markupsNode=None, methodArgs: str = "", device: str = "cpu", opacity: float = 0.5,
                waitForCompletion: bool = False):
        """Explain; outputs hold ``"heatmap"``, ``"overlay"`` and, when the CLI reports them, ``"importance"``."""
        inputNodes = list(inputNodes)
        task = self.workflow().start_explain(
            inputNodes, model, method=method, target=target or None, method_args=methodArgs, device=device,
            opacity=opacity, **self._explainTarget(inputNodes, regionSegmentation, regionSegment, markupsNode))
        return self._finish(task, waitForCompletion)

    def estimateCost(self, inputNodes, model: str = "demo-brain-tumour", method: str = "gradcam",
                     target: Optional[str] = None, regionSegmentation=None, regionSegment: Optional[str] = None,  # noqa: UP045 - Slicer 5.8 runs Python 3.9
                     markupsNode=None, methodArgs: str = "", device: str = "cpu") -> str:
        """What ``explain`` would cost (``explain --dry-run``), as one line for the panel."""
        inputNodes = list(inputNodes)
        task = self.workflow().start_estimate(
            inputNodes, model, method=method, target=target or None, method_args=methodArgs, device=device,
            **self._explainTarget(inputNodes, regionSegmentation, regionSegment, markupsNode))
        return task.wait(idle=lambda: slicer.app.processEvents())["text"]

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

    # -- results (fast, in this process) ---------------------------------------------------------------------------
    def setHeatmapOpacity(self, opacity: float) -> None:
        from MedXAILogicLib import bridge

        bridge.set_foreground_opacity(slicer.mrmlScene, opacity)

    def thresholdHeatmap(self, heatmapNode, fraction: float, segmentationNode=None):
        """Add a segment of the voxels at or above ``fraction`` of the heat map's display maximum."""
        from MedXAILogicLib import bridge

        heat = bridge.node_to_volume(heatmapNode)
        low, high = bridge.display_range(heat.array[0])
        threshold = low + fraction * (high - low)
        return bridge.add_threshold_segment(
            slicer.mrmlScene, heat, threshold, heatmapNode, segmentationNode,
            segment_name=_("{name} ≥ {fraction:.0%}").format(name=heatmapNode.GetName(), fraction=fraction))

    def loadPhantomCase(self, seed: int = PHANTOM_SEED) -> dict:
        """Make the sample brain phantom (four sequences and its truth) as nodes; generated here, no download."""
        from MedXAILogicLib import bridge

        from MedXAILib.phantoms import make_brain_phantom

        phantom = make_brain_phantom(seed)
        scene = slicer.mrmlScene
        volumes = [bridge.add_volume_node(scene, phantom.image.channel(c), f"MedXAIPhantom_{name}", channel=None)
                   for c, name in enumerate(["t1", "t1ce", "t2", "flair"])]
        reference = bridge.labelmap_to_segmentation(
            scene, phantom.label, volumes[0], {1: "necrotic core", 2: "oedema", 3: "enhancing rim"},
            name="MedXAIPhantom truth")
        sh = scene.GetSubjectHierarchyNode()
        if sh is not None:
            patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "MedXAI phantom")
            study = sh.CreateStudyItem(patient, f"seed {seed}")
            for node in volumes + [reference]:
                item = sh.GetItemByDataNode(node)
                if item:
                    sh.SetItemParent(item, study)
                else:
                    sh.CreateItem(study, node)
        slicer.util.setSliceViewerLayers(background=volumes[1], fit=True)
        return {"volumes": volumes, "reference": reference}


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
    """The whole flow on the sample phantom, inside Slicer: segment, explain, overlay, metrics, cancel."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_MedXAI_phantom_flow()
        self.setUp()
        self.test_MedXAI_cancel()

    def test_MedXAI_phantom_flow(self):
        from MedXAILogicLib import bridge

        self.delayDisplay("Making the sample phantom")
        logic = MedXAILogic()
        self.assertTrue(logic.ensureDependencies(askConfirmation=False))
        case = logic.loadPhantomCase()
        volumes = case["volumes"]
        self.assertEqual(len(volumes), 4)
        before = bridge.node_to_volume(volumes[0]).array.copy()

        self.delayDisplay("Segmenting")
        seg = logic.segment(volumes, waitForCompletion=True)["segmentation"]
        self.assertGreater(seg.GetSegmentation().GetNumberOfSegments(), 0)

        self.delayDisplay("Explaining")
        outputs = logic.explain(volumes, waitForCompletion=True)
        heat, overlay = outputs["heatmap"], outputs["overlay"]
        self.assertTrue(bridge.ijk_to_ras_of(heat).tolist() == bridge.ijk_to_ras_of(volumes[0]).tolist())
        self.assertTrue(overlay.IsA("vtkMRMLLabelMapVolumeNode"))
        self.assertIsNotNone(heat.GetDisplayNode().GetColorNode())
        logic.setHeatmapOpacity(0.3)
        thresholded = logic.thresholdHeatmap(heat, 0.5)
        self.assertEqual(thresholded.GetSegmentation().GetNumberOfSegments(), 1)

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

    def test_MedXAI_cancel(self):
        logic = MedXAILogic()
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
