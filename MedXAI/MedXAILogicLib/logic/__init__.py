"""The module logic, split the way the panel is: one mixin per section, composed by :class:`MedXAILogicBase`.

``MedXAI.MedXAILogic`` is ``ScriptedLoadableModuleLogic`` + :class:`MedXAILogicBase`; everything it does is here,
Qt-free, and runs against the ``slicer-core`` wheel (``self.scene`` is ``slicer.mrmlScene`` in the application, any
scene in a test). Nothing third-party is imported at file scope: Slicer imports the module at startup.

- :class:`~.inputs.InputsLogic` — inputs: checked against the model, grids, RGB to grey, the sample cases;
- :class:`~.model.ModelLogic` — models and methods (read once in the background, cached), model options;
- :class:`~.explain.ExplainLogic` — segment, classify, explain, cost estimate;
- :class:`~.results.ResultsLogic` — the heat map in the views and in 3D, thresholds, the counterfactual series;
- :class:`~.evaluate.EvaluateLogic` — Dice / IoU / HD95, explanation quality, methods compared;
- :class:`~.report.ReportLogic` — the case report;
- :class:`~.dependencies.DependenciesLogic` — torch, the required and the optional packages.
"""

from __future__ import annotations

from typing import Any

from .dependencies import DependenciesLogic
from .evaluate import EvaluateLogic
from .explain import ExplainLogic
from .inputs import InputsLogic
from .model import ModelLogic
from .report import ReportLogic
from .results import ResultsLogic


class MedXAILogicBase(InputsLogic, ModelLogic, ExplainLogic, ResultsLogic, EvaluateLogic, ReportLogic,
                      DependenciesLogic):
    """Everything the panel does, callable from the Python console (see ``MedXAI.MedXAILogic``).

    Args:
        runner: the job runner (default: a local subprocess per job); inject another one to test.
        commandPrefix: how to call the CLI (default: Slicer's Python with ``-m MedXAILib``).
        scene: the MRML scene (default: ``slicer.mrmlScene``, looked up at each use).
        requirementsPath: ``Resources/requirements.txt`` of the module.
    """

    def __init__(self, runner: Any = None, commandPrefix: Any = None, scene: Any = None,
                 requirementsPath: str = "") -> None:
        self.runner = runner
        self.commandPrefix = commandPrefix
        self._scene = scene
        self._workflow = None
        self.requirementsPath = requirementsPath

    @property
    def scene(self) -> Any:
        if self._scene is not None:
            return self._scene
        import slicer

        return slicer.mrmlScene

    def workflow(self) -> Any:
        """The Qt-free workflow of the current scene (made again when the scene object changes)."""
        from MedXAILogicLib.workflow import Workflow

        if self._workflow is None or self._workflow.scene is not self.scene:
            self._workflow = Workflow(self.scene, runner=self.runner, command_prefix=self.commandPrefix)
        return self._workflow

    @staticmethod
    def _idle() -> None:
        import slicer

        app = getattr(slicer, "app", None)
        if app is not None:
            app.processEvents()

    def _finish(self, task: Any, waitForCompletion: bool) -> Any:
        return task.wait(idle=self._idle) if waitForCompletion else task
