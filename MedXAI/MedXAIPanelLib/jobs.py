"""Apply / Cancel, the progress bar, the status line and the log: one background job at a time.

Every long action of the panel (Apply's steps, Evaluate, Explanation quality, Compare, Estimate, the case report,
describing a model file) is a :class:`~MedXAILogicLib.workflow_base.Task` started by a section and handed to
:meth:`JobControls.run`. A 100 ms ``QTimer`` drains it (progress, log lines) and calls the section back when it has
ended; *Cancel* kills its process tree and removes whatever it had made. Background reads that do not occupy the
panel (the model and method lists) are polled by the same timer (:meth:`JobControls.addPoller`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import qt
import slicer
from slicer.i18n import tr as _


class JobControls:
    """The Apply/Cancel row and what runs behind it (see the module docstring)."""

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.ui = panel.ui
        self.task = None
        self._onDone: Callable[[dict], None] | None = None
        self._pollers: list[Callable[[], bool]] = []
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.onTimer)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.finished

    def run(self, task: Any, what: str, onDone: Callable[[dict], None] | None = None) -> None:
        """Show ``task``'s progress until it ends, then call ``onDone(outputs)`` when it succeeded."""
        self.task, self._onDone = task, onDone
        for note in getattr(task, "notes", []):
            self.log(note)
        self.log(what)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = what
        self.timer.start()
        self.panel.update()

    def addPoller(self, poll: Callable[[], bool]) -> None:
        """Call ``poll()`` on every tick until it returns True (a background read that ended)."""
        self._pollers.append(poll)
        self.timer.start()

    def onCancelButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to cancel."), waitCursor=True):
            if self.running:
                self.cancel()
                self.log(_("Cancelled; nothing was kept."))

    def cancel(self) -> None:
        """Stop the running job (its process tree, its temporary folder, the nodes it made)."""
        if self.task is not None and not self.task.finished:
            self.task.cancel()
        self._end()

    def cleanup(self) -> None:
        """The panel goes away: stop the job and every background read."""
        self.cancel()
        self._pollers = []
        self.timer.stop()

    def onTimer(self) -> None:
        self._pollers = [poll for poll in self._pollers if not self._poll(poll)]
        task = self.task
        if task is None:
            if not self._pollers:
                self.timer.stop()
            return
        try:
            events = task.process_events()
        except Exception as exc:  # noqa: BLE001 - a bug while reading the job: one line to the user, details logged
            logging.exception("MedXAI: the running job could not be read")
            self._end()
            slicer.util.errorDisplay(_("MedXAI failed: {message}").format(message=f"{type(exc).__name__}: {exc}"))
            return
        for event in events:
            if event.kind == "log" and event.text.strip():
                self.log(event.text)
        self.ui.progressBar.value = int(round(100 * task.fraction))
        self.ui.statusLabel.text = task.stage
        if not task.finished:
            return
        onDone = self._onDone
        self._end()
        if task.status == "done":
            if onDone is not None:
                with slicer.util.tryWithErrorDisplay(_("Failed to show the results.")):
                    onDone(task.outputs)
        elif task.status == "failed":
            for line in task.log[-40:]:
                if line.startswith(("Traceback", "  File")):
                    self.log(line)
            self.log(_("Error: {message}").format(message=task.error))
            slicer.util.errorDisplay(_("MedXAI failed: {message}").format(message=task.error))

    def _poll(self, poll: Callable[[], bool]) -> bool:
        try:
            return bool(poll())
        except Exception:  # noqa: BLE001 - a background read must never break the panel
            logging.exception("MedXAI: a background read failed")
            return True

    def _end(self) -> None:
        self.task, self._onDone = None, None
        self.ui.statusLabel.text = ""
        if not self._pollers:
            self.timer.stop()
        self.panel.update()

    def update(self, ready: bool) -> None:
        """Apply is enabled when the inputs are ready and nothing runs; Cancel only while a job runs."""
        running = self.running
        self.ui.applyButton.enabled = ready and not running
        self.ui.cancelButton.enabled = running
        self.ui.applyButton.toolTip = (_("Run the model and explain it") if ready
                                       else _("Select the inputs (and a model file or folder) first"))

    def log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)
