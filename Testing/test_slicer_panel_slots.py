"""Slots of the two panels that Slicer calls while the parameter node's connectors are still behind.

In Slicer a slot the panel connects in ``setup`` runs before the parameter node wrapper's connector of the same
widget (``connectGui`` connects it later; Qt calls slots in connection order), and refilling a ``QComboBox`` emits
``currentTextChanged`` for the emptied list and then for its first item. These tests run the real slots of
``MedXAIReaderStudyWidget`` and ``MedXAIPanelLib.model.ModelSection`` with the application-only modules stood in for
(as ``test_slicer_logic.py`` does) and a combo box that follows ``QComboBox``'s signal rules; where PySide6 is
installed, those rules are first checked against a real ``QComboBox``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import pytest
from test_slicer_logic import _stub_modules

from MedXAILib.study.protocol import FORMAT

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "MedXAIReaderStudy", ROOT / "MedXAI"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


class ComboBox:
    """``QComboBox``'s items, current index and ``currentTextChanged`` (non-editable): ``clear()`` makes the index
    -1; items added to an empty box make the first one current; ``blockSignals`` returns the previous state."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.index = -1
        self.blocked = False
        self.slots: list = []

    def connect(self, signal: str, slot) -> None:
        assert signal == "currentTextChanged(QString)"
        self.slots.append(slot)

    def blockSignals(self, block: bool) -> bool:
        old, self.blocked = self.blocked, block
        return old

    @property
    def currentText(self) -> str:
        return self.items[self.index] if self.index >= 0 else ""

    def setCurrentIndex(self, index: int) -> None:
        if index != self.index:
            self.index = index
            if not self.blocked:
                for slot in self.slots:
                    slot(self.currentText)

    def clear(self) -> None:
        self.items = []
        self.setCurrentIndex(-1)

    def addItems(self, texts: list[str]) -> None:
        empty = not self.items
        self.items += list(texts)
        if empty and self.items and self.index == -1:
            self.setCurrentIndex(0)

    def property(self, name: str) -> None:  # (after the @property above) no SlicerParameterName
        return None


def _combo_trace(combo, text, events: list) -> list:
    """The same operations on a combo box (ours, or PySide6's through ``text``), the signals seen and the text."""
    combo.addItems(["a", "b"])
    combo.clear()
    combo.addItems(["a", "b", "c"])
    combo.setCurrentIndex(2)
    combo.addItems(["d"])
    old = combo.blockSignals(True)
    combo.clear()
    combo.addItems(["x", "y"])
    combo.setCurrentIndex(-1)
    combo.blockSignals(old)
    combo.addItems(["z"])
    combo.setCurrentIndex(1)
    return [*events, ("text", text(combo))]


def test_the_combo_box_follows_qt():
    widgets = pytest.importorskip("PySide6.QtWidgets", reason="PySide6 checks the combo box against real Qt")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = widgets.QApplication.instance() or widgets.QApplication([])  # noqa: F841 - widgets need an application
    real_events: list = []
    real = widgets.QComboBox()
    real.currentTextChanged.connect(real_events.append)
    ours_events: list = []
    ours = ComboBox()
    ours.connect("currentTextChanged(QString)", ours_events.append)
    assert _combo_trace(ours, lambda c: c.currentText, ours_events) == _combo_trace(
        real, lambda c: c.currentText(), real_events)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study(folder: Path, readers: list[str]) -> str:
    """A study folder as the reader list reads it (``study.json`` only; the list does not check files)."""
    folder.mkdir()
    protocol = {"format": FORMAT, "study_id": "s", "arms": ["image"], "readers": readers, "design": "fully-crossed",
                "cases": {}, "reading_lists": {r: [] for r in readers}, "files": {}, "answer_form": {}}
    (folder / "study.json").write_text(json.dumps(protocol))
    return str(folder)


@pytest.fixture
def reader_panel(monkeypatch):
    """The reading panel's widget with the widgets its study/reader slots use, connected as ``setup`` does."""
    _stub_modules(monkeypatch)
    module = _load("MedXAIReaderStudy_under_test", ROOT / "MedXAIReaderStudy" / "MedXAIReaderStudy.py")
    widget = module.MedXAIReaderStudyWidget.__new__(module.MedXAIReaderStudyWidget)
    widget.logic = module.MedXAIReaderStudyLogic()
    node = module.MedXAIReaderStudyParameterNode()
    node.studyFolder = Path()
    node.connectParametersToGui = lambda widgets: 0
    node.disconnectGui = lambda tag: None
    widget._parameterNode, widget._parameterNodeGuiTag = node, 0

    def button(**values):
        return types.SimpleNamespace(property=lambda name: None, **values)

    widget.ui = types.SimpleNamespace(readerComboBox=ComboBox(), startButton=button(enabled=False),
                                      submitButton=button(enabled=False, toolTip=""), pauseButton=button(checked=False),
                                      decisionComboBox=button(currentText=module.DECISION_CHOICES[0]))
    setup = Path(module.__file__).read_text()
    assert 'readerComboBox.connect("currentTextChanged(QString)", self.onReaderChanged)' in setup
    widget.ui.readerComboBox.connect("currentTextChanged(QString)", widget.onReaderChanged)
    return widget, node


def test_choosing_a_study_lists_its_readers_and_keeps_the_chosen_reader(reader_panel, tmp_path):
    widget, node = reader_panel
    combo = widget.ui.readerComboBox
    first = _study(tmp_path / "a", ["r1", "r2", "r3"])
    widget.onStudyFolderChanged(first)  # the connector has not stored the folder yet: studyFolder is still empty
    assert combo.items == ["r1", "r2", "r3"]
    assert combo.currentText == "" and not widget.ui.startButton.enabled  # no reader is chosen for the reader
    combo.setCurrentIndex(1)
    assert node.readerName == "r2" and widget.ui.startButton.enabled
    node.studyFolder = Path(first)  # the connector's write
    widget.setParameterNode(node)  # the module is entered again, or the scene's node is set again
    widget.onStudyFolderChanged(first)
    assert combo.currentText == "r2" and node.readerName == "r2"  # reads must not go to r1
    other = _study(tmp_path / "b", ["x1", "x2"])
    widget.onStudyFolderChanged(other)
    assert combo.items == ["x1", "x2"] and combo.currentText == "" and node.readerName == ""
    assert not widget.ui.startButton.enabled


def test_entering_with_a_damaged_saved_study_says_so(reader_panel, tmp_path, monkeypatch):
    import slicer

    widget, node = reader_panel
    shown: list = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: shown.append(text))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "study.json").write_text("{not json")
    node.studyFolder = damaged
    widget.setParameterNode(node)  # entering the module: one message, not an exception out of enter()
    assert len(shown) == 1 and shown[0].startswith("The saved study folder is not a readable study.")
    assert "not a readable study protocol" in shown[0] and widget.ui.readerComboBox.items == []


def test_a_chosen_model_file_is_described_not_the_previous_one(monkeypatch, tmp_path, request):
    _stub_modules(monkeypatch)
    request.addfinalizer(lambda: [sys.modules.pop(m) for m in list(sys.modules)  # imported with the stand-ins
                                  if m.split(".")[0] == "MedXAIPanelLib"])
    from MedXAILogicLib.logic.model import MODEL_FILE_CHOICE
    from MedXAIPanelLib.model import ModelSection

    previous, chosen = tmp_path / "previous.pt", tmp_path / "chosen.pt"
    previous.write_bytes(b"0")
    chosen.write_bytes(b"0")
    section = ModelSection.__new__(ModelSection)
    section._filling = False
    node = types.SimpleNamespace(modelName=MODEL_FILE_CHOICE, modelPath=previous)
    section.panel = types.SimpleNamespace(parameterNode=node)
    described: list = []
    section.describe = described.append
    section.applyEntry = lambda entry: described.append(("entry", entry))
    section.logic = types.SimpleNamespace(knownModel=lambda path: None)
    section.onModelPathChanged(str(chosen))  # the connector has not stored the path yet
    assert described == [str(chosen)]


class _ReadingLogic:
    """The reading panel's logic as far as pause, submit and a closing scene use it (calls recorded)."""

    def __init__(self) -> None:
        self.calls: list = []

    def isReading(self) -> bool:
        return True

    def elapsed(self) -> float:
        return 12.0

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


def test_pause_hides_the_ai_and_a_closing_scene_gives_the_menus_back(reader_panel, monkeypatch):
    widget, node = reader_panel
    import slicer

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", lambda *a, **k: contextlib.nullcontext())  # errors raise
    shown: dict = {}
    for name in ("setToolbarsVisible", "setMenuBarsVisible", "setModulePanelTitleVisible",
                 "setModuleHelpSectionVisible"):
        monkeypatch.setattr(slicer.util, name, lambda visible, name=name: shown.__setitem__(name, visible))
    widget.logic, widget._timer = _ReadingLogic(), types.SimpleNamespace(stop=lambda: None)
    widget._showsAI, widget._hiddenForReading = True, False
    widget.ui.aiLabel = types.SimpleNamespace(visible=True, text="AI: nodule present (probability 0.91)")
    widget.ui.clockLabel = types.SimpleNamespace(text="")
    widget.onPauseButton(True)
    assert ("pause",) in widget.logic.calls and not widget.ui.aiLabel.visible  # the clock stops: nothing to read
    widget.onPauseButton(False)
    assert widget.ui.aiLabel.visible
    # trust is sent in an AI arm even when a collapsed section hides its spin box
    widget.ui.trustSpinBox = types.SimpleNamespace(visible=False)
    widget._showNext = lambda: None
    node.rating, node.decision, node.confidence, node.trust, node.comment = 70.0, "finding present", 4, 2, ""
    widget.onSubmitButton()
    assert widget.logic.calls[-1] == ("submit", 70.0, 1, 4, 2, "")
    # reading mode on, then the scene closes: the menus and toolbars come back
    widget._setReadingMode(True)
    assert shown and not any(shown.values())
    for name in ("caseCollapsibleButton", "answerCollapsibleButton", "stopButton", "studyFolderButton",
                 "readingIdLabel", "progressLabel"):
        setattr(widget.ui, name, types.SimpleNamespace(enabled=True, text=""))
    widget.ui.readerComboBox.enabled = True
    widget.setParameterNode = lambda node: None
    widget.onSceneStartClose(None, None)
    assert all(shown.values()) and not widget._hiddenForReading
