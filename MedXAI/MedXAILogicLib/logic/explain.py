"""The *Explain* section's logic (and *Apply*'s predict step): segment, classify, explain, estimate (mixin).

Each method starts a background job and returns its task, or with ``waitForCompletion`` waits (Slicer keeps
painting) and returns the task's outputs. ``extraArgs`` carries the model options (:meth:`ModelLogic.modelOptions`).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence


class ExplainLogic:
    """Mixin of the module logic."""

    def segment(self, inputNodes: Sequence[Any], model: str = "demo-brain-tumour", device: str = "cpu",
                waitForCompletion: bool = False, extraArgs: Sequence[str] = (), segmentationNode: Any = None):
        """Segment; returns the running task, or with ``waitForCompletion`` its outputs (``"segmentation"``,
        ``"card"``, ``"domain_warning"``). Segments are named after the model's classes; ``segmentationNode``:
        write into it (its segments are replaced) instead of a new node."""
        entry = self.knownModel(model)
        names = entry.label_names() if entry is not None else None
        task = self.workflow().start_segment(list(inputNodes), model, device=device, class_names=names,
                                             extra_args=list(extraArgs), segmentation_node=segmentationNode)
        return self._finish(task, waitForCompletion)

    def classify(self, inputNodes: Any, model: str = "demo-chest-xray", device: str = "cpu",
                 waitForCompletion: bool = False, extraArgs: Sequence[str] = (), tableNode: Any = None):
        """Classify; outputs hold ``"table"`` and ``"scores"``. ``inputNodes``: one node or one per channel."""
        nodes = list(inputNodes) if isinstance(inputNodes, (list, tuple)) else [inputNodes]
        task = self.workflow().start_classify(nodes, model, device=device, extra_args=list(extraArgs),
                                              table_node=tableNode)
        return self._finish(task, waitForCompletion)

    def _explainTarget(self, inputNodes: Sequence[Any], regionSegmentation: Any, regionSegment: Optional[str],  # noqa: UP045 - Slicer 5.8 runs Python 3.9
                       markupsNode: Any) -> dict:
        from MedXAILogicLib import bridge

        args: dict[str, Any] = {}
        if regionSegmentation is not None and regionSegment:
            args["region"] = (regionSegmentation, regionSegment)
        if markupsNode is not None:
            args["voxel"] = bridge.markup_point_to_ijk(markupsNode, inputNodes[0])
        return args

    def explain(self, inputNodes: Sequence[Any], model: str = "demo-brain-tumour", method: str = "gradcam",
                target: Optional[str] = None, regionSegmentation: Any = None, regionSegment: Optional[str] = None,  # noqa: UP045
                markupsNode: Any = None, methodArgs: Sequence[str] = (), device: str = "cpu", opacity: float = 0.5,
                waitForCompletion: bool = False, heatmapNode: Any = None, shapPlot: bool = False):
        """Explain; outputs hold ``"heatmap"``, ``"overlay"`` and, when the CLI reports them, ``"importance"``;
        counterfactual methods add ``"counterfactual"`` and ``"series"``, ``shapPlot`` adds ``"shap_plot_png"``.

        ``methodArgs``: ``--param key=value`` flags (see :meth:`methodArguments`) and model options.
        """
        inputNodes = list(inputNodes)
        task = self.workflow().start_explain(
            inputNodes, model, method=method, target=target or None, method_args=list(methodArgs), device=device,
            opacity=opacity, heatmap_node=heatmapNode, shap_plot=shapPlot,
            **self._explainTarget(inputNodes, regionSegmentation, regionSegment, markupsNode))
        return self._finish(task, waitForCompletion)

    def startEstimate(self, inputNodes: Sequence[Any], model: str = "demo-brain-tumour", method: str = "gradcam",
                      target: Optional[str] = None, regionSegmentation: Any = None,  # noqa: UP045
                      regionSegment: Optional[str] = None, markupsNode: Any = None,  # noqa: UP045
                      methodArgs: Sequence[str] = (), device: str = "cpu"):
        """What ``explain`` would cost (``explain --dry-run``), as a background task (outputs ``"text"``)."""
        inputNodes = list(inputNodes)
        return self.workflow().start_estimate(
            inputNodes, model, method=method, target=target or None, method_args=list(methodArgs), device=device,
            **self._explainTarget(inputNodes, regionSegmentation, regionSegment, markupsNode))

    def estimateCost(self, *args: Any, **kwargs: Any) -> str:
        """:meth:`startEstimate`, waited for: one line for the console."""
        return self.startEstimate(*args, **kwargs).wait(idle=self._idle)["text"]

    @staticmethod
    def describeCost(cost: dict) -> str:
        from MedXAILogicLib.results import format_cost

        return format_cost(cost)
