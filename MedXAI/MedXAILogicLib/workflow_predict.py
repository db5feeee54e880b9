"""Predict: ``segment`` and ``classify`` in the background, their outputs as nodes (mixin of the workflow).

A job writes into the output node the user chose (the panel's *Outputs* selectors) or makes a new one; a chosen
node is only changed once the command has succeeded, so a failed or cancelled job leaves it as it was. Every job's
outputs also hold the model card the command ran with (``"card"``) and its out-of-domain warning
(``"domain_warning"``, None when the input looked like the training data). Qt-free.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from . import bridge, terminology
from .jobs import JobResult
from .results import _numbers
from .workflow_base import DEMO_CLASS_NAMES, Task


def class_names_from_sidecar(sidecar: Mapping[str, Any]) -> dict[int, str]:
    """``{label value: class name}`` as the ``segment`` command reports them in its sidecar.

    Reads ``"classes": {name: {"label": value, …}}`` (the core's prediction summary), and the older forms
    ``"class_names"`` / ``"labels"`` (a list in label order, or ``{value: name}``).
    """
    names: dict[int, str] = {}
    for key in ("class_names", "labels"):
        value = sidecar.get(key)
        if isinstance(value, dict):
            names.update({int(k): str(v) for k, v in value.items() if str(k).isdigit()})
        elif isinstance(value, list):
            names.update({i: str(v) for i, v in enumerate(value) if i > 0})
    classes = sidecar.get("classes")
    if isinstance(classes, dict):
        for name, info in classes.items():
            label = info.get("label") if isinstance(info, dict) else None
            if isinstance(label, int) and label != 0:
                names[label] = str(name)
    return names


def model_report(sidecar: Mapping[str, Any]) -> dict[str, Any]:
    """The model card and the out-of-domain warning a command wrote in its sidecar (for the panel's *Model* box)."""
    card = sidecar.get("card") if isinstance(sidecar.get("card"), dict) else {}
    warning = sidecar.get("domain_warning")
    return {"card": card, "domain_warning": str(warning) if warning else None}


class PredictJobs:
    """Mixin of :class:`~.workflow.Workflow`: segment and classify."""

    def start_segment(
        self,
        input_nodes: Sequence[Any],
        model: str,
        device: str = "cpu",
        class_names: Mapping[int, str] | None = None,
        extra_args: Sequence[str] = (),
        segmentation_node: Any = None,
    ) -> Task:
        """Segment the inputs; the task's outputs hold ``"segmentation"`` (named, coloured segments).

        Args:
            class_names: label value → name from the model's description (:meth:`catalog.ModelEntry.label_names`);
                the names the command reports in its sidecar win (they come from the model that ran).
            extra_args: more ``segment`` flags (model options: ``--folds``, ``--checkpoint``, ``--target`` …).
            segmentation_node: write the segments into this node (its old segments are replaced); None: a new one.
        """
        bridge.check_output_node(segmentation_node, input_nodes)
        notes: list[str] = []
        output_name = f"prediction{self.output_suffix}"

        def build(workdir):
            args = ["segment", "--model", model]
            for path in self.write_inputs(workdir, input_nodes, notes):
                args += ["--input", str(path)]
            return args + ["--output", str(workdir / output_name), "--progress", "json", *extra_args]

        workdir, args = self._prepare(build)
        output = workdir / output_name
        reference = input_nodes[0]

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            labels = self._read_on_grid(output, reference, "prediction", label_map=True)
            sidecar = self._sidecar(output)
            names = dict(DEMO_CLASS_NAMES.get(model, {}))
            names.update({int(k): str(v) for k, v in (class_names or {}).items()})
            names.update(class_names_from_sidecar(sidecar))
            present = {int(v) for v in np.unique(labels.array) if v != 0}
            codes = terminology.entries_for_labels(
                {v: names.get(v, f"label {v}") for v in present}, sidecar.get("terminology"))
            if segmentation_node is not None:
                segmentation_node.GetSegmentation().RemoveAllSegments()
            seg = bridge.labelmap_to_segmentation(self.scene, labels, reference, names,
                                                  name=f"{reference.GetName()} prediction", terminology=codes,
                                                  segmentation_node=segmentation_node, follow_reference=True)
            if segmentation_node is None:
                task.track(seg)
            seg.SetAttribute("MedXAI.Model", model)
            seg.SetAttribute("MedXAI.Role", "prediction")
            self._place([seg], reference)
            return {"segmentation": seg, **model_report(sidecar)}

        return self._task("segment", args, workdir, finish, device, notes=notes)

    def start_classify(self, input_nodes: Any, model: str, device: str = "cpu", extra_args: Sequence[str] = (),
                       table_node: Any = None) -> Task:
        """Classify an image (one node, or one per model channel); outputs: ``"table"`` (class, probability),
        ``"scores"``, ``"card"`` and ``"domain_warning"``.

        Args:
            table_node: write the probabilities into this table node (replaced); None: a new one.
        """
        nodes = list(input_nodes) if isinstance(input_nodes, (list, tuple)) else [input_nodes]
        input_node = nodes[0]
        notes: list[str] = []

        def build(workdir):
            args = ["classify", "--model", model]
            for path in self.write_inputs(workdir, nodes, notes):
                args += ["--input", str(path)]
            return args + ["--output", str(workdir / "classification.json"), "--progress", "json", *extra_args]

        workdir, args = self._prepare(build)
        output = workdir / "classification.json"

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            data = json.loads(output.read_text()) if output.exists() else {}
            scores = _numbers(data.get("probabilities", data.get("scores", data)))
            table = bridge.add_table_node(self.scene, f"{input_node.GetName()} classification",
                                          ["class", "probability"], [[k, v] for k, v in scores.items()], table_node)
            if table_node is None:
                task.track(table)
            self._place([table], input_node)
            return {"table": table, "scores": scores, "raw": data, **model_report(data)}

        return self._task("classify", args, workdir, finish, device, notes=notes)
