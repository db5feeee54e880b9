"""*Model*: the model list (read in the background, cached), a model file or folder, the model card and the
out-of-domain warning beside the model, and what follows the model (input rows, classes, methods, options)."""

from __future__ import annotations

import html
import os
import pathlib
from typing import Any

import qt
import slicer
from MedXAILogicLib.logic.model import MODEL_FILE_CHOICE
from slicer.i18n import tr as _

from .section import Section


class ModelSection(Section):
    """The model combo box is keyed on what ``--model`` takes (``ModelEntry.name``); its choice is the parameter
    node's ``modelName`` (set from code: the list comes from the core)."""

    def setup(self) -> None:
        self.entry = None  # the selected model's entry (None: a file or folder not described yet)
        self._filling = False
        self._describing: dict[str, Any] = {}  # path -> running describe task
        self._reported: dict[str, Any] = {}  # model -> the card and domain warning its last run reported
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshModelsButton)
        self.ui.browseModelFolderButton.connect("clicked(bool)", self.onBrowseModelFolderButton)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)

    # -- the list ----------------------------------------------------------------------------------------------------
    def startCatalog(self, force: bool) -> None:
        """Fill the list from what is known now; read it again in the background when needed (or ``force``)."""
        self.fillModelList()
        if self.logic.startCatalogRefresh(force=force):
            self.ui.refreshModelsButton.enabled = False
            self.ui.refreshModelsButton.text = _("Reading…")
            self.ui.refreshModelsButton.toolTip = _("Reading the models and methods the core offers "
                                                    "(in the background)")
            self.jobs.addPoller(self.pollCatalog)

    def pollCatalog(self) -> bool:
        if not self.logic.pollCatalog():
            return False
        self.ui.refreshModelsButton.enabled = True
        self.ui.refreshModelsButton.text = _("Refresh")
        _models, note = self.logic.currentModels()
        if note:
            self.log(note)
        self.fillModelList()
        return True

    def onRefreshModelsButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to read the model list."), waitCursor=False):
            self.startCatalog(force=True)

    def fillModelList(self) -> None:
        models, _note = self.logic.currentModels()
        combo = self.ui.modelComboBox
        p = self.parameterNode
        wanted = p.modelName if p else "demo-brain-tumour"
        self._filling = True
        try:
            combo.clear()
            for entry in models:
                combo.addItem(f"{entry.display_name}  ({entry.source}, {entry.task})", entry.name)
                combo.setItemData(combo.count - 1, entry.summary(), qt.Qt.ToolTipRole)
            combo.addItem(_("model file or folder…"), MODEL_FILE_CHOICE)
            if combo.findData(wanted) < 0:  # a saved choice the list does not have (yet): kept, not replaced
                combo.insertItem(0, _("{model}  (not listed)").format(model=wanted), wanted)
            combo.setCurrentIndex(max(0, combo.findData(wanted)))
        finally:
            self._filling = False
        self.onModelChanged()

    def selectModel(self, name: str) -> None:
        self.ui.modelComboBox.setCurrentIndex(max(0, self.ui.modelComboBox.findData(name)))

    def restore(self) -> None:
        if self.parameterNode and self.ui.modelComboBox.count:
            self.fillModelList()  # selects the saved model (kept as "not listed" while the list lacks it)

    # -- the selected model ------------------------------------------------------------------------------------------
    def modelArgument(self) -> str:
        """What ``--model`` takes for the current choice ('' when a file or folder is not chosen yet)."""
        p = self.parameterNode
        if p is None:
            return ""
        if p.modelName == MODEL_FILE_CHOICE:
            path = str(p.modelPath or "").strip()
            return "" if path in ("", ".") else path
        return p.modelName

    def onModelChanged(self, index: Any = None) -> None:
        """Input rows, target classes, methods and the model's card follow the selected model."""
        p = self.parameterNode
        if self._filling or not p:
            return
        name = self.ui.modelComboBox.currentData or "demo-brain-tumour"
        if p.modelName != name:
            p.modelName = name
        isFile = name == MODEL_FILE_CHOICE
        self.ui.modelPathLabel.visible = self.ui.modelPathRowWidget.visible = isFile
        self.applyEntry(self.logic.knownModel(self.modelArgument()))

    def applyEntry(self, entry: Any) -> None:
        self.entry = entry
        channels = list(entry.channels) if entry is not None else [
            _("input {n}").format(n=n) for n in range(1, 5)]
        self.panel.inputs.setChannels(channels)
        self.showCard()
        self.panel.explain.followModel(entry)
        self.panel.update()

    def showCard(self, report: Any = None) -> None:
        """The model card beside the model (the one the last run reported, else the catalogue's), and the
        out-of-domain warning of the last run on this model."""
        entry = self.entry
        if report is not None and entry is not None:
            self._reported[entry.name] = report
        reported = self._reported.get(entry.name) if entry is not None else None
        p = self.parameterNode
        if entry is None and p is not None and p.modelName != MODEL_FILE_CHOICE:
            self.ui.modelCardLabel.text = (_("{model} is not in the model list: it is being read (see Refresh), or "
                                             "the model is not installed here.").format(model=p.modelName)
                                           if self.logic.catalog.running else
                                           _("{model} is not in the model list: it is not installed here, or press "
                                             "Refresh.").format(model=p.modelName))
        elif entry is None:
            self.ui.modelCardLabel.text = _("Choose a model file or folder; it is described (in the background) "
                                            "when chosen.")
        else:
            rows = entry.card_rows((reported or {}).get("card") or None)
            self.ui.modelCardLabel.text = "<table>" + "".join(
                f"<tr><td><b>{html.escape(label)}</b>&nbsp;</td><td>{html.escape(text)}</td></tr>"
                for label, text in rows) + "</table>"
        warning = (reported or {}).get("domain_warning")
        self.ui.modelWarningLabel.text = _("Out of domain: {warning}").format(warning=warning) if warning else ""
        self.ui.modelWarningLabel.visible = bool(warning)

    # -- a model file or folder ----------------------------------------------------------------------------------------
    def onModelPathChanged(self, path: Any = "") -> None:
        """A chosen model file is described at once (in the background); a folder typed by hand waits for
        *Folder…*, *Refresh* or *Apply* (every folder on the way to it would otherwise be loaded as a model).

        The path comes from the signal: this slot runs before the parameter node's connector (connected later, by
        ``connectGui``) has stored it, so ``modelPath`` still holds the previous path here."""
        p = self.parameterNode
        if not p or p.modelName != MODEL_FILE_CHOICE or self._filling:
            return
        path = str(path or "").strip()
        if os.path.isfile(path):
            self.describe(path)
        else:
            self.applyEntry(self.logic.knownModel(path))

    def describe(self, path: str, then: Any = None) -> None:
        """Describe a model file or folder in the background; ``then(entry)`` when it is known."""
        known = self.logic.knownModel(path)
        if known is not None:
            self.applyEntry(known)
            if then is not None:
                then(known)
            return
        if not path or not os.path.exists(path):
            self.applyEntry(None)
            return
        # the core loads the model to describe it: torch, and nnunetv2 for an nnU-Net results folder (plans.json)
        nnunet = ("nnunetv2",) if os.path.isfile(os.path.join(path, "plans.json")) else ()
        if not self.panel.run.ensurePackages(None, more=nnunet):
            return
        task = self.logic.startDescribe(path)

        def described(outputs: dict) -> None:
            entry = self.logic.describedEntry(path, task)
            if self.modelArgument() == path:
                self.applyEntry(entry)
            if then is not None:
                then(entry)

        self.jobs.run(task, _("Reading the model's description…"), described)

    def onBrowseModelFolderButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to choose the model folder."), waitCursor=False):
            title = _("Choose a model folder (MONAI bundle, nnU-Net or TotalSegmentator results)")
            p = self.parameterNode
            folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), title, str(p.modelPath or ""))
            if folder:
                p.modelPath = pathlib.Path(folder)
                self.describe(folder)

    def update(self) -> None:
        entry = self.entry
        nnunet = bool(entry is not None and entry.is_nnunet)
        for name in ("nnunetFolds", "nnunetCheckpoint", "nnunetMirroring"):
            for suffix in ("Label", "LineEdit", "ComboBox", "CheckBox"):
                widget = getattr(self.ui, name + suffix, None)
                if widget is not None:
                    widget.enabled = nnunet
        total = bool(entry is not None and entry.source == "totalsegmentator")
        self.ui.totalSegmentatorFastLabel.enabled = self.ui.totalSegmentatorFastCheckBox.enabled = total
        self.ui.browseModelFolderButton.enabled = not self.jobs.running
