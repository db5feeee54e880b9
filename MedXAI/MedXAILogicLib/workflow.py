"""What the Slicer logic does, without Qt: inputs to files, the CLI in the background, outputs to nodes.

A :class:`Workflow` is bound to one MRML scene. Each ``start_*`` method writes the input nodes into a fresh
temporary folder (through the bridge and :mod:`MedXAILib.io`), starts ``python -m MedXAILib <command> …
--progress json`` with a :class:`~.jobs.JobRunner`, and returns a :class:`Task` at once. The caller drains the task
from its own loop (:meth:`Task.process_events`, driven by a ``QTimer`` in the panel) or blocks with
:meth:`Task.wait`. When the command succeeds the task turns its outputs into nodes on the calling thread; whatever
the ending, the temporary folder is removed. Cancelling kills the process tree and removes any node the task made.

Devices: ``cpu`` hides the GPUs from the child (``CUDA_VISIBLE_DEVICES=""``); ``cuda`` asks for one through
``MEDXAI_DEVICE``. When a GPU job fails because memory ran out, it is run again on the CPU once (logged).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import slicer

from MedXAILib.errors import CancelledError, InputError, MedXAIError
from MedXAILib.volume import Volume

from . import bridge, catalog, terminology
from .jobs import JobEvent, JobResult, JobRunner, SubprocessJobRunner, is_out_of_memory, python_command
from .results import (  # noqa: F401 - re-exported: the panel and tests use them from here
    EXPLANATION_KEYS,
    METRIC_COLUMNS,
    _default_pairs,
    _importance,
    _numbers,
    format_cost,
    metrics_table,
    quality_numbers,
)

#: Class names of the built-in demo models, used when the CLI does not report them.
DEMO_CLASS_NAMES: dict[str, dict[int, str]] = {
    "demo-brain-tumour": {1: "necrotic core", 2: "oedema", 3: "enhancing rim"},
}
#: Channel names the built-in demo models expect, in order.
DEMO_CHANNELS: dict[str, list[str]] = {
    "demo-brain-tumour": ["t1", "t1ce", "t2", "flair"],
    "demo-chest-xray": ["xray"],
}
# What a node name says about its MRI sequence, checked in this order (case-insensitive).
_SEQUENCE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("flair", r"flair"),
    ("t1ce", r"t1[-_ ]?(ce|c|gd|post|contrast|\+c)|t1.*(post|contrast|gad)"),
    ("t1", r"t1(?!\d)"),
    ("t2", r"t2(?!\d)"),
)


class JobFailedError(MedXAIError):
    """A background command failed; the message is the CLI's one-line error."""


def sequence_of(name: str) -> str | None:
    """The MRI sequence (``t1``, ``t1ce``, ``t2``, ``flair``) a node name suggests, or None."""
    lowered = name.lower()
    for sequence, pattern in _SEQUENCE_PATTERNS:
        if re.search(pattern, lowered):
            return sequence
    return None


def match_channels(channel_names: Sequence[str], node_names: Sequence[str]) -> list[int | None]:
    """For each channel (e.g. ``t1, t1ce, t2, flair``) the index of the node whose name fits it (or None).

    Names are read as sequences first (``T1 post-contrast`` is t1ce, ``T2-FLAIR`` is flair); channels outside that
    vocabulary match a node whose name contains them. A node is used once, the first fitting node wins.
    """
    chosen: list[int | None] = [None] * len(channel_names)
    used: set[int] = set()
    sequences = [sequence_of(n) for n in node_names]
    for c, channel in enumerate(channel_names):
        wanted = channel.lower()
        for i, name in enumerate(node_names):
            fits = sequences[i] == wanted if sequences[i] else wanted in name.lower()
            if i not in used and fits:
                chosen[c] = i
                used.add(i)
                break
    return chosen


def medxailib_root() -> str:
    """The folder that holds the ``MedXAILib`` package (put on the child's ``PYTHONPATH``)."""
    spec = importlib.util.find_spec("MedXAILib")
    if spec is None or not spec.origin:
        raise InputError("the MedXAILib package is not installed with this module; reinstall the MedXAI extension")
    return str(Path(spec.origin).resolve().parent.parent)


def child_environment(device: str = "cpu", base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI child: MedXAILib importable, unbuffered output, the device chosen."""
    env = dict(os.environ if base is None else base)
    root = medxailib_root()
    paths = [root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"  # the parent reads UTF-8; Windows consoles default to a code page
    env["MEDXAI_DEVICE"] = device
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "volume"


@dataclass
class Task:
    """One background command and how its outputs become nodes.

    Attributes:
        command: the CLI command (``segment``, ``explain``, ``evaluate``, …).
        status: ``running``, ``done``, ``failed`` or ``cancelled``.
        fraction, stage: the latest progress.
        log: everything the command printed (stdout and stderr lines) and what the task did.
        outputs: what :meth:`wait` returns: nodes by role (``"heatmap"``, ``"segmentation"``, …) and other results.
        error: the one-line message when it failed.
    """

    command: str
    args: list[str]
    workdir: Path
    start_job: Callable[[list[str], str], Any]
    finish: Callable[[Task, JobResult], dict[str, Any]]
    device: str = "cpu"
    cpu_fallback: bool = True
    keep_files: bool = False
    status: str = "running"
    fraction: float = 0.0
    stage: str = "starting"
    log: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_nodes: list[Any] = field(default_factory=list)
    result: JobResult | None = None
    listeners: list[Callable[[Task, JobEvent], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.job = self.start_job(self.args, self.device)

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def process_events(self) -> list[JobEvent]:
        """Drain the job's events, update progress and log; finish the task when the job has ended."""
        if self.finished:
            return []
        events = self.job.events()
        for event in events:
            if event.kind == "progress":
                self.fraction, self.stage = event.fraction, event.stage
            elif event.kind == "log":
                self.log.append(event.text)
            for listener in self.listeners:
                listener(self, event)
        if not self.job.is_running() and not self.finished:
            self._finalize(self.job.wait())
        return events

    def _finalize(self, result: JobResult | None) -> None:
        self.result = result
        # drain anything still queued
        for event in self.job.events():
            if event.kind == "log":
                self.log.append(event.text)
        try:
            if result is None or result.cancelled:
                self.status = "cancelled"
                self._remove_created()
                return
            if not result.ok:
                if self.cpu_fallback and self.device != "cpu" and is_out_of_memory(result.error):
                    self.log.append("GPU out of memory; running again on the CPU")
                    self.device = "cpu"
                    self.fraction, self.stage = 0.0, "retrying on the CPU"
                    self.job = self.start_job(self.args, "cpu")
                    return
                self.status, self.error = "failed", result.error
                return
            try:
                self.outputs = self.finish(self, result) or {}
            except Exception as exc:  # turn partial results into nothing; the user gets one line, the log the rest
                self._remove_created()
                self.status = "failed"
                if isinstance(exc, MedXAIError):
                    self.error = str(exc)
                else:
                    import traceback

                    self.log.extend(traceback.format_exc().splitlines())
                    self.error = (f"the results of {self.command} could not be shown ({type(exc).__name__}: {exc}); "
                                  "the log has the details")
                return
            self.status, self.fraction, self.stage = "done", 1.0, "done"
        finally:
            if self.status != "running" and not self.keep_files:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def track(self, node: Any) -> Any:
        """Remember a node this task created (removed again if the task fails or is cancelled)."""
        self.created_nodes.append(node)
        return node

    def _remove_created(self) -> None:
        scene = next((n.GetScene() for n in self.created_nodes if n is not None and n.GetScene()), None)
        if scene is not None:
            bridge.remove_nodes(scene, reversed(self.created_nodes))
        self.created_nodes.clear()

    def cancel(self) -> None:
        """Kill the process tree, remove the temporary folder and any node this task created."""
        if self.finished:
            return
        self.job.cancel()
        self._finalize(self.job.wait(30.0) or JobResult(returncode=-1, cancelled=True))
        self.status = "cancelled"

    def wait(self, poll_s: float = 0.05, timeout: float | None = None,
             idle: Callable[[], None] | None = None) -> dict[str, Any]:
        """Block until the task ends and return its outputs.

        ``idle`` is called between polls (in Slicer: ``slicer.app.processEvents`` keeps the GUI painting).

        Raises:
            JobFailedError: the command failed (message: its one-line error).
            CancelledError: the task was cancelled.
        """
        start = time.monotonic()
        while not self.finished:
            self.process_events()
            if self.finished:
                break
            if timeout is not None and time.monotonic() - start > timeout:
                self.cancel()
                raise CancelledError(f"{self.command} did not finish within {timeout:g} s and was cancelled")
            if idle is not None:
                idle()
            time.sleep(poll_s)
        if self.status == "failed":
            raise JobFailedError(self.error or f"{self.command} failed")
        if self.status == "cancelled":
            raise CancelledError(f"{self.command} was cancelled; no partial output was kept")
        return self.outputs


class Workflow:
    """Runs MedXAI commands on the nodes of one scene.

    Args:
        scene: the MRML scene results are added to.
        runner: starts the background processes (:class:`~.jobs.SubprocessJobRunner` by default).
        command_prefix: how to call the CLI; default ``[<Slicer's Python>, "-m", "MedXAILib"]``.
        python: the interpreter for :meth:`describe_model` (default: the first item of the default prefix).
        temp_root: where temporary folders are made (the system's default temp folder by default).
        environment: base environment of the child (``os.environ`` by default).
    """

    input_suffix = ".nii.gz"
    output_suffix = ".nrrd"

    def __init__(
        self,
        scene: slicer.vtkMRMLScene,
        runner: JobRunner | None = None,
        command_prefix: Sequence[str] | None = None,
        python: Sequence[str] | None = None,
        temp_root: str | os.PathLike | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.scene = scene
        self.runner = runner or SubprocessJobRunner()
        self.command_prefix = list(command_prefix) if command_prefix else python_command() + ["-m", "MedXAILib"]
        self.python = list(python) if python else (
            self.command_prefix[:-2] if self.command_prefix[-2:] == ["-m", "MedXAILib"] else python_command())
        self.temp_root = str(temp_root) if temp_root else None
        self.environment = environment

    # -- plumbing ------------------------------------------------------------------------------------------------
    def _workdir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="MedXAI-", dir=self.temp_root))

    def _starter(self, workdir: Path, device_flag: bool, prefix: Sequence[str] | None = None
                 ) -> Callable[[list[str], str], Any]:
        def start(args: list[str], device: str) -> Any:
            env = child_environment(device, self.environment)
            full = list(prefix or self.command_prefix) + args + (["--device", device] if device_flag else [])
            return self.runner.start(full, cwd=str(workdir), env=env)

        return start

    def _task(self, command: str, args: list[str], workdir: Path, finish: Callable, device: str | None,
              cpu_fallback: bool = True, prefix: Sequence[str] | None = None) -> Task:
        """Start ``args``; ``device`` None means the command takes no ``--device`` flag."""
        try:
            return Task(command, args, workdir, self._starter(workdir, device is not None, prefix), finish,
                        device=device or "cpu", cpu_fallback=cpu_fallback and device is not None)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def write_inputs(self, workdir: Path, input_nodes: Sequence[Any]) -> list[Path]:
        """Write each input node to ``workdir`` (one file per channel); grids must agree."""
        bridge.nodes_to_volume(input_nodes)  # checks geometry and voxels, names the node that differs
        paths = []
        from MedXAILib.io import write_volume

        for index, node in enumerate(input_nodes):
            volume = bridge.node_to_volume(node)
            if np.issubdtype(volume.array.dtype, np.floating) and volume.array.dtype != np.float32:
                volume = volume.with_array(volume.array.astype(np.float32))
            path = workdir / f"input_{index}_{_safe(node.GetName())}{self.input_suffix}"
            write_volume(volume, path)
            paths.append(path)
        return paths

    def target_arguments(self, workdir: Path, input_nodes: Sequence[Any], target: Any, region: Any,
                         voxel: Any) -> list[str]:
        """``--target`` / ``--region`` (the segment written as a mask on the first input's grid) / ``--voxel``."""
        args: list[str] = []
        if target not in (None, ""):
            args += ["--target", str(target)]
        if region is not None:
            segmentation_node, segment = region
            mask = bridge.segment_to_mask(segmentation_node, segment, input_nodes[0])
            if not mask.array.any():
                raise InputError(f"the segment {segment!r} is empty; paint it or choose another target")
            args += ["--region", str(self._write_mask(workdir, mask, "region"))]
        if voxel is not None:
            args += ["--voxel", ",".join(str(int(v)) for v in voxel)]
        return args

    def _write_mask(self, workdir: Path, mask: Volume, name: str) -> Path:
        from MedXAILib.io import write_volume

        path = workdir / f"{name}{self.output_suffix}"
        write_volume(mask.with_array(mask.array.astype(np.uint8)), path)
        return path

    @staticmethod
    def _read_on_grid(path: Path, reference: Any, what: str, label_map: bool = False) -> Volume:
        """Read an output and put it exactly on the reference node's grid (files carry float32 geometry)."""
        from MedXAILib.io import read_image, read_label_map

        if not path.exists():
            raise InputError(f"the command did not write its {what} ({path.name})")
        volume = read_label_map(path, what=what) if label_map else read_image(path, grayscale_2d=False)
        ref = Volume(np.zeros((1,) + bridge._shape_kji(reference), np.uint8), bridge.ijk_to_ras_of(reference))
        diff = ref.geometry_difference(volume, atol=1e-3)
        if diff is not None:
            raise InputError(f"the {what} has {diff} than {reference.GetName()}")
        return Volume(volume.array, ref.ijk_to_ras, volume.channel_names)

    def _place(self, nodes: Sequence[Any], reference: Any) -> None:
        bridge.place_in_subject_hierarchy(self.scene, [n for n in nodes if n is not None], reference)

    @staticmethod
    def _sidecar(path: Path) -> dict[str, Any]:
        """Merge every JSON object written beside ``path`` (``heatmap.nrrd.json``, ``heatmap.json``, …)."""
        merged: dict[str, Any] = {}
        stem = path.name.split(".")[0]
        for candidate in sorted(path.parent.glob(f"{stem}*.json")):
            try:
                data = json.loads(candidate.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                merged.update(data)
        return merged

    # -- what the panel offers ------------------------------------------------------------------------------------
    def _query(self, command: str, args: list[str], parse: Callable[[str], Any], idle: Callable[[], None] | None,
               timeout: float, prefix: Sequence[str] | None = None) -> Any:
        """Run a short listing command to its end and parse its stdout (blocking; ``idle`` keeps a GUI painting)."""
        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            try:
                return {"value": parse("\n".join(result.stdout))}
            except ValueError as exc:
                raise InputError(str(exc)) from None

        task = self._task(command, args, self._workdir(), finish, None, prefix=prefix)
        self.last_query = task
        return task.wait(timeout=timeout, idle=idle)["value"]

    def list_models(self, idle: Callable[[], None] | None = None, timeout: float = 120.0
                    ) -> tuple[list[catalog.ModelEntry], str | None]:
        """The models ``models --json`` lists, and a note when only the built-in ones could be listed.

        An older core without the ``models`` command, or a failing one, gives the built-in models (read from their
        description files) and a note saying why.
        """
        try:
            return self._query("models", ["models", "--json"], catalog.parse_models_json, idle, timeout), None
        except (JobFailedError, InputError, CancelledError) as exc:
            result = getattr(self, "last_query", None)
            stderr = result.result.stderr if result is not None and result.result is not None else []
            if catalog.is_missing_command(stderr, "models"):
                note = "this MedXAILib has no `models` command: only the built-in models are listed"
            else:
                note = f"the model list could not be read ({exc}): only the built-in models are listed"
            return catalog.builtin_entries(), note

    def describe_model(self, path: str, idle: Callable[[], None] | None = None, timeout: float = 300.0
                       ) -> catalog.ModelEntry:
        """Describe a model file or folder (task, channels, classes) with the core's own loader, in a child.

        Raises:
            JobFailedError: the core could not load it (the message is its one-line error).
        """
        return self._query("describe", ["-c", catalog.DESCRIBE_SCRIPT, str(path)], catalog.parse_describe_json,
                           idle, timeout, prefix=self.python)

    def list_methods(self, idle: Callable[[], None] | None = None, timeout: float = 120.0
                     ) -> dict[str, dict[str, Any]]:
        """``{method: record}`` from ``methods --json`` (parameters, defaults, dims, tasks).

        Raises:
            JobFailedError: the command failed.
        """
        return self._query("methods", ["methods", "--json"], catalog.parse_methods_json, idle, timeout)

    # -- segment -------------------------------------------------------------------------------------------------
    def start_segment(
        self,
        input_nodes: Sequence[Any],
        model: str,
        device: str = "cpu",
        class_names: Mapping[int, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> Task:
        """Segment the inputs; the task's outputs hold ``"segmentation"`` (named, coloured segments).

        Segment names: ``class_names`` (label value → name, from the model's description, see
        :meth:`catalog.ModelEntry.label_names`), overridden by names the command writes in its sidecar.
        """
        workdir = self._workdir()
        try:
            inputs = self.write_inputs(workdir, input_nodes)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        output = workdir / f"prediction{self.output_suffix}"
        args = ["segment", "--model", model]
        for path in inputs:
            args += ["--input", str(path)]
        args += ["--output", str(output), "--progress", "json", *extra_args]
        reference = input_nodes[0]

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            labels = self._read_on_grid(output, reference, "prediction", label_map=True)
            names = dict(DEMO_CLASS_NAMES.get(model, {}))
            names.update({int(k): str(v) for k, v in (class_names or {}).items()})
            sidecar = self._sidecar(output)
            for key in ("class_names", "labels", "classes"):
                value = sidecar.get(key)
                if isinstance(value, dict):
                    names.update({int(k): str(v) for k, v in value.items() if str(k).isdigit()})
                elif isinstance(value, list):
                    names.update({i: str(v) for i, v in enumerate(value) if i > 0})
            present = {int(v) for v in np.unique(labels.array) if v != 0}
            codes = terminology.entries_for_labels(
                {v: names.get(v, f"label {v}") for v in present}, sidecar.get("terminology"))
            seg = task.track(bridge.labelmap_to_segmentation(self.scene, labels, reference, names,
                                                             name=f"{reference.GetName()} prediction",
                                                             terminology=codes))
            seg.SetAttribute("MedXAI.Model", model)
            seg.SetAttribute("MedXAI.Role", "prediction")
            self._place([seg], reference)
            return {"segmentation": seg}

        return self._task("segment", args, workdir, finish, device)

    # -- classify -----------------------------------------------------------------------------------------------
    def start_classify(self, input_nodes: Any, model: str, device: str = "cpu") -> Task:
        """Classify an image (one node, or one per model channel); outputs: ``"table"`` (class, probability),
        ``"scores"``."""
        nodes = list(input_nodes) if isinstance(input_nodes, (list, tuple)) else [input_nodes]
        input_node = nodes[0]
        workdir = self._workdir()
        try:
            inputs = self.write_inputs(workdir, nodes)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        output = workdir / "classification.json"
        args = ["classify", "--model", model]
        for path in inputs:
            args += ["--input", str(path)]
        args += ["--output", str(output), "--progress", "json"]

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            data = json.loads(output.read_text()) if output.exists() else {}
            scores = _numbers(data.get("probabilities", data.get("scores", data)))
            table = task.track(bridge.add_table_node(
                self.scene, f"{input_node.GetName()} classification", ["class", "probability"],
                [[k, v] for k, v in scores.items()]))
            self._place([table], input_node)
            return {"table": table, "scores": scores, "raw": data}

        return self._task("classify", args, workdir, finish, device)

    # -- explain --------------------------------------------------------------------------------------------------
    def _explain_args(
        self,
        workdir: Path,
        input_nodes: Sequence[Any],
        model: str,
        method: str,
        target: str | None,
        region: tuple[Any, str] | None,
        voxel: tuple[int, int, int] | None,
        method_args: str | Sequence[str],
    ) -> tuple[list[str], Path]:
        inputs = self.write_inputs(workdir, input_nodes)
        output = workdir / f"heatmap{self.output_suffix}"
        args = ["explain", "--model", model]
        for path in inputs:
            args += ["--input", str(path)]
        args += ["--method", method]
        args += self.target_arguments(workdir, input_nodes, target, region, voxel)
        extra = shlex.split(method_args) if isinstance(method_args, str) else list(method_args)
        args += ["--output", str(output), *extra]
        return args, output

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
    ) -> Task:
        """Explain the model's output; outputs: ``"heatmap"``, ``"overlay"``, maybe ``"importance"`` and ``"cost"``.

        Args:
            region: ``(segmentation node, segment name or ID)`` to explain the summed logits inside it.
            voxel: ``(i, j, k)`` of a voxel to explain (see :func:`bridge.markup_point_to_ijk`).
            method_args: more ``explain`` flags for the method's parameters (a string is split like a shell does).
        """
        workdir = self._workdir()
        try:
            args, output = self._explain_args(workdir, input_nodes, model, method, target, region, voxel,
                                              method_args)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        args += ["--progress", "json"]
        reference = input_nodes[0]

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            heat = self._read_on_grid(output, reference, "heat map")
            base = f"{reference.GetName()} {method}"
            heat_node = task.track(bridge.add_heatmap_node(self.scene, heat, reference, name=f"{base} heat map"))
            heat_node.SetAttribute("MedXAI.Method", method)
            heat_node.SetAttribute("MedXAI.Reference", reference.GetID())
            sidecar = self._sidecar(output)
            described = {k: sidecar[k] for k in EXPLANATION_KEYS if k in sidecar}
            if described:  # what `evaluate` needs to re-run this explanation (method, parameters, target)
                heat_node.SetAttribute("MedXAI.Explanation", json.dumps(described))
            overlay = task.track(bridge.add_relevance_overlay(self.scene, heat, reference,
                                                              name=f"{base} relevance levels"))
            outputs: dict[str, Any] = {"heatmap": heat_node, "overlay": overlay}
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
            self._place([heat_node, overlay, outputs.get("importance")], reference)
            if show:
                bridge.show_in_slice_views(self.scene, background=reference, foreground=heat_node, label=overlay,
                                           foreground_opacity=opacity)
            return outputs

        return self._task("explain", args, workdir, finish, device)

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
        workdir = self._workdir()
        try:
            args, output = self._explain_args(workdir, input_nodes, model, method, target, region, voxel,
                                              method_args)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        args += ["--dry-run", "--progress", "json"]

        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            cost: dict[str, Any] = {}
            text_lines = []
            try:  # one JSON document, possibly indented over several lines
                whole = json.loads("\n".join(result.stdout))
            except ValueError:
                whole = None
            lines = [json.dumps(whole)] if isinstance(whole, dict) else result.stdout
            for line in lines:
                stripped = line.strip()
                if stripped.startswith("{"):
                    try:
                        data = json.loads(stripped)
                    except ValueError:
                        data = None
                    if isinstance(data, dict):
                        cost.update(data.get("cost", data) if isinstance(data.get("cost", data), dict) else data)
                        continue
                if stripped:
                    text_lines.append(stripped)
            sidecar = self._sidecar(output)
            if isinstance(sidecar.get("cost"), dict):
                cost.update(sidecar["cost"])
            return {"cost": cost, "text": format_cost(cost) if cost else "\n".join(text_lines)}

        return self._task("estimate", args, workdir, finish, device, cpu_fallback=False)


    # -- evaluate -------------------------------------------------------------------------------------------------
    def start_evaluate(
        self,
        prediction: Any,
        reference_segmentation: Any,
        reference_volume: Any,
        pairs: Sequence[tuple[str, str]] | None = None,
    ) -> Task:
        """Dice, IoU, HD95 and volumes of prediction segments against reference segments (a table node).

        Args:
            pairs: ``(prediction segment, reference segment)`` names or IDs. By default segments with the same name
                are paired; if none match, the union of all prediction segments is compared with the union of all
                reference segments ("all segments"). Pair *n* becomes label *n* in both maps, so each map's chosen
                segments should not overlap (where they do, the later pair wins).
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
            table = task.track(metrics_table(self.scene, metrics, names, f"{prediction.GetName()} metrics"))
            self._place([table], reference_volume)
            return {"table": table, "metrics": metrics}

        return self._task("evaluate", args, workdir, finish, None)


    # -- explanation quality ------------------------------------------------------------------------------------
    def start_quality(
        self,
        heatmap_node: Any,
        input_nodes: Sequence[Any],
        model: str | None,
        reference_segmentation: Any,
        reference_segment: str | Sequence[str] | None = None,
        method: str | None = None,
        slow: bool = False,
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
            table = task.track(bridge.add_table_node(
                self.scene, f"{heatmap_node.GetName()} quality", ["metric", "value"],
                [[k, v] for k, v in metrics.items()]))
            table.SetAttribute("MedXAI.Role", "explanation quality")
            self._place([table], reference)
            return {"table": table, "metrics": metrics, "raw": data, "skipped": skipped}

        return self._task("evaluate", args, workdir, finish, None)
