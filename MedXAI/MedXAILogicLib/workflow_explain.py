"""Explain: ``explain`` (and its ``--dry-run`` cost estimate) in the background, its outputs as nodes (mixin).

- Every method: the heat map (a float volume on the input grid, in the node the user chose or a new one), the
  relevance levels (a label map of the top 1/5/10/25 %, made but *not* drawn over the heat map: the slice views show
  the heat map over the anatomy, the levels are there to show, threshold or export), and the per-sequence importance.
- Counterfactual methods (``counterfactual``, ``sedc``; see :func:`is_counterfactual`): the command also writes the
  counterfactual input and, for ``counterfactual``, its progressive series; they become the counterfactual volume
  (shown as the background), the difference map (the heat map, diverging colours, shown over it) and the series as a
  sequence with a browser (:mod:`.counterfactual`).
- Methods with per-supervoxel values (``kernelshap``, ``partitionshap``, ``lime``): with ``shap_plot`` the
  command also draws shap's waterfall and bar plots; the PNG comes back as bytes (``"shap_plot_png"``) before the
  work folder goes.

Qt-free.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import bridge
from .counterfactual import add_counterfactual_nodes, read_counterfactual_outputs
from .jobs import JobResult
from .results import EXPLANATION_KEYS, _importance, format_cost
from .workflow_base import Task
from .workflow_predict import model_report

#: Methods whose result is a counterfactual input (the core's ``COUNTERFACTUAL_METHODS``).
COUNTERFACTUAL_METHODS = ("counterfactual", "sedc")
#: Methods for which ``explain --shap-plot`` draws shap's plots.
SHAP_PLOT_METHODS = ("kernelshap", "partitionshap", "lime")


def is_counterfactual(method: str, record: Mapping[str, Any] | None = None) -> bool:
    """Does ``method`` explain with a counterfactual input (so ``--counterfactual`` and ``--series`` apply)?"""
    return method in COUNTERFACTUAL_METHODS or bool(record and record.get("module") in ("counterfactual", "sedc"))


class ExplainJobs:
    """Mixin of :class:`~.workflow.Workflow`: explain and estimate."""

    def _explain_args(self, workdir: Path, input_nodes: Sequence[Any], model: str, method: str, target: str | None,
                      region: tuple[Any, str] | None, voxel: tuple[int, int, int] | None,
                      method_args: str | Sequence[str], notes: list[str] | None = None) -> list[str]:
        args = ["explain", "--model", model]
        for path in self.write_inputs(workdir, input_nodes, notes):
            args += ["--input", str(path)]
        args += ["--method", method]
        args += self.target_arguments(workdir, input_nodes, target, region, voxel)
        extra = shlex.split(method_args) if isinstance(method_args, str) else list(method_args)
        return args + ["--output", str(workdir / f"heatmap{self.output_suffix}"), *extra]

    def start_explain(
        self,
        input_nodes: Sequence[Any],
        model: str,
        method: str = "gradcam",
        target: str | None = None,
        region: tuple[Any, str] | None = None,
        voxel: tuple[int, int, int] | None = None,
        method_args: str | Sequence[str] = "",
        device: str = "cpu",
        opacity: float = 0.5,
        show: bool = True,
        heatmap_node: Any = None,
        shap_plot: bool = False,
    ) -> Task:
        """Explain the model's output.

        Outputs: ``"heatmap"``, ``"overlay"`` (the relevance levels), maybe ``"importance"`` and ``"cost"``,
        ``"card"`` and ``"domain_warning"``; for counterfactual methods ``"counterfactual"`` (nodes per channel),
        ``"series"`` (sequence, browser, proxy; None for ``sedc``); with ``shap_plot``, ``"shap_plot_png"``.

        Args:
            region: ``(segmentation node, segment name or ID)`` to explain the summed logits inside it.
            voxel: ``(i, j, k)`` of a voxel to explain (see :func:`bridge.markup_point_to_ijk`).
            method_args: more ``explain`` flags (method parameters, model options; a string is split like a shell).
            heatmap_node: write the heat map into this scalar volume node (replaced); None: a new node.
            shap_plot: also draw shap's plots (only for :data:`SHAP_PLOT_METHODS`).
        """
        bridge.check_output_node(heatmap_node, input_nodes)
        notes: list[str] = []
        counterfactual = is_counterfactual(method)
        shap_plot = bool(shap_plot and method in SHAP_PLOT_METHODS)

        def build(workdir):
            args = self._explain_args(workdir, input_nodes, model, method, target, region, voxel, method_args, notes)
            if counterfactual:
                args += ["--counterfactual", str(workdir / f"counterfactual{self.input_suffix}")]
                if method == "counterfactual":
                    args += ["--series", str(workdir / "series")]
            if shap_plot:
                args += ["--shap-plot", str(workdir / "shap.png")]
            return args + ["--progress", "json"]

        workdir, args = self._prepare(build)
        output = workdir / f"heatmap{self.output_suffix}"
        reference = input_nodes[0]

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            heat = self._read_on_grid(output, reference, "heat map")
            sidecar = self._sidecar(output)
            base = f"{reference.GetName()} {method}"
            outputs: dict[str, Any] = {**model_report(sidecar)}
            background = reference
            if counterfactual:  # read everything before a node is made or changed
                cf, difference, series = read_counterfactual_outputs(output, reference)
                made = add_counterfactual_nodes(self.scene, reference, cf, difference, series, name=base,
                                                difference_node=heatmap_node)
                for node in made["counterfactual"]:
                    task.track(node)
                if heatmap_node is None:
                    task.track(made["difference"])
                for key in ("sequence", "browser", "proxy"):
                    if made["series"] is not None:
                        task.track(made["series"][key])
                heat_node = made["difference"]
                outputs.update(counterfactual=made["counterfactual"], series=made["series"])
                background = made["counterfactual"][-1]
            else:
                heat_node = bridge.add_heatmap_node(self.scene, heat, reference, name=f"{base} heat map",
                                                    node=heatmap_node)
                if heatmap_node is None:
                    task.track(heat_node)
            heat_node.SetAttribute("MedXAI.Method", method)
            heat_node.SetAttribute("MedXAI.Reference", reference.GetID())
            described = {k: sidecar[k] for k in EXPLANATION_KEYS if k in sidecar}
            if described:  # what `evaluate` needs to re-run this explanation (method, parameters, target)
                heat_node.SetAttribute("MedXAI.Explanation", json.dumps(described))
            overlay = task.track(bridge.add_relevance_overlay(self.scene, heat, reference,
                                                              name=f"{base} relevance levels"))
            outputs.update(heatmap=heat_node, overlay=overlay)
            importance = _importance(sidecar, [n.GetName() for n in input_nodes])
            if importance:
                columns = list(importance)
                sequences = list(dict.fromkeys(k for values in importance.values() for k in values))
                table = task.track(bridge.add_table_node(
                    self.scene, f"{base} per-sequence importance", ["sequence", *columns],
                    [[name, *[importance[c].get(name) for c in columns]] for name in sequences]))
                outputs["importance"] = table
                outputs["importance_values"] = importance
            if "cost" in sidecar:
                outputs["cost"] = sidecar["cost"]
            plot = workdir / "shap.png"
            if shap_plot and plot.is_file():
                outputs["shap_plot_png"] = plot.read_bytes()
            self._place([heat_node, overlay, outputs.get("importance"), *outputs.get("counterfactual", [])],
                        reference)
            if show:
                bridge.show_in_slice_views(self.scene, background=background, foreground=heat_node,
                                           foreground_opacity=opacity)
            return outputs

        return self._task("explain", args, workdir, finish, device, notes=notes)

    def start_estimate(
        self,
        input_nodes: Sequence[Any],
        model: str,
        method: str = "gradcam",
        target: str | None = None,
        region: tuple[Any, str] | None = None,
        voxel: tuple[int, int, int] | None = None,
        method_args: str | Sequence[str] = "",
        device: str = "cpu",
    ) -> Task:
        """``explain --dry-run``: outputs hold ``"cost"`` (a dict, possibly empty) and ``"text"`` (for display)."""
        workdir, args = self._prepare(lambda workdir: self._explain_args(
            workdir, input_nodes, model, method, target, region, voxel, method_args) + ["--dry-run", "--progress",
                                                                                         "json"])
        output = workdir / f"heatmap{self.output_suffix}"

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            cost = parse_cost(result.stdout)
            sidecar = self._sidecar(output)
            if isinstance(sidecar.get("cost"), dict):
                cost.update(sidecar["cost"])
            text = [line.strip() for line in result.stdout if line.strip() and not line.strip().startswith("{")]
            return {"cost": cost, "text": format_cost(cost) if cost else "\n".join(text)}

        return self._task("estimate", args, workdir, finish, device, cpu_fallback=False)


def parse_cost(stdout: Sequence[str]) -> dict[str, Any]:
    """The cost estimate ``explain --dry-run`` printed: one JSON object (on one line or indented over several)."""
    try:
        whole = json.loads("\n".join(stdout))
    except ValueError:
        whole = None
    documents = [whole] if isinstance(whole, dict) else []
    if not documents:
        for line in stdout:
            stripped = line.strip()
            if stripped.startswith("{"):
                try:
                    data = json.loads(stripped)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    documents.append(data)
    cost: dict[str, Any] = {}
    for data in documents:
        inner = data.get("cost", data)
        cost.update(inner if isinstance(inner, dict) else data)
    return cost
