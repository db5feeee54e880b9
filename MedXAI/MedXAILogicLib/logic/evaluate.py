"""The *Evaluate* section's logic: Dice / IoU / HD95, explanation quality, methods compared (mixin)."""

from __future__ import annotations

from typing import Any, Optional, Sequence


class EvaluateLogic:
    """Mixin of the module logic; every method is a background job (``waitForCompletion`` waits for it)."""

    def evaluate(self, predictionSegmentation: Any, referenceSegmentation: Any, referenceVolume: Any,
                 predictionSegment: Optional[str] = None, referenceSegment: Optional[str] = None,  # noqa: UP045 - Slicer 5.8 runs Python 3.9
                 waitForCompletion: bool = False, tableNode: Any = None):
        """Dice, IoU, HD95 and volumes in a table node (``"table"``); one chosen pair, or segments by name."""
        pairs = [(predictionSegment, referenceSegment)] if predictionSegment and referenceSegment else None
        task = self.workflow().start_evaluate(predictionSegmentation, referenceSegmentation, referenceVolume, pairs,
                                              table_node=tableNode)
        return self._finish(task, waitForCompletion)

    def evaluateExplanation(self, heatmapNode: Any, inputNodes: Sequence[Any],
                            model: Optional[str] = "demo-brain-tumour",  # noqa: UP045
                            referenceSegmentation: Any = None, referenceSegment: Optional[str] = None,  # noqa: UP045
                            method: Optional[str] = None, slowMetrics: bool = False,  # noqa: UP045
                            waitForCompletion: bool = False, tableNode: Any = None):
        """How far a heat map can be trusted, in a table node (``"table"``; numbers in ``"metrics"``).

        Localisation against the reference segment (all segments when none is chosen) and sparseness; with a
        ``model``, faithfulness (deletion / insertion AUCs with random controls); with ``slowMetrics``, also
        stability and sanity (they re-run the explainer several times: minutes). ``method`` defaults to the one
        that made the heat map.
        """
        task = self.workflow().start_quality(heatmapNode, list(inputNodes), model or None, referenceSegmentation,
                                             referenceSegment, method=method, slow=slowMetrics, table_node=tableNode)
        return self._finish(task, waitForCompletion)

    def compare(self, inputNodes: Sequence[Any], model: str = "demo-brain-tumour",
                methods: str = "gradcam,saliency,lrp", target: Optional[str] = None,  # noqa: UP045
                regionSegmentation: Any = None, regionSegment: Optional[str] = None, markupsNode: Any = None,  # noqa: UP045
                device: str = "cpu", opacity: float = 0.5, waitForCompletion: bool = False,
                extraArgs: Sequence[str] = ()):
        """Explain one target with every method in ``methods`` (comma-separated) and measure their agreement.

        Outputs: ``"heatmap"`` (the consensus map), ``"agreement_map"``, ``"table"`` (per method: agreement with the
        consensus, seconds, Spearman rho to every other method) and ``"report"`` (``agreement.json``).
        ``extraArgs``: model options (:meth:`ModelLogic.modelOptions`).
        """
        from MedXAILogicLib.compare_job import start_compare

        inputNodes = list(inputNodes)
        task = start_compare(self.workflow(), inputNodes, model, methods, target=target or None, device=device,
                             opacity=opacity, extra_args=list(extraArgs),
                             **self._explainTarget(inputNodes, regionSegmentation, regionSegment, markupsNode))
        return self._finish(task, waitForCompletion)
