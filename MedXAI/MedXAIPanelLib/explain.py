"""*Explain*: the method and its parameters, what is explained, and what it will cost.

One widget per parameter of the chosen method, from ``methods --json``: a float's spin box gets enough decimals
for its default and range (``catalog.spin_box_decimals``: LRP's ``epsilon=1e-06`` stays 1e-06), so an untouched
parameter is never sent; only values changed from the default become ``--param key=value``.
"""

from __future__ import annotations

import json
from typing import Any

import qt
import slicer
from slicer.i18n import tr as _

from .section import Section

TARGET_DEFAULT, TARGET_CLASS, TARGET_SEGMENT, TARGET_POINT = (
    "predicted region or top class", "class", "segment", "markup point")


class ExplainSection(Section):
    """Method, parameters, target (class / organ, segment, point) and the cost estimate."""

    def setup(self) -> None:
        self.widgets: dict[str, tuple[Any, Any]] = {}  # parameter name -> (spec, widget)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.targetClassComboBox.connect("currentIndexChanged(int)", self.onTargetClassChanged)
        self.ui.targetKindComboBox.connect("currentIndexChanged(int)", lambda index: self.panel.update())
        self.ui.targetPointSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                            self.ui.targetPointPlaceWidget.setCurrentNode)
        self.ui.targetSegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onTargetSegmentChanged)
        self.ui.targetSegmentSelector.connect("currentSegmentChanged(QString)", self.onTargetSegmentChanged)
        self.ui.estimateButton.connect("clicked(bool)", self.onEstimateButton)

    # -- the model decides -----------------------------------------------------------------------------------------
    def followModel(self, entry: Any) -> None:
        """Classes (organs for TotalSegmentator) and methods of the selected model."""
        p = self.parameterNode
        classes = entry.target_classes() if entry is not None else []
        organ = bool(entry is not None and entry.needs_class_target)
        self.ui.targetClassLabel.text = _("Organ:") if organ else _("Class:")
        combo = self.ui.targetClassComboBox
        combo.blockSignals(True)
        combo.clear()
        for name in classes:
            combo.addItem(name)
        combo.setCurrentIndex(max(0, combo.findText(p.targetClass)) if classes and p else -1)
        combo.blockSignals(False)
        self.onTargetClassChanged()
        self.fillMethods(entry)

    def fillMethods(self, entry: Any) -> None:
        p = self.parameterNode
        combo = self.ui.methodComboBox
        combo.blockSignals(True)
        combo.clear()
        for name in self.logic.methodNames(entry):
            combo.addItem(name)
            title = self.logic.methodRecord(name).get("title")
            if title:
                combo.setItemData(combo.count - 1, title, qt.Qt.ToolTipRole)
        wanted = p.method if p else "gradcam"
        if combo.findText(wanted) < 0 and not self.logic.catalog.loaded:  # saved, not listed yet: kept
            combo.addItem(wanted)
        combo.setCurrentIndex(max(0, combo.findText(wanted)))
        combo.blockSignals(False)
        self.onMethodChanged()

    # -- method parameters -----------------------------------------------------------------------------------------
    def onMethodChanged(self, index: Any = None) -> None:
        """One widget per parameter of the method (type, range, default and help from ``methods --json``)."""
        p = self.parameterNode
        if not p:
            return
        method = self.ui.methodComboBox.currentText or "gradcam"
        if p.method != method:
            p.method = method
        saved = self.savedValues(method)
        layout = self.ui.methodParametersWidget.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.widgets = {}
        for spec in self.logic.methodParameterSpecs(method):
            widget = parameterWidget(spec, saved.get(spec.name, spec.default), self.storeValues)
            widget.toolTip = spec.help or _("default: {value}").format(value=spec.default)
            layout.addRow(spec.name.replace("_", " ") + ":", widget)
            self.widgets[spec.name] = (spec, widget)
        self.ui.methodParametersWidget.visible = bool(self.widgets)
        if self.logic.methodRecord(method):  # parameters unknown until the core listed them: the saved ones stay
            self.storeValues()

    def values(self) -> dict:
        return {name: widgetValue(spec, widget) for name, (spec, widget) in self.widgets.items()}

    def savedValues(self, method: str) -> dict:
        try:
            saved = json.loads(self.parameterNode.methodParameters or "{}")
        except ValueError:
            return {}
        return saved.get("values", {}) if isinstance(saved, dict) and saved.get("method") == method else {}

    def storeValues(self, *args: Any) -> None:
        p = self.parameterNode
        if p:
            text = json.dumps({"method": p.method, "values": self.values()})
            if p.methodParameters != text:
                p.methodParameters = text

    def methodArguments(self) -> list:
        specs = [spec for spec, _widget in self.widgets.values()]
        return self.logic.methodArguments(specs, self.values())

    # -- target ------------------------------------------------------------------------------------------------------
    def onTargetClassChanged(self, index: Any = None) -> None:
        p = self.parameterNode
        text = self.ui.targetClassComboBox.currentText or ""
        if p and text and p.targetClass != text:  # no classes known (yet): the saved class stays
            p.targetClass = text

    def onTargetSegmentChanged(self, *args: Any) -> None:
        p = self.parameterNode
        if not p:
            return
        node, segment = self.ui.targetSegmentSelector.currentNode(), self.ui.targetSegmentSelector.currentSegmentID()
        if (p.targetSegmentation.GetID() if p.targetSegmentation else "") != (node.GetID() if node else ""):
            p.targetSegmentation = node
        if p.targetSegmentID != (segment or ""):
            p.targetSegmentID = segment or ""

    def restore(self) -> None:
        p = self.parameterNode
        selector = self.ui.targetSegmentSelector
        selector.blockSignals(True)
        selector.setCurrentNode(p.targetSegmentation)
        if p.targetSegmentID:
            selector.setCurrentSegmentID(p.targetSegmentID)
        selector.blockSignals(False)
        self.ui.targetPointPlaceWidget.setCurrentNode(p.targetPoint)
        self.fillMethods(self.panel.model.entry)  # the method and its saved parameter values
        combo = self.ui.targetClassComboBox
        combo.setCurrentIndex(max(0, combo.findText(p.targetClass)) if combo.count else -1)

    def targetArguments(self) -> dict:
        """The explained target as the logic takes it (class, segment or point); a TotalSegmentator task of several
        models always explains its organ, which also picks the model that runs."""
        p = self.parameterNode
        entry = self.panel.model.entry
        args: dict[str, Any] = {}
        kind = p.targetKind
        if kind == TARGET_CLASS or (entry is not None and entry.needs_class_target):
            if not p.targetClass:
                raise ValueError(_("Choose the class (organ) to explain"))
            args["target"] = p.targetClass
        if kind == TARGET_SEGMENT:
            if not p.targetSegmentation or not p.targetSegmentID:
                raise ValueError(_("Choose the segment to explain"))
            args["regionSegmentation"], args["regionSegment"] = p.targetSegmentation, p.targetSegmentID
        elif kind == TARGET_POINT:
            args["markupsNode"] = p.targetPoint
        return args

    def update(self) -> None:
        p = self.parameterNode
        kind = p.targetKind if p else TARGET_DEFAULT
        entry = self.panel.model.entry
        organ = bool(entry is not None and entry.needs_class_target)
        self.ui.targetClassComboBox.enabled = kind == TARGET_CLASS or organ
        self.ui.targetSegmentSelector.enabled = kind == TARGET_SEGMENT
        self.ui.targetPointSelector.enabled = self.ui.targetPointPlaceWidget.enabled = kind == TARGET_POINT
        self.ui.estimateButton.enabled = self.panel.inputs.ready() and not self.jobs.running

    # -- cost ------------------------------------------------------------------------------------------------------
    def onEstimateButton(self) -> None:
        """``explain --dry-run`` as a background job; its line goes beside the button."""
        with slicer.util.tryWithErrorDisplay(_("Failed to estimate the cost."), waitCursor=True):
            run = self.panel.run
            entry, model = run.modelAndEntry()
            task = self.logic.startEstimate(
                self.panel.inputs.inputNodes(entry), model, method=self.parameterNode.method,
                methodArgs=self.methodArguments() + run.modelArguments("explain", entry), device=run.device(),
                **self.targetArguments())
            self.ui.costLabel.text = ""
            self.jobs.run(task, _("Estimating the cost…"), lambda outputs: setattr(self.ui.costLabel, "text",
                                                                                    outputs["text"]))


def parameterWidget(spec: Any, value: Any, changed: Any) -> Any:
    """A widget for one method parameter, showing ``value``; ``changed`` is called on every edit."""
    from MedXAILogicLib import catalog

    if spec.kind == "bool":
        widget = qt.QCheckBox()
        widget.checked = bool(value)
        widget.connect("toggled(bool)", changed)
    elif spec.kind in ("int", "float"):
        widget = qt.QSpinBox() if spec.kind == "int" else qt.QDoubleSpinBox()
        cast = int if spec.kind == "int" else float
        if spec.kind == "float":  # decimals before the range and the value: Qt rounds both to them
            widget.decimals = catalog.spin_box_decimals(spec)
        widget.singleStep = cast(catalog.spin_box_step(spec))
        widget.minimum, widget.maximum = cast(spec.minimum), cast(spec.maximum)
        widget.value = cast(value if value is not None else 0)
        widget.connect("valueChanged(double)" if spec.kind == "float" else "valueChanged(int)", changed)
    elif spec.kind == "choice":
        widget = qt.QComboBox()
        for choice in spec.choices:
            widget.addItem(choice)
        widget.setCurrentIndex(max(0, widget.findText(str(value))))
        widget.connect("currentIndexChanged(int)", changed)
    else:
        widget = qt.QLineEdit()
        widget.text = "" if value is None else str(value)
        widget.placeholderText = _("default") if spec.default in (None, "") else str(spec.default)
        widget.connect("editingFinished()", changed)
    return widget


def widgetValue(spec: Any, widget: Any) -> Any:
    """What a parameter widget holds, in the parameter's type."""
    if spec.kind == "bool":
        return bool(widget.checked)
    if spec.kind in ("int", "float"):
        return widget.value
    if spec.kind == "choice":
        return widget.currentText
    return widget.text
