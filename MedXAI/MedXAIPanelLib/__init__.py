"""The MedXAI panel, one small widget class per section of ``Resources/UI/MedXAI.ui`` (Qt; runs inside Slicer).

- :class:`~.panel.Panel` composes them and is what ``MedXAI.MedXAIWidget`` holds;
- :class:`~.jobs.JobControls` — Apply / Cancel, progress, status and log: one background job at a time, drained by
  a ``QTimer`` (the panel never waits for a child process);
- :class:`~.inputs.InputsSection` — one row per model channel, RGB inputs, sample data, resampling;
- :class:`~.model.ModelSection` — the model list (read in the background, cached), a model file or folder, the
  model card and the out-of-domain warning, nnU-Net / TotalSegmentator options;
- :class:`~.explain.ExplainSection` — method, its parameters (spin boxes sized to each default), target, cost;
- :class:`~.run.RunSection` — what *Apply* runs (predict, explain) and where the outputs go;
- :class:`~.results.ResultsSection` — heat map display, thresholds, 3D, counterfactual series, shap plots, tables;
- :class:`~.evaluate.EvaluateSection` — Dice / IoU / HD95, explanation quality, methods compared;
- :class:`~.report.ReportSection` — the case report.

The logic behind each section is in ``MedXAILogicLib.logic`` (Qt-free, tested against the ``slicer-core`` wheel).
"""

from .panel import Panel  # noqa: F401
