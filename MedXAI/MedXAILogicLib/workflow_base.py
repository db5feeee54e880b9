"""The plumbing of the Slicer workflow, without Qt: a background command as a :class:`Task`, inputs to files.

A workflow (:class:`~.workflow.Workflow`, made of :class:`WorkflowBase` and one mixin per panel section) is bound to
one MRML scene. Each ``start_*`` method writes the input nodes into a fresh
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

from . import bridge, inputs
from .jobs import JobEvent, JobResult, JobRunner, SubprocessJobRunner, is_out_of_memory, python_command

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
        notes: what was done to the inputs on the user's behalf (an RGB volume converted to grey, …).
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
    notes: list[str] = field(default_factory=list)
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


class WorkflowBase:
    """Runs MedXAI commands on the nodes of one scene (the plumbing every ``start_*`` mixin uses).

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
              cpu_fallback: bool = True, prefix: Sequence[str] | None = None, notes: Sequence[str] = ()) -> Task:
        """Start ``args``; ``device`` None means the command takes no ``--device`` flag. ``notes`` start the log."""
        try:
            task = Task(command, args, workdir, self._starter(workdir, device is not None, prefix), finish,
                        device=device or "cpu", cpu_fallback=cpu_fallback and device is not None)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        task.log[:0] = list(notes)
        task.notes = list(notes)
        return task

    def _prepare(self, build: Callable[[Path], Any]) -> tuple[Path, Any]:
        """A fresh work folder and ``build(workdir)``; the folder is removed again when ``build`` raises."""
        workdir = self._workdir()
        try:
            return workdir, build(workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def write_inputs(self, workdir: Path, input_nodes: Sequence[Any], notes: list[str] | None = None) -> list[Path]:
        """Write each input node to ``workdir`` (one file per channel); grids must agree.

        An RGB(A) vector volume (a colour X-ray, a photo) is converted to one grey channel first
        (:func:`.inputs.grey_volume`); ``notes`` gets one line saying so, for the log.
        """
        from MedXAILib.io import write_volume

        greys = [inputs.grey_volume(node) for node in input_nodes]
        # checks that every channel lies on the first one's grid, naming the node that differs
        Volume.stack([volume for volume, _note in greys], names=[node.GetName() for node in input_nodes])
        paths = []
        for index, (node, (volume, note)) in enumerate(zip(input_nodes, greys)):
            if note and notes is not None:
                notes.append(note)
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
