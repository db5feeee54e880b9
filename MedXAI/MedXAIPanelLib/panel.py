"""The panel: the sections of ``MedXAI.ui`` composed, sharing one parameter node and one job row."""

from __future__ import annotations

from typing import Any, Callable

from .evaluate import EvaluateSection
from .explain import ExplainSection
from .inputs import InputsSection
from .jobs import JobControls
from .model import ModelSection
from .report import ReportSection
from .results import ResultsSection
from .run import RunSection


class Panel:
    """Every section of the panel (attributes named after them) and the job controls.

    Args:
        ui: the ``.ui``'s widgets by name (``slicer.util.childWidgetVariables``).
        logic: the module logic (``MedXAI.MedXAILogic``).
        parameterNode: returns the current parameter node (None while the scene closes).
    """

    def __init__(self, ui: Any, logic: Any, parameterNode: Callable[[], Any]) -> None:
        self.ui, self.logic, self._parameterNode = ui, logic, parameterNode
        self.jobs = JobControls(self)
        self.inputs = InputsSection(self)
        self.model = ModelSection(self)
        self.explain = ExplainSection(self)
        self.run = RunSection(self)
        self.results = ResultsSection(self)
        self.evaluate = EvaluateSection(self)
        self.report = ReportSection(self)
        self.sections = [self.inputs, self.model, self.explain, self.run, self.results, self.evaluate, self.report]
        self._updating = False
        for section in self.sections:
            section.setup()

    @property
    def parameterNode(self) -> Any:
        return self._parameterNode()

    def start(self) -> None:
        """The model and method lists: the cached ones at once, read again in the background the first time."""
        self.model.startCatalog(force=False)

    def restore(self) -> None:
        """A parameter node was set (a new scene, a loaded one): show its code-set choices in every section."""
        for section in self.sections:
            section.restore()

    def update(self) -> None:
        """Refresh what every section enables and shows (the parameter node changed, a job started or ended)."""
        if self._updating:
            return
        self._updating = True
        try:
            for section in self.sections:
                section.update()
        finally:
            self._updating = False

    def cleanup(self) -> None:
        self.jobs.cleanup()

    def log(self, text: str) -> None:
        self.jobs.log(text)
