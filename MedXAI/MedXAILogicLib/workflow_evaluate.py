"""Evaluate: segmentation metrics and explanation quality (``evaluate``) in the background, as tables (mixin).

Qt-free. Both jobs write the segments and the heat map onto the reference volume's grid (label maps in a
temporary folder), run ``evaluate`` and put its numbers in a table node: the one the user chose (replaced once the
command succeeded) or a new one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from MedXAILib.errors import InputError
from MedXAILib.volume import Volume

from . import bridge
from .jobs import JobResult
from .results import _default_pairs, metrics_table, quality_numbers
from .workflow_base import Task


class EvaluateJobs:
    """Mixin of :class:`~.workflow.Workflow`: segmentation metrics and explanation quality."""

    def start_evaluate(
        self,
        prediction: Any,
        reference_segmentation: Any,
        reference_volume: Any,
        pairs: Sequence[tuple[str, str]] | None = None,
        table_node: Any = None,
    ) -> Task:
        """Dice, IoU, HD95 and volumes of prediction segments against reference segments (a table node).

        Args:
            pairs: ``(prediction segment, reference segment)`` names or IDs. By default segments with the same name
                are paired; if none match, the union of all prediction segments is compared with the union of all
                reference segments ("all segments"). Pair *n* becomes label *n* in both maps, so each map's chosen
                segments should not overlap (where they do, the later pair wins).
            table_node: write the metrics into this table node (replaced); None: a new one.
        """
        pairs = list(pairs) if pairs else _default_pairs(prediction, reference_segmentation)
        workdir = self._workdir()
        try:
            k, j, i = bridge._shape_kji(reference_volume)
            pred = np.zeros((k, j, i), np.int16)
            ref = np.zeros((k, j, i), np.int16)
            names: dict[int, str] = {}
            for label, (p_seg, r_seg) in enumerate(pairs, start=1):
                for node, segs, out in ((prediction, p_seg, pred), (reference_segmentation, r_seg, ref)):
                    ids = segs if isinstance(segs, (list, tuple)) else [segs]
                    for segment in ids:
                        out[bridge.segment_to_mask(node, segment, reference_volume).array[0] > 0] = label
                names[label] = p_seg if isinstance(p_seg, str) else "all segments"
            grid = bridge.ijk_to_ras_of(reference_volume)
            p_path = self._write_mask(workdir, Volume(pred[None], grid), "prediction")
            r_path = self._write_mask(workdir, Volume(ref[None], grid), "reference")
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        output = workdir / "metrics.json"
        args = ["evaluate", "--prediction", str(p_path), "--reference", str(r_path),
                "--labels", ",".join(str(n) for n in names), "--output", str(output), "--progress", "json"]

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            if not output.exists():
                raise InputError("evaluate did not write its metrics")
            metrics = json.loads(output.read_text())
            table = metrics_table(self.scene, metrics, names, f"{prediction.GetName()} metrics", table_node)
            if table_node is None:
                task.track(table)
            self._place([table], reference_volume)
            return {"table": table, "metrics": metrics}

        return self._task("evaluate", args, workdir, finish, None)

    def start_quality(
        self,
        heatmap_node: Any,
        input_nodes: Sequence[Any],
        model: str | None,
        reference_segmentation: Any,
        reference_segment: str | Sequence[str] | None = None,
        method: str | None = None,
        slow: bool = False,
        table_node: Any = None,
    ) -> Task:
        """How far a heat map can be trusted (``evaluate --heatmap``): a (metric, value) table node.

        Localisation (pointing game, relevance mass and rank, top-k% Dice/IoU) against the reference segment and
        complexity (sparseness) always; with a ``model``, faithfulness (deletion/insertion AUCs and their random
        controls); with ``slow``, also stability and sanity, which re-run the explainer several times.

        Args:
            heatmap_node: a heat map on the inputs' grid (as made by :meth:`start_explain`).
            input_nodes: the explained volumes, one per model channel.
            reference_segment: a segment name or ID (or several); None: all segments of the segmentation.
            method: the method that made the map; default the node's ``MedXAI.Method`` attribute.
            table_node: write the metrics into this table node (replaced); None: a new one.

        The task's outputs hold ``"table"``, ``"metrics"`` (the numbers by key), ``"raw"`` (the CLI's JSON) and
        ``"skipped"`` (metric families the CLI could not run, with why).
        """
        input_nodes = list(input_nodes)
        if heatmap_node is None or not input_nodes or reference_segmentation is None:
            raise InputError("explanation quality needs a heat map, the input volume(s) and a reference segmentation")
        reference = input_nodes[0]
        method = method or heatmap_node.GetAttribute("MedXAI.Method") or None
        workdir = self._workdir()
        try:
            heat = bridge.node_to_volume(heatmap_node)
            grid = Volume(np.zeros((1,) + bridge._shape_kji(reference), np.uint8), bridge.ijk_to_ras_of(reference))
            diff = grid.geometry_difference(heat, atol=1e-3)
            if diff is not None:
                raise InputError(f"the heat map {heatmap_node.GetName()} has {diff} than {reference.GetName()}; "
                                 "explain these inputs again")
            from MedXAILib.io import write_volume

            heat_path = workdir / f"heatmap{self.output_suffix}"
            write_volume(Volume(heat.array[:1].astype(np.float32), grid.ijk_to_ras), heat_path)
            described = heatmap_node.GetAttribute("MedXAI.Explanation")
            if described:  # the explain sidecar: lets stability and sanity re-use the parameters and target
                Path(str(heat_path) + ".json").write_text(described)
            segments = ([reference_segment] if isinstance(reference_segment, str)
                        else list(reference_segment or bridge.segment_ids(reference_segmentation)))
            region = np.zeros(grid.shape, bool)
            for segment in segments:
                region |= bridge.segment_to_mask(reference_segmentation, segment, reference).array[0] > 0
            if not region.any():
                raise InputError(f"the reference {reference_segmentation.GetName()} is empty on the input grid; "
                                 "choose another segment")
            ref_path = self._write_mask(workdir, Volume(region[None].astype(np.uint8), grid.ijk_to_ras), "reference")
            args = ["evaluate", "--heatmap", str(heat_path), "--reference", str(ref_path)]
            if model:
                inputs = self.write_inputs(workdir, input_nodes)
                families = "faithfulness,stability,sanity" if slow else "faithfulness"
                # `evaluate --input` takes every channel after one flag (a repeated flag keeps only the last)
                args += ["--model", model, "--input", *[str(p) for p in inputs], "--quality", families]
                if method:
                    args += ["--method", method]
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        output = workdir / "quality.json"
        args += ["--output", str(output), "--progress", "json"]

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            if not output.exists():
                raise InputError("evaluate did not write its explanation-quality metrics")
            data = json.loads(output.read_text())
            metrics = quality_numbers(data)
            skipped = data.get("quality_skipped") or {}
            for family, why in skipped.items():
                task.log.append(f"{family} skipped: {why}")
            table = bridge.add_table_node(self.scene, f"{heatmap_node.GetName()} quality", ["metric", "value"],
                                          [[k, v] for k, v in metrics.items()], table_node)
            if table_node is None:
                task.track(table)
            table.SetAttribute("MedXAI.Role", "explanation quality")
            self._place([table], reference)
            return {"table": table, "metrics": metrics, "raw": data, "skipped": skipped}

        return self._task("evaluate", args, workdir, finish, None)
