"""*Report*: the one-page case report (HTML + PDF) of the current inputs, model and method, in the background."""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

from .section import Section


class ReportSection(Section):
    """One button; the report is written where the user says (no node is made)."""

    def setup(self) -> None:
        self.ui.reportButton.connect("clicked(bool)", self.onReportButton)

    def update(self) -> None:
        self.ui.reportButton.enabled = self.panel.inputs.ready() and not self.jobs.running

    def onReportButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to write the case report."), waitCursor=True):
            run = self.panel.run
            entry, model = run.modelAndEntry()
            if not run.ensurePackages(entry, self.parameterNode.method, shapPlot=False):
                return
            path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save the case report"),
                                                  "case.html", _("HTML page (*.html)"))
            if not path:
                return
            p = self.parameterNode
            target = self.panel.explain.targetArguments().get("target")
            task = self.logic.writeCaseReport(
                self.panel.inputs.inputNodes(entry), path, model, method=p.method,
                referenceSegmentation=p.referenceSegmentation, slowMetrics=p.qualitySlowMetrics,
                device=run.device(), target=target, extraArgs=run.modelArguments("report", entry))
            self.jobs.run(task, _("Writing the case report…"), self.onWritten)

    def onWritten(self, outputs: dict) -> None:
        self.log(_("Case report written: {html} and {pdf}").format(html=outputs["html"], pdf=outputs["pdf"]))
