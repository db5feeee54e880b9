"""Render MedXAI's Slicer panel from ``MedXAI/Resources/UI/MedXAI.ui`` to a PNG, without Slicer.

Qt's own loader (PySide6's ``QUiLoader``) builds the ``.ui``; Slicer's and CTK's widgets, which PySide6 does not
have, are drawn by small stand-ins that look like them (a collapsible section, a node selector showing its
"Create new …" or "None" text, a slider with a spin box …). The lists are filled as the panel fills them when it
opens before the core has listed its models (the built-in models, the default channel rows, the default methods);
nothing is run. The picture is therefore *rendered from the .ui*, not a screenshot of Slicer, and says so.

    python3 -m venv /tmp/pyside && /tmp/pyside/bin/pip install PySide6
    QT_QPA_PLATFORM=offscreen /tmp/pyside/bin/python docs/tools/render_slicer_panel.py docs/slicer-panel.png
    QT_QPA_PLATFORM=offscreen /tmp/pyside/bin/python docs/tools/render_slicer_panel.py \
        docs/slicer-panel-totalsegmentator.png --walkthrough

With ``--walkthrough`` the choices of docs/slicer.md's TotalSegmentator walkthrough are typed into the widgets by
this script (a CT volume, the ``total`` task, the organ *liver*, Advanced open with mirroring off); they are
illustrations of where each choice is made, not the result of a run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "MedXAI" / "Resources" / "UI" / "MedXAI.ui"
SCALE = 1.5
WIDTH = 400


class ctkCollapsibleButton(QtWidgets.QGroupBox):  # noqa: N801 - named after the class the .ui names
    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapsed = False

    def getText(self):
        return self.title()

    def setText(self, text):
        self.setTitle(("▸ " if self._collapsed else "▾ ") + text)
        self._label = text

    def getCollapsed(self):
        return self._collapsed

    def setCollapsed(self, collapsed):
        self._collapsed = bool(collapsed)
        self.setTitle(("▸ " if self._collapsed else "▾ ") + getattr(self, "_label", ""))

    text = QtCore.Property(str, getText, setText)
    collapsed = QtCore.Property(bool, getCollapsed, setCollapsed)


class qMRMLNodeComboBox(QtWidgets.QComboBox):  # noqa: N801
    def __init__(self, parent=None):
        super().__init__(parent)
        self._none = "None"
        self.addItem(self._none)

    def getNoneDisplay(self):
        return self._none

    def setNoneDisplay(self, text):
        self._none = text
        self.setItemText(0, text)

    noneDisplay = QtCore.Property(str, getNoneDisplay, setNoneDisplay)  # noqa: N815 - the .ui's name


class qMRMLSegmentSelectorWidget(QtWidgets.QWidget):  # noqa: N801
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for text in ("None", "(segment)"):
            combo = QtWidgets.QComboBox()
            combo.addItem(text)
            layout.addWidget(combo)


class ctkSliderWidget(QtWidgets.QWidget):  # noqa: N801
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.slider.setRange(0, 100)
        self.spin = QtWidgets.QDoubleSpinBox()
        self.spin.setRange(0.0, 1.0)
        self.spin.setSingleStep(0.05)
        layout.addWidget(self.slider)
        layout.addWidget(self.spin)

    def getValue(self):
        return self.spin.value()

    def setValue(self, value):
        self.spin.setValue(value)
        self.slider.setValue(int(round(100 * value)))

    value = QtCore.Property(float, getValue, setValue)


class ctkPathLineEdit(QtWidgets.QWidget):  # noqa: N801
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QtWidgets.QLineEdit())
        layout.addWidget(QtWidgets.QToolButton(text="…"))


class qSlicerMarkupsPlaceWidget(QtWidgets.QToolButton):  # noqa: N801
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setText("⊕")


class qMRMLTableView(QtWidgets.QTableWidget):  # noqa: N801
    def __init__(self, parent=None):
        super().__init__(2, 2, parent)
        self.setHorizontalHeaderLabels(["", ""])
        self.setMaximumHeight(90)


class qMRMLWidget(QtWidgets.QWidget):  # noqa: N801
    pass


class qSlicerWidget(QtWidgets.QWidget):  # noqa: N801
    pass


def fill(panel: QtWidgets.QWidget) -> None:
    """What the panel shows when it opens, before the core has listed its models and methods."""
    find = lambda name: panel.findChild(QtWidgets.QWidget, name)  # noqa: E731
    models = find("modelComboBox")
    for text in ("demo-brain-tumour  (builtin, segmentation)", "demo-chest-xray  (builtin, classification)",
                 "model file or folder…"):
        models.addItem(text)
    find("refreshModelsButton").setText("Reading…")
    find("refreshModelsButton").setEnabled(False)
    find("modelCardLabel").setText(
        "<table><tr><td><b>task</b>&nbsp;</td><td>segmentation, 3D</td></tr>"
        "<tr><td><b>inputs</b>&nbsp;</td><td>t1, t1ce, t2, flair</td></tr>"
        "<tr><td><b>classes</b>&nbsp;</td><td>necrotic core, oedema, enhancing rim</td></tr>"
        "<tr><td><b>source</b>&nbsp;</td><td>builtin</td></tr></table>")
    for name in ("modelPathLabel", "modelPathRowWidget", "extraInputsWidget", "methodParametersWidget"):
        find(name).setVisible(False)
    for combo, items in (("stepsComboBox", ["predict and explain", "predict", "explain"]),
                         ("methodComboBox", ["gradcam"]),
                         ("targetKindComboBox", ["predicted region or top class", "class", "segment", "markup point"]),
                         ("targetClassComboBox", ["necrotic core", "oedema", "enhancing rim"]),
                         ("nnunetCheckpointComboBox", ["final", "best"])):
        for item in items:
            find(combo).addItem(item)
    find("compareMethodsLineEdit").setText("gradcam,saliency,lrp")
    find("nnunetMirroringCheckBox").setChecked(True)
    for collapsible in panel.findChildren(ctkCollapsibleButton):
        if collapsible.collapsed:
            for child in collapsible.findChildren(QtWidgets.QWidget):
                child.setVisible(False)
            collapsible.setMaximumHeight(28)
    find("applyButton").setEnabled(False)
    find("cancelButton").setEnabled(False)
    find("logTextEdit").setMaximumHeight(60)


def fill_walkthrough(panel: QtWidgets.QWidget) -> None:
    """The choices of the TotalSegmentator walkthrough (typed in here; nothing was run)."""
    find = lambda name: panel.findChild(QtWidgets.QWidget, name)  # noqa: E731
    models = find("modelComboBox")
    models.insertItem(2, "total  (totalsegmentator, segmentation)")
    models.setCurrentIndex(2)
    find("refreshModelsButton").setText("Refresh")
    find("refreshModelsButton").setEnabled(True)
    find("inputLabel1").setText("CT:")
    find("inputVolume1").setItemText(0, "Abdomen CT")
    for i in range(2, 5):
        find(f"inputLabel{i}").setVisible(False)
        find(f"inputVolume{i}").setVisible(False)
    find("modelCardLabel").setText(
        "<table><tr><td><b>task</b>&nbsp;</td><td>segmentation, 3D</td></tr>"
        "<tr><td><b>inputs</b>&nbsp;</td><td>CT</td></tr>"
        "<tr><td><b>classes</b>&nbsp;</td><td>spleen, kidney_right, kidney_left, gallbladder, liver, …</td></tr>"
        "<tr><td><b>name</b>&nbsp;</td><td>TotalSegmentator total</td></tr>"
        "<tr><td><b>models</b>&nbsp;</td><td>Dataset291_…part1_organs, Dataset292_…, …</td></tr>"
        "<tr><td><b>source</b>&nbsp;</td><td>totalsegmentator</td></tr></table>")
    find("targetClassLabel").setText("Organ:")
    classes = find("targetClassComboBox")
    classes.clear()
    classes.addItem("liver")
    find("targetKindComboBox").setCurrentIndex(1)
    find("nnunetMirroringCheckBox").setChecked(False)
    advanced = find("advancedCollapsibleButton")
    advanced.setCollapsed(False)
    advanced.setMaximumHeight(16777215)
    for child in advanced.findChildren(QtWidgets.QWidget):
        child.setVisible(True)
    find("applyButton").setEnabled(True)
    for name in ("resultsCollapsibleButton",):
        section = find(name)
        section.setCollapsed(True)
        for child in section.findChildren(QtWidgets.QWidget):
            child.setVisible(False)
        section.setMaximumHeight(28)


def render(output: Path, walkthrough: bool = False) -> None:
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv)
    app.setStyle("Fusion")
    loader = QtUiTools.QUiLoader()
    for cls in (ctkCollapsibleButton, qMRMLNodeComboBox, qMRMLSegmentSelectorWidget, ctkSliderWidget,
                ctkPathLineEdit, qSlicerMarkupsPlaceWidget, qMRMLTableView, qMRMLWidget, qSlicerWidget):
        loader.registerCustomWidget(cls)
    file = QtCore.QFile(str(UI))
    file.open(QtCore.QFile.ReadOnly)
    panel = loader.load(file)
    file.close()
    if panel is None:
        raise SystemExit(f"could not load {UI}: {loader.errorString()}")
    fill(panel)
    if walkthrough:
        fill_walkthrough(panel)
    frame = QtWidgets.QWidget()
    layout = QtWidgets.QVBoxLayout(frame)
    note = QtWidgets.QLabel("MedXAI panel, rendered from MedXAI.ui with Qt (PySide6) and stand-ins for Slicer's "
                            "widgets: not a screenshot of Slicer"
                            + ("; the walkthrough's choices typed in, nothing run" if walkthrough else ""))
    note.setWordWrap(True)
    note.setStyleSheet("color: #555; font-style: italic")
    layout.addWidget(note)
    layout.addWidget(panel)
    frame.setFixedWidth(WIDTH)
    frame.adjustSize()
    frame.resize(WIDTH, frame.sizeHint().height())
    image = QtGui.QImage(frame.size() * SCALE, QtGui.QImage.Format_ARGB32)
    image.setDevicePixelRatio(SCALE)
    image.fill(QtGui.QColor("white"))
    frame.render(image)
    image.save(str(output))
    print(f"{output}: {image.width()} x {image.height()} pixels")


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    render(Path(arguments[0] if arguments else ROOT / "docs" / "slicer-panel.png"), "--walkthrough" in sys.argv)
