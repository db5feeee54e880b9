"""The panel's *Compare methods* action: ``python -m MedXAILib compare`` in the background, results as nodes.

Qt-free (bridge layer). The job writes the input nodes to a temporary folder, runs ``compare`` on them with the
panel's target (class, segment or markup point), and turns its folder into nodes on the input's exact grid:

- the consensus map (mean normalised rank of the methods' maps) as a heat-map volume, shown over the input;
- the per-voxel agreement as a second float volume;
- a table: one row per method with its Spearman ρ, SSIM and top-k IoU to the consensus, the leave-one-out ρ, the
  seconds it took, and its Spearman ρ to every other method;
- ``outputs["report"]``: the whole ``agreement.json``.
"""

from __future__ import annotations

import json
import shutil
from typing import Any, Sequence

from MedXAILib.errors import InputError

from . import bridge


def compare_args(flow: Any, workdir: Any, input_nodes: Sequence[Any], model: str, methods: str | Sequence[str],
                 target: str | None, region: tuple[Any, str] | None, voxel: tuple[int, int, int] | None,
                 extra_args: Sequence[str] = ()) -> list[str]:
    """The ``compare`` command line (inputs and masks written into ``workdir``)."""
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m and m.strip()]
    if len(names) < 2:
        raise InputError("list at least two methods to compare, separated by commas (e.g. gradcam,saliency,lrp)")
    args = ["compare", "--model", model]
    for path in flow.write_inputs(workdir, input_nodes):
        args += ["--input", str(path)]
    args += ["--methods", ",".join(names)]
    args += flow.target_arguments(workdir, input_nodes, target, region, voxel)
    # the panel shows nodes, and the job's folder is removed afterwards: no figure
    return args + ["--output", str(workdir / "compare"), "--no-figure", "--progress", "json", *extra_args]


def agreement_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the agreement table (see the module docstring)."""
    names = list(report["methods"])
    cons = report.get("consensus", {})
    seconds = report.get("seconds", {})
    columns = ["method", "ρ to consensus", "SSIM to consensus", "top-k IoU to consensus", "ρ leave-one-out",
               "seconds", *[f"ρ {n}" for n in names]]
    rows = []
    for i, name in enumerate(names):
        rows.append([name, *[(cons.get(k) or [None] * len(names))[i] for k in
                             ("spearman", "ssim", "topk_iou", "spearman_leave_one_out")],
                     seconds.get(name), *report["spearman"][i]])
    return columns, rows


def start_compare(
    flow: Any,
    input_nodes: Sequence[Any],
    model: str,
    methods: str | Sequence[str],
    target: str | None = None,
    region: tuple[Any, str] | None = None,
    voxel: tuple[int, int, int] | None = None,
    device: str = "cpu",
    opacity: float = 0.5,
    show: bool = True,
    extra_args: Sequence[str] = (),
) -> Any:
    """Start the job on a :class:`~MedXAILogicLib.workflow.Workflow`; outputs ``heatmap`` (the consensus),
    ``agreement_map``, ``table`` and ``report``."""
    workdir = flow._workdir()
    try:
        args = compare_args(flow, workdir, input_nodes, model, methods, target, region, voxel, extra_args)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    reference = input_nodes[0]
    folder = workdir / "compare"

    def finish(task: Any, result: Any) -> dict[str, Any]:
        report_path = folder / "agreement.json"
        if not report_path.exists():
            raise InputError("compare did not write agreement.json")
        report = json.loads(report_path.read_text())
        base = f"{reference.GetName()} {', '.join(report['methods'])}"
        consensus = flow._read_on_grid(folder / "consensus.nrrd", reference, "consensus map")
        agreement = flow._read_on_grid(folder / "consensus_agreement.nrrd", reference, "agreement map")
        cons_node = task.track(bridge.add_heatmap_node(flow.scene, consensus, reference, name=f"{base} consensus"))
        cons_node.SetAttribute("MedXAI.Method", "consensus")
        agree_node = task.track(bridge.add_heatmap_node(flow.scene, agreement, reference,
                                                        name=f"{base} agreement per voxel"))
        columns, rows = agreement_rows(report)
        table = task.track(bridge.add_table_node(flow.scene, f"{base} agreement", columns, rows))
        flow._place([cons_node, agree_node, table], reference)
        if show:
            bridge.show_in_slice_views(flow.scene, background=reference, foreground=cons_node,
                                       foreground_opacity=opacity)
        return {"heatmap": cons_node, "agreement_map": agree_node, "table": table, "report": report}

    return flow._task("compare", args, workdir, finish, device)
