"""MedXAI Reader Study: blinded reading of a MedXAI reader study in Slicer.

A separate module from the MedXAI explain panel, so that a reader sees only what the reading's arm allows: the image,
and in AI arms the model's probability and decision and the arm's map, under a random reading id — never the truth,
the case's name, another arm or the explanation tools. The panel (this file and
``Resources/UI/MedXAIReaderStudy.ui``) keeps its choices in a parameter node; the Qt-free ``ReaderStudyLib`` loads the
case's files into the scene and drives the core's reading loop (``MedXAILib.study.session``), which validates, times
and durably writes each answer the moment it is submitted. Nothing third-party is imported at file scope and nothing
runs on import.
"""

import logging
import os
import pathlib
from typing import Annotated, Optional

import qt
import slicer
import vtk
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

DECISION_CHOICES = ["not answered", "finding present", "finding absent"]
#: Parameters the panel sets from code because their choices come from the study (no binding).
CODE_SET_PARAMETERS = ["readerName"]
MODULE_PACKAGES = ["ReaderStudyLib"]
TIMER_INTERVAL_MS = 1000


#
# MedXAIReaderStudy
#


class MedXAIReaderStudy(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedXAI Reader Study")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedXAI contributors"]
        self.parent.helpText = _(
            "Read the cases of a MedXAI reader study: choose the study folder and your reader name, then rate each "
            "case. Each answer is saved the moment you submit it; you can stop and resume later. See <a href="
            "\"https://github.com/medxai/SlicerMedXAI/blob/main/docs/reader-study.md\">the documentation</a>."
        )
        self.parent.acknowledgementText = _(
            "The analysis follows Obuchowski and Rockette (1995) and Hillis (2007), as in OR-DBM MRMC and MRMCaov."
        )


#
# MedXAIReaderStudyParameterNode
#


@parameterNodeWrapper
class MedXAIReaderStudyParameterNode:
    """The panel's choices.

    studyFolder - the study folder (made by `python -m MedXAILib study create`).
    readerName - who reads (one of the protocol's readers; the list comes from the study).
    readingMode - hide Slicer's menus, toolbars and module selector while reading.
    rating - confidence that the finding is present, 0-100.
    decision - the reader's call.
    confidence - confidence in the call, 1-5.
    trust - trust in the AI's output, 1-5 (arms that show the AI).
    comment - free text.
    mapOpacity - opacity of the arm's map over the image.
    """

    studyFolder: pathlib.Path
    readerName: str = ""
    readingMode: bool = True
    rating: Annotated[float, WithinRange(0.0, 100.0)] = 50.0
    decision: Annotated[str, Choice(DECISION_CHOICES)] = "not answered"
    confidence: Annotated[int, WithinRange(1, 5)] = 3
    trust: Annotated[int, WithinRange(1, 5)] = 3
    comment: str = ""
    mapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


#
# MedXAIReaderStudyWidget
#


class MedXAIReaderStudyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The reading panel: study and reader, the case's progress and AI output, the answer form."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._timer = None
        self._hiddenForReading = False
        self._showsAI = False  # the case on screen is in an arm that shows the AI

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedXAIReaderStudy.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedXAIReaderStudyLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.studyFolderButton.connect("directoryChanged(QString)", self.onStudyFolderChanged)
        self.ui.readerComboBox.connect("currentTextChanged(QString)", self.onReaderChanged)
        self.ui.startButton.connect("clicked(bool)", self.onStartButton)
        self.ui.stopButton.connect("clicked(bool)", self.onStopButton)
        self.ui.pauseButton.connect("toggled(bool)", self.onPauseButton)
        self.ui.submitButton.connect("clicked(bool)", self.onSubmitButton)
        self.ui.mapOpacitySlider.connect("valueChanged(double)", self.onMapOpacityChanged)
        self.ui.decisionComboBox.connect("currentIndexChanged(int)", self._updateButtons)

        self._timer = qt.QTimer()
        self._timer.setInterval(TIMER_INTERVAL_MS)
        self._timer.connect("timeout()", self._updateClock)

        self.initializeParameterNode()
        self._showReadingState(False)

    def cleanup(self) -> None:
        if self._timer:
            self._timer.stop()
        if self.logic:
            self.logic.close()
        self._setReadingMode(False)
        self.removeObservers()

    def onReload(self) -> None:
        """Reload ``ReaderStudyLib`` too (Slicer's reload re-reads only this file); the helper is the MedXAI
        module's, shipped beside this one."""
        from MedXAILogicLib.reloading import reload_packages

        self.cleanup()
        reload_packages(MODULE_PACKAGES)
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        if self._timer:
            self._timer.stop()
        if self.logic:
            self.logic.close()
        self._setReadingMode(False)  # else the menus stay hidden with Stop disabled
        self._showReadingState(False)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[MedXAIReaderStudyParameterNode]) -> None:  # noqa: UP045 - Slicer 5.8 runs Python 3.9
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # what connectGui binds, through connectParametersToGui: connectGui returns no tag for disconnectGui
            # before Slicer 5.10, which left the widgets bound to every parameter node they showed
            bound = {w.property("SlicerParameterName"): w for w in vars(self.ui).values()
                     if w.property("SlicerParameterName")}
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(bound)
            try:
                self._fillReaders(str(self._parameterNode.studyFolder))
            except Exception as error:  # a saved study no longer readable: said once, not raised out of enter()
                slicer.util.errorDisplay(_("The saved study folder is not a readable study.") + f"\n\n{error}")
                self._fillReaders("")
            self._updateButtons()

    # ---- study and reader ----------------------------------------------------------------------------------------
    def onStudyFolderChanged(self, folder) -> None:
        """The folder comes from the signal: this slot runs before the parameter node's own connector (connected
        later, by ``connectGui``) has stored it, so ``studyFolder`` still holds the previous folder here."""
        with slicer.util.tryWithErrorDisplay(_("This folder is not a readable study.")):
            self._fillReaders(str(folder))

    def _fillReaders(self, folder: str) -> None:
        """The study's readers in the list; the saved reader selected again, else none (a reader picks their own
        name: reads must never go to another reader by default). Refilling the list sets no reader."""
        readers = (self.logic.readers(folder) if folder not in ("", ".")
                   and os.path.isfile(os.path.join(folder, "study.json")) else [])
        saved = self._parameterNode.readerName if self._parameterNode else ""
        combo = self.ui.readerComboBox
        wasBlocked = combo.blockSignals(True)  # clear() and addItems() would select "" and then the first reader
        try:
            combo.clear()
            combo.addItems(readers)
            combo.setCurrentIndex(readers.index(saved) if saved in readers else -1)
        finally:
            combo.blockSignals(wasBlocked)
        if self._parameterNode and saved not in readers:
            self._parameterNode.readerName = ""
        self._updateButtons()

    def onReaderChanged(self, text) -> None:
        if self._parameterNode:
            self._parameterNode.readerName = text
        self._updateButtons()

    def _updateButtons(self, *args) -> None:
        reading = self.logic is not None and self.logic.isReading()
        self.ui.startButton.enabled = bool(self.ui.readerComboBox.currentText) and not reading
        answered = self.ui.decisionComboBox.currentText != DECISION_CHOICES[0]
        self.ui.submitButton.enabled = reading and answered and not self.ui.pauseButton.checked
        self.ui.submitButton.toolTip = "" if answered else _("Choose present or absent first")

    def onStartButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not open the study."), waitCursor=True):
            p = self._parameterNode
            progress = self.logic.open(str(p.studyFolder), self.ui.readerComboBox.currentText)
            self.ui.locationPlaceWidget.setCurrentNode(self.logic.locationNode())
            self._setReadingMode(p.readingMode)
            if progress["finished"]:
                slicer.util.infoDisplay(_("You have read every case of this study. Thank you."))
                self.logic.close()
                self._setReadingMode(False)
                return
            self._showNext()

    def onStopButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not stop reading.")):
            self._timer.stop()
            self.logic.close()
            self._setReadingMode(False)
            self._showReadingState(False)

    # ---- one case ------------------------------------------------------------------------------------------------
    def _showNext(self) -> None:
        info = self.logic.showNext()
        if info["finished"]:
            self._timer.stop()
            self.logic.close()
            self._setReadingMode(False)
            self._showReadingState(False)
            slicer.util.infoDisplay(_("You have read every case of this study. Thank you."))
            return
        self._resetForm()
        self.ui.readingIdLabel.text = info["reading_id"]
        self.ui.progressLabel.text = _("Case {position} of {total} - session {session} of {sessions}").format(
            position=info["position"], total=info["n_in_session"], session=info["session"],
            sessions=info["n_sessions"])
        if info["shows_ai"]:
            ai = info["ai"]
            call = _("present") if ai["decision"] else _("absent")
            self.ui.aiLabel.text = _("AI: {finding} {call} (probability {p:.2f})").format(
                finding=ai["finding"], call=call, p=ai["probability"])
        self._showsAI = info["shows_ai"]
        self.ui.aiLabel.visible = self._showsAI
        self.ui.trustLabel.visible = self.ui.trustSpinBox.visible = self._showsAI
        self.ui.mapOpacityLabel.visible = self.ui.mapOpacitySlider.visible = bool(info["maps"])
        self.logic.display(self._parameterNode.mapOpacity)
        self._showReadingState(True)
        self._timer.start()
        self._updateClock()

    def _resetForm(self) -> None:
        p = self._parameterNode
        p.rating, p.decision, p.confidence, p.trust, p.comment = 50.0, DECISION_CHOICES[0], 3, 3, ""
        self.ui.pauseButton.checked = False

    def onPauseButton(self, paused) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not pause.")):
            if not self.logic.isReading():
                return
            if paused:
                self.logic.pause()
                self.logic.display(None)  # the case, and the AI's call below, are hidden while the clock is stopped
            else:
                self.logic.resume()
                self.logic.display(self._parameterNode.mapOpacity)
            self.ui.aiLabel.visible = self._showsAI and not paused
            self._updateButtons()
            self._updateClock()

    def onSubmitButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The answer was not saved."), waitCursor=True):
            p = self._parameterNode
            decision = 1 if p.decision == DECISION_CHOICES[1] else 0
            trust = p.trust if self._showsAI else None  # not the spin box's visibility: a collapsed section hides it
            self.logic.submit(p.rating, decision, p.confidence, trust, p.comment)
            self._showNext()

    def onMapOpacityChanged(self, value) -> None:
        if self.logic and self.logic.isReading() and not self.ui.pauseButton.checked:
            self.logic.display(value)

    def _updateClock(self) -> None:
        if self.logic and self.logic.isReading():
            seconds = int(self.logic.elapsed())
            self.ui.clockLabel.text = _("{m}:{s:02d}{paused}").format(
                m=seconds // 60, s=seconds % 60, paused=_(" (paused)") if self.ui.pauseButton.checked else "")

    def _showReadingState(self, reading) -> None:
        self.ui.caseCollapsibleButton.enabled = reading
        self.ui.answerCollapsibleButton.enabled = reading
        self.ui.stopButton.enabled = reading
        self.ui.studyFolderButton.enabled = not reading
        self.ui.readerComboBox.enabled = not reading
        if not reading:
            self.ui.readingIdLabel.text = ""
            self.ui.progressLabel.text = ""
            self.ui.aiLabel.text = ""
            self.ui.clockLabel.text = ""
        self._updateButtons()

    def _setReadingMode(self, on) -> None:
        """While reading: no menus, toolbars or module selector, so the reader stays in this panel."""
        if on == self._hiddenForReading:
            return
        slicer.util.setToolbarsVisible(not on)
        slicer.util.setMenuBarsVisible(not on)
        slicer.util.setModulePanelTitleVisible(not on)
        slicer.util.setModuleHelpSectionVisible(not on)
        self._hiddenForReading = on


#
# MedXAIReaderStudyLogic
#


class MedXAIReaderStudyLogic(ScriptedLoadableModuleLogic):
    """The reading loop without a GUI (usable from the Python console and tests); see ReaderStudyLib.reading."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._reading = None

    def getParameterNode(self):
        return MedXAIReaderStudyParameterNode(super().getParameterNode())

    def _readingLogic(self):
        from ReaderStudyLib.reading import ReadingLogic

        if self._reading is None or self._reading.scene is not slicer.mrmlScene:
            self._reading = ReadingLogic(slicer.mrmlScene)
        return self._reading

    def readers(self, folder: str) -> list:
        from ReaderStudyLib.reading import ReadingLogic

        return ReadingLogic.readers(folder)

    def open(self, folder: str, reader: str) -> dict:
        """Open the study (files checked against their hashes) as ``reader``; resume after the last read."""
        return self._readingLogic().open(folder, reader)

    def close(self) -> None:
        if self._reading is not None:
            self._reading.close()

    def isReading(self) -> bool:
        return self._reading is not None and self._reading.reading is not None

    def locationNode(self):
        return self._readingLogic().location_node()

    def showNext(self) -> dict:
        """Load the next unread case (only what its arm allows) and start its clock; return what may be shown."""
        logic = self._readingLogic()
        logic.show_next()
        return logic.case_info()

    def display(self, mapOpacity: Optional[float]) -> None:  # noqa: UP045 - Slicer 5.8 runs Python 3.9
        """Show the case in a fixed layout (the map over the image; the counterfactual beside it); None hides it."""
        nodes = self._readingLogic().nodes
        if nodes is None:
            return
        layoutManager = slicer.app.layoutManager()
        if mapOpacity is None:
            slicer.util.setSliceViewerLayers(background=None, foreground=None, label=None)
            return
        layout = (slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView if nodes.counterfactual
                  else slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView)
        if layoutManager is not None:
            layoutManager.setLayout(layout)
        image = nodes.images[-1]
        overlay = next(iter(nodes.maps.values()), None)
        slicer.util.setSliceViewerLayers(background=image, foreground=overlay, label=None,
                                         foregroundOpacity=mapOpacity, fit=True)
        if nodes.counterfactual and layoutManager is not None:
            yellow = layoutManager.sliceWidget("Yellow").mrmlSliceCompositeNode()
            yellow.SetBackgroundVolumeID(nodes.counterfactual[-1].GetID())
            yellow.SetForegroundVolumeID(None)
            layoutManager.sliceWidget("Yellow").sliceLogic().FitSliceToBackground()

    def pause(self) -> None:
        self._readingLogic().pause()

    def resume(self) -> None:
        self._readingLogic().resume()

    def elapsed(self) -> float:
        return self._readingLogic().elapsed()

    def submit(self, rating: float, decision: int, confidence: int, trust: Optional[int], comment: str) -> dict:  # noqa: UP045 - Slicer 5.8 runs Python 3.9
        """Save the answer to the case on screen (on disk when this returns); return the record."""
        record = self._readingLogic().submit(rating, decision, confidence, trust, comment)
        logging.info(f"MedXAI Reader Study: saved reading {record['reading_id']} ({record['seconds']:.1f} s)")
        return record


#
# MedXAIReaderStudyTest
#


class MedXAIReaderStudyTest(ScriptedLoadableModuleTest):
    """The reading loop in Slicer on a tiny study made from the chest X-ray phantoms (needs MedXAI's dependencies)."""

    def setUp(self):
        import tempfile

        slicer.mrmlScene.Clear()
        self.folder = tempfile.mkdtemp(prefix="MedXAIReaderStudyTest-")
        self.study = os.path.join(self.folder, "study")
        try:
            from MedXAI import MedXAILogic
        except ImportError:
            self.skipTest("the MedXAI module is needed to make a study (it installs torch and MONAI)")
        if not MedXAILogic().ensureDependencies(askConfirmation=False):
            self.skipTest("MedXAI's dependencies (torch, MONAI) are needed to make a study")
        from ReaderStudyLib import ensure_core_importable

        ensure_core_importable()
        from MedXAILib.models import load_model
        from MedXAILib.study.create import StudySettings, create_study, phantom_cases

        settings = StudySettings(arms=["image", "ai+gradcam"], readers=["r1"], seed=1, finding="nodule")
        create_study(phantom_cases("phantoms:chest:4"), load_model("demo-chest-xray"), "demo-chest-xray", settings,
                     self.study)

    def tearDown(self):
        import shutil

        MedXAIReaderStudyLogic().close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def runTest(self):
        self.setUp()
        self.test_ReadingLoop()
        self.tearDown()
        self.setUp()
        self.test_ResumeAfterReopen()
        self.tearDown()

    def test_ReadingLoop(self):
        logic = MedXAIReaderStudyLogic()
        progress = logic.open(self.study, "r1")
        self.assertEqual(progress["total"], 8)
        info = logic.showNext()
        self.assertEqual(info["position"], 1)
        names = [slicer.mrmlScene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode").GetName()
                 for i in range(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
        self.assertTrue(all(n.startswith(info["reading_id"]) for n in names))  # no file or case names
        self.assertEqual(bool(info["maps"]), info["shows_ai"])
        logic.display(0.5)
        logic.locationNode().AddControlPoint(vtk.vtkVector3d(0.0, 0.0, 0.0))
        logic.pause()
        logic.resume()
        record = logic.submit(80.0, 1, 4, 3 if info["shows_ai"] else None, "self-test")
        self.assertEqual(record["click_ras"], [0.0, 0.0, 0.0])
        with open(os.path.join(self.study, "reads", "r1.jsonl")) as fh:
            self.assertEqual(len(fh.read().splitlines()), 1)
        self.delayDisplay("reading loop passed")

    def test_ResumeAfterReopen(self):
        logic = MedXAIReaderStudyLogic()
        logic.open(self.study, "r1")
        first = logic.showNext()
        logic.submit(20.0, 0, 2, 2 if first["shows_ai"] else None, "")
        logic.close()
        logic.open(self.study, "r1")
        second = logic.showNext()
        self.assertNotEqual(first["reading_id"], second["reading_id"])
        self.assertEqual(second["progress"]["done"], 1)
        logic.close()
        self.delayDisplay("resume passed")
