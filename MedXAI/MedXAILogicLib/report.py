"""The case report for the current result: the Slicer side of ``python -m MedXAILib report`` (Qt-free).

:func:`start_report` writes the input nodes (and, optionally, a reference segmentation as a label map) to a temporary
folder, runs the ``report`` command in the background like every other job, and leaves ``CASE.html`` and
``CASE.pdf`` where the user asked; the temporary folder goes when the job ends. No node is created or modified.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from MedXAILib.errors import InputError
from MedXAILib.volume import Volume

from . import bridge
from .jobs import JobResult


def start_report(flow: Any, input_nodes: Sequence[Any], model: str, output_html: str | Path,
                 method: str = "gradcam", target: str | None = None, reference: Any = None,
                 quality: str = "sanity,stability", device: str = "cpu", case: str | None = None,
                 extra_args: Sequence[str] = ()) -> Any:
    """Start writing the case report of ``model`` on ``input_nodes`` to ``output_html`` (+ ``.pdf`` beside it).

    Args:
        flow: the module's :class:`~.workflow.Workflow`.
        reference: a segmentation node whose segments (in order) become labels 1, 2, … of the reference, or None.
        quality: the report command's ``--quality`` (``none`` for the quickest report).
        extra_args: more ``report`` flags (model options: ``--folds``, ``--checkpoint``, ``--param tta=false``).

    Returns:
        the :class:`~.workflow.Task`; ``wait()`` gives ``{"html": Path, "pdf": Path}``.
    """
    html = Path(output_html)
    if html.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"{html}: the case report is written as .html (and .pdf beside it)")
    workdir = flow._workdir()
    try:
        inputs = flow.write_inputs(workdir, input_nodes)
        args = ["report", "--model", model, "--output", str(html), "--method", method, "--quality", quality,
                "--case", case or input_nodes[0].GetName()]
        for path in inputs:
            args += ["--input", str(path)]
        args += list(extra_args)
        if target:
            args += ["--target", target]
        if reference is not None:
            k, j, i = bridge._shape_kji(input_nodes[0])
            labels = np.zeros((k, j, i), np.int16)
            for value, segment in enumerate(bridge.segment_ids(reference), start=1):
                labels[bridge.segment_to_mask(reference, segment, input_nodes[0]).array[0] > 0] = value
            ref = flow._write_mask(workdir, Volume(labels[None], bridge.ijk_to_ras_of(input_nodes[0])), "reference")
            args += ["--reference", str(ref)]
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise

    def finish(task: Any, result: JobResult) -> dict[str, Any]:
        pdf = html.with_suffix(".pdf")
        if not html.exists() or not pdf.exists():
            raise InputError(f"the report command did not write {html.name} and {pdf.name}")
        return {"html": html, "pdf": pdf}

    return flow._task("report", args, workdir, finish, device)
