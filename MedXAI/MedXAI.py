"""MedXAI: explainable AI for medical images, as a 3D Slicer module.

The panel (``Resources/UI/MedXAI.ui``) is built by one small widget class per section (``MedXAIPanelLib``: inputs,
model, explain, results, evaluate, report, and the Apply/Cancel job controls); :class:`MedXAIWidget` only composes
them and keeps the parameter node, where every choice of the panel is saved (and restored with the scene). The logic
is split the same way (``MedXAILogicLib.logic``, Qt-free); it turns nodes into files through the bridge, runs
``python -m MedXAILib`` in a background process and turns its outputs back into nodes. Nothing third-party is
imported at file scope and nothing runs on import: numpy, MedXAILib and the panel's sections are imported inside the
functions that need them (importing ``MedXAILogicLib`` also finds ``MedXAILib`` in a developer's checkout).
"""

import os
import pathlib
import time
import unittest
from typing import Annotated

import slicer
import vtk
from MedXAILogicLib.logic import MedXAILogicBase
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

#: Shown until the core has listed its models (and when it cannot): the built-in demos.
BUILTIN_MODEL_NAMES = ["demo-brain-tumour", "demo-chest-xray"]
METHOD_CHOICES = ["gradcam", "gradcampp", "hirescam", "scorecam", "lrp", "ig", "gradientshap", "kernelshap", "lime",
                  "occlusion"]
TARGET_CHOICES = ["predicted region or top class", "class", "segment", "markup point"]
STEP_CHOICES = ["predict and explain", "predict", "explain"]
CHECKPOINT_CHOICES = ["final", "best"]
#: Parameters the panel sets from code (their choices come from the model or the method, or their widget has no
#: parameter-node connector); each is written when its widget changes and read back when the node changes.
CODE_SET_PARAMETERS = ["modelName", "method", "methodParameters", "targetClass", "targetSegmentation",
                       "targetSegmentID", "evaluatePrediction", "evaluatePredictionSegmentID",
                       "evaluateReferenceSegmentID"]
#: The module's own packages (Reload reads them from disk again).
MODULE_PACKAGES = ["MedXAILogicLib", "MedXAIPanelLib"]
CONTRIBUTORS = ["MedXAI founding engineers (MedXAI project)"]


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
        self.parent.contributors = list(CONTRIBUTORS)
        self.parent.helpText = _(
            "Segment or classify an image with a model, explain the result with a heat map (Grad-CAM, LRP, SHAP, "
            "counterfactuals and more), and measure how far to trust it (Dice, IoU, HD95, explanation quality). Work "
            "runs in a background process and can be cancelled. See <a href=\"https://github.com/MedXAI/SlicerMedXAI/"
            "blob/main/docs/slicer.md\">the documentation</a>."
        )
        self.parent.acknowledgementText = _(
            "MedXAI builds on MONAI, PyTorch (through the PyTorch extension), nnU-Net, SimpleITK, captum and shap."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data
#


def registerSampleData():
    """Add one sample per built-in model to the Sample Data module (both generated locally; no download)."""
    try:
        import SampleData
    except ImportError:  # the Sample Data module is turned off: the panel's button still makes the samples
        return
    from MedXAILogicLib.sample_sources import sample_data_sources

    thumbnail = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "MedXAI.png")
    loaders = {"MedXAIBrainPhantom": loadPhantomSample, "MedXAIChestXray": loadChestXraySample}
    for source in sample_data_sources(thumbnail, loaders):
        SampleData.SampleDataLogic.registerCustomSampleDataSource(**source)


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
    """The panel's state: every choice it offers, saved with the scene.

    Inputs: inputVolume1..4 (one volume per model channel; more rows are made in code for models with more channels,
    their nodes kept as references ``MedXAI.inputN``), referenceSegmentation (ground truth for Evaluate and the report).
    Model: modelName (a listed model, or MODEL_FILE_CHOICE) / modelPath; nnunetFolds, nnunetCheckpoint,
    nnunetMirroring and totalSegmentatorFast (nnU-Net and TotalSegmentator); useGpu (CUDA, CPU fallback).
    Explain: steps (what Apply runs), method and methodParameters (a JSON object of the values), targetKind with
    targetClass (for TotalSegmentator also the organ whose model runs), targetSegmentation / targetSegmentID, or
    targetPoint; shapPlot (draw shap's plots).
    Outputs: prediction, heatmap, resultsTable (None: a new node on Apply; also what Results shows).
    Results: heatmapOpacity, heatmapThreshold, heatmapVolumeRendering, thresholdSegmentation.
    Evaluate: evaluatePrediction with evaluatePredictionSegmentID, evaluateReferenceSegmentID (of
    referenceSegmentation), qualitySlowMetrics (stability and sanity too), compareMethods (comma-separated).
    The parameters in CODE_SET_PARAMETERS are set by the panel (no widget binding).
    """

    inputVolume1: vtkMRMLScalarVolumeNode
    inputVolume2: vtkMRMLScalarVolumeNode
    inputVolume3: vtkMRMLScalarVolumeNode
    inputVolume4: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    modelName: str = "demo-brain-tumour"
    modelPath: pathlib.Path
    nnunetFolds: str = ""
    nnunetCheckpoint: Annotated[str, Choice(CHECKPOINT_CHOICES)] = "final"
    nnunetMirroring: bool = True
    totalSegmentatorFast: bool = False
    useGpu: bool = False
    steps: Annotated[str, Choice(STEP_CHOICES)] = "predict and explain"
    method: str = "gradcam"
    methodParameters: str = ""
    targetKind: Annotated[str, Choice(TARGET_CHOICES)] = "predicted region or top class"
    targetClass: str = ""
    targetSegmentation: vtkMRMLSegmentationNode
    targetSegmentID: str = ""
    targetPoint: vtkMRMLMarkupsFiducialNode
    shapPlot: bool = False
    prediction: vtkMRMLSegmentationNode
    heatmap: vtkMRMLScalarVolumeNode
    resultsTable: vtkMRMLTableNode
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    heatmapThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    heatmapVolumeRendering: bool = False
    thresholdSegmentation: vtkMRMLSegmentationNode
    evaluatePrediction: vtkMRMLSegmentationNode
    evaluatePredictionSegmentID: str = ""
    evaluateReferenceSegmentID: str = ""
    qualitySlowMetrics: bool = False
    compareMethods: str = "gradcam,saliency,lrp"


#
# MedXAIWidget
#


class MedXAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: one section object per part of the ``.ui`` (``MedXAIPanelLib``), composed here."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedXAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedXAILogic()

        from MedXAIPanelLib import Panel

        self.panel = Panel(self.ui, self.logic, lambda: self._parameterNode)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.initializeParameterNode()
        self.panel.start()  # the model and method lists, read in the background (cached for the session)

    def cleanup(self) -> None:
        if self.panel is not None:
            self.panel.cleanup()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        """Leave the parameter node (running jobs still finish into it) but stop showing it in the widgets."""
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def onReload(self) -> None:
        """Reload the module's packages too (Slicer's reload reads only this file again)."""
        from MedXAILogicLib.reloading import reload_packages

        if self.panel is not None:
            self.panel.cleanup()
        reload_packages(MODULE_PACKAGES)
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event) -> None:
        self.panel.jobs.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event) -> None:
        """A scene was loaded: its parameter node brings back every choice, the code-set ones included."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # what connectGui binds, through connectParametersToGui: connectGui returns no tag for disconnectGui
            # before Slicer 5.10, which left the widgets bound to every parameter node they showed
            bound = {w.property("SlicerParameterName"): w for w in vars(self.ui).values()
                     if w.property("SlicerParameterName")}
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(bound)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.panel.restore()  # the code-set choices of this (maybe just loaded) parameter node
        self.panel.update()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        self.panel.update()


#
# MedXAILogic
#


class MedXAILogic(ScriptedLoadableModuleLogic, MedXAILogicBase):
    """Everything the panel does, callable from the Python console (the methods are in ``MedXAILogicLib.logic``).

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
        requirements = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")
        MedXAILogicBase.__init__(self, runner=runner, commandPrefix=commandPrefix, requirementsPath=requirements)

    def getParameterNode(self):
        return MedXAIParameterNode(super().getParameterNode())


#
# MedXAITest
#


class MedXAITest(ScriptedLoadableModuleTest):
    """The whole flow inside Slicer, on the sample data: segment, explain, overlay, 3D, metrics, classify, cancel.

    ctest (``slicer_add_python_unittest``) loads this case by name: each ``test_*`` method runs on its own, in
    alphabetical order, with :meth:`setUp` before it and without :meth:`runTest`. So every method makes its own
    data. On the extension build machines (testing mode) nothing is installed: without torch and MONAI already in
    Slicer's Python every method is skipped (set ``MEDXAI_SELFTEST_INSTALL=1`` to let it install them).
    """

    def setUp(self):
        slicer.mrmlScene.Clear()
        self.logic = MedXAILogic()
        if not self.logic.ensureDependencies(askConfirmation=False):
            self.skipTest("torch and the MedXAI packages are not installed; testing mode installs nothing")

    def runTest(self):
        """Reload and Test: every test method, each after its own setUp."""
        for name in sorted(n for n in dir(self) if n.startswith("test_")):
            try:
                self.setUp()
            except unittest.SkipTest as skipped:
                self.delayDisplay(f"Skipped: {skipped}")
                return
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
        self.assertIn("gradcam", self.logic.listMethods())

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
