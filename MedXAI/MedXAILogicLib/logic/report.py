"""The *Report* section's logic: the one-page case report (HTML + PDF) of the current inputs (mixin)."""

from __future__ import annotations

from typing import Any, Optional, Sequence


class ReportLogic:
    """Mixin of the module logic."""

    def writeCaseReport(self, inputNodes: Sequence[Any], outputPath: str,
                        model: Optional[str] = "demo-brain-tumour",  # noqa: UP045 - Slicer 5.8 runs Python 3.9
                        method: Optional[str] = "gradcam", referenceSegmentation: Any = None,  # noqa: UP045
                        slowMetrics: bool = True, device: str = "cpu", waitForCompletion: bool = False,
                        target: Optional[str] = None, extraArgs: Sequence[str] = ()):  # noqa: UP045
        """The one-page case report (``outputPath`` .html and a .pdf beside it; outputs ``"html"``, ``"pdf"``).

        The CLI's ``report`` command runs the model and ``method`` again; ``slowMetrics`` adds the sanity check and
        stability (minutes); a reference segmentation adds Dice / HD95 and localisation. No node is created.
        ``extraArgs``: model options (:meth:`ModelLogic.modelOptions`).
        """
        from MedXAILogicLib.report import start_report

        task = start_report(self.workflow(), list(inputNodes), model or "demo-brain-tumour", outputPath,
                            method=method or "gradcam", reference=referenceSegmentation, target=target,
                            quality="sanity,stability" if slowMetrics else "none", device=device,
                            extra_args=list(extraArgs))
        return self._finish(task, waitForCompletion)
