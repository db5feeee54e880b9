"""Explanation quality from the Slicer workflow (``Workflow.start_quality``), with real subprocesses.

The stand-in CLI parses ``evaluate`` with the real command's own argument parser and runs the real heat-map mode
(localisation and complexity on the files the workflow wrote); only the model-based hook (faithfulness, stability,
sanity: tens of seconds with a real model) is replaced by one that checks its inputs and returns fixed numbers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "MedXAI"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import slicer  # noqa: E402
from MedXAILogicLib import bridge, workflow  # noqa: E402
from test_slicer_jobs import brain_nodes, leftover_dirs, write_script  # noqa: E402

from MedXAILib.errors import CancelledError, InputError  # noqa: E402
from MedXAILib.volume import Volume  # noqa: E402

QUALITY_CLI = """
import argparse, json, os, sys, time
from pathlib import Path
import numpy as np
from MedXAILib.commands import evaluate as ev
from MedXAILib.errors import InputError, MedXAIError
from MedXAILib.io import read_image, read_volume, write_json, write_volume

log = os.environ.get("FAKE_CLI_LOG")
if log:
    with open(log, "a") as f:
        f.write(json.dumps({"argv": sys.argv[1:]}) + "\\n")

if sys.argv[1] == "explain":  # a heat map peaking at the t1 'tumour', and the sidecar explain writes
    p = argparse.ArgumentParser()
    p.add_argument("command"); p.add_argument("--model"); p.add_argument("--input", action="append")
    p.add_argument("--method"); p.add_argument("--output"); p.add_argument("--progress"); p.add_argument("--device")
    a = p.parse_args()
    vol = read_volume(a.input)
    write_volume(vol.with_array(vol.array[:1].astype(np.float32)), a.output)
    write_json({"model": a.model, "input": a.input, "method": a.method, "params": {"layer": "enc.2"},
                "target": {"kind": "region", "class_index": 2, "class_name": "oedema"}, "cost": {}},
               a.output + ".json")
    sys.exit(0)

def hook(args, heat, reference):
    if args.model == "missing-model":
        raise InputError("unknown model 'missing-model'; choose demo-brain-tumour or demo-chest-xray")
    if args.model == "slow":
        print(json.dumps({"stage": "faithfulness", "progress": 0.85}), flush=True)
        time.sleep(60)
    if len(args.input) != 4:
        raise InputError(f"model {args.model!r} takes 4 channel(s); {len(args.input)} file(s) gave {len(args.input)}")
    for path in args.input:
        diff = heat.geometry_difference(read_image(path))
        if diff is not None:
            raise InputError(f"{path}: {diff}")
    families = (args.quality or "faithfulness,stability,sanity").split(",")
    side = Path(str(args.heatmap) + ".json")
    out = {"deletion_auc": 0.2, "insertion_auc": 0.7, "deletion_curve": [1.0, 0.5, 0.1],
           "deletion_auc_random": 0.5, "insertion_auc_random": 0.45}
    if "stability" in families:
        out["stability_ssim"] = 0.9
    if "sanity" in families:
        out["sanity_passed"] = True
    out["quality_inputs"] = {"model": args.model, "method": args.method, "metrics": families,
                             "sidecar": json.loads(side.read_text()) if side.exists() else None}
    return out

p = argparse.ArgumentParser()
p.add_argument("command")
ev.add_arguments(p)
args = p.parse_args()
ev._model_based_hook = lambda a: hook if (a.model or a.input) else None
try:
    sys.exit(ev.run(args))
except MedXAIError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
"""


@pytest.fixture
def scene() -> slicer.vtkMRMLScene:
    return slicer.vtkMRMLScene()


@pytest.fixture
def flow(scene, tmp_path, monkeypatch) -> workflow.Workflow:
    script = write_script(tmp_path, "quality_cli.py", QUALITY_CLI)
    monkeypatch.setenv("FAKE_CLI_LOG", str(tmp_path / "calls.jsonl"))
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    return workflow.Workflow(scene, command_prefix=[sys.executable, str(script)], temp_root=temp_root)


def last_argv(tmp_path: Path) -> list[str]:
    return json.loads((tmp_path / "calls.jsonl").read_text().splitlines()[-1])["argv"]


def case(scene: slicer.vtkMRMLScene) -> tuple[list, object, object, np.ndarray]:
    """Inputs, a heat map made from t1 (high inside the 'tumour'), the truth segmentation and its mask."""
    slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)  # the singleton Slicer's scene always has
    nodes = brain_nodes(scene)
    t1 = bridge.node_to_volume(nodes[0])
    heat = bridge.add_heatmap_node(scene, t1.with_array(t1.array.astype(np.float32)), nodes[0],
                                   name="t1 gradcam heat map")
    heat.SetAttribute("MedXAI.Method", "gradcam")
    labels = np.zeros(t1.shape, np.int16)
    labels[2:5, 2:6, 3:8] = 2
    labels[3, 3:5, 4:6] = 1
    truth = bridge.labelmap_to_segmentation(scene, t1.with_array(labels[None]), nodes[0],
                                            {1: "core", 2: "oedema"}, name="truth")
    return nodes, heat, truth, labels > 0


def test_quality_table_from_the_real_evaluate_parser(scene, flow, tmp_path):
    nodes, heat, truth, region = case(scene)
    before = {n.GetID(): bridge.node_to_volume(n).array.copy() for n in [*nodes, heat]}
    n_before = scene.GetNumberOfNodes()
    task = flow.start_quality(heat, nodes, "demo-brain-tumour", truth)
    stages: list[str] = []
    task.listeners.append(lambda t, e: stages.append(e.stage) if e.kind == "progress" else None)
    out = task.wait()
    assert task.status == "done" and "localisation" in stages and stages[-1] == "done"

    columns, rows = bridge.table_to_rows(out["table"])
    assert columns == ["metric", "value"]
    values = dict((r[0], r[1]) for r in rows)
    # real localisation of the written files: the map's maximum lies in the reference, all its mass in it
    heat_array = bridge.node_to_volume(heat).array[0]
    assert values["pointing_game"] == 1.0
    assert values["relevance_mass"] == pytest.approx(heat_array[region].sum() / heat_array.sum(), rel=1e-5)
    for key in ("relevance_rank", "topk_dice_5pct", "sparseness_gini", "deletion_auc", "insertion_auc",
                "deletion_auc_random", "insertion_auc_random"):
        assert key in values
    assert values["deletion_auc"] == pytest.approx(0.2)
    assert "deletion_curve" not in values and "stability_ssim" not in values and "inputs" not in values
    assert out["metrics"] == values and out["skipped"] == {}

    argv = last_argv(tmp_path)
    assert argv[0] == "evaluate" and argv.count("--input") == 1 and argv.count("--model") == 1
    first = argv.index("--input") + 1
    assert len([a for a in argv[first:first + 4] if a.endswith(".nii.gz")]) == 4  # every channel after one flag
    assert argv[argv.index("--quality") + 1] == "faithfulness"
    assert argv[argv.index("--method") + 1] == "gradcam"
    assert argv[argv.index("--progress") + 1] == "json" and "--device" not in argv

    # one table node, placed with the other results, nothing else added, inputs untouched, no temp folder left
    assert scene.GetNumberOfNodes() == n_before + 1
    sh = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    folder = sh.GetItemParent(sh.GetItemByDataNode(out["table"]))
    assert sh.GetItemName(folder) == "MedXAI results"
    for n in [*nodes, heat]:
        assert np.array_equal(bridge.node_to_volume(n).array, before[n.GetID()])
    assert leftover_dirs(Path(flow.temp_root)) == []


def test_slow_metrics_and_the_explain_sidecar_reach_the_cli(scene, flow, tmp_path):
    nodes = brain_nodes(scene)
    heat = flow.start_explain(nodes, "demo-brain-tumour", method="lrp", show=False).wait()["heatmap"]
    assert json.loads(heat.GetAttribute("MedXAI.Explanation"))["params"] == {"layer": "enc.2"}
    truth = bridge.labelmap_to_segmentation(scene, bridge.node_to_volume(nodes[0]).with_array(
        (bridge.node_to_volume(nodes[0]).array > 0.5).astype(np.int16)), nodes[0], {1: "tumour"}, name="truth")
    out = flow.start_quality(heat, nodes, "demo-brain-tumour", truth, "tumour", slow=True).wait()
    argv = last_argv(tmp_path)
    assert argv[argv.index("--quality") + 1] == "faithfulness,stability,sanity"
    assert argv[argv.index("--method") + 1] == "lrp"  # from the heat-map node, not a default
    assert out["metrics"]["stability_ssim"] == pytest.approx(0.9) and out["metrics"]["sanity_passed"] == 1.0
    sidecar = out["raw"]["quality_inputs"]["sidecar"]
    assert sidecar["method"] == "lrp" and sidecar["target"]["class_name"] == "oedema"
    assert leftover_dirs(Path(flow.temp_root)) == []


def test_without_a_model_only_localisation_and_complexity(scene, flow, tmp_path):
    nodes, heat, truth, _ = case(scene)
    core = bridge.segment_ids(truth)[0]
    out = flow.start_quality(heat, nodes, None, truth, core).wait()
    argv = last_argv(tmp_path)
    assert "--model" not in argv and "--input" not in argv and "--quality" not in argv
    assert "pointing_game" in out["metrics"] and "deletion_auc" not in out["metrics"]
    assert not any(p.name.startswith("input_") for p in Path(flow.temp_root).rglob("*"))


def test_failure_comes_back_and_leaves_nothing(scene, flow):
    nodes, heat, truth, _ = case(scene)
    n_before = scene.GetNumberOfNodes()
    task = flow.start_quality(heat, nodes, "missing-model", truth)
    with pytest.raises(workflow.JobFailedError, match="unknown model 'missing-model'"):
        task.wait()
    assert task.status == "failed" and scene.GetNumberOfNodes() == n_before
    assert leftover_dirs(Path(flow.temp_root)) == []


@pytest.mark.skipif(os.name == "nt", reason="process-group check uses POSIX signals")
def test_cancel_leaves_no_node_and_no_temp_folder(scene, flow):
    nodes, heat, truth, _ = case(scene)
    n_before = scene.GetNumberOfNodes()
    task = flow.start_quality(heat, nodes, "slow", truth)
    deadline = time.monotonic() + 30
    while task.stage != "faithfulness" and not task.finished and time.monotonic() < deadline:
        task.process_events()
        time.sleep(0.02)
    assert task.stage == "faithfulness"
    task.cancel()
    assert task.status == "cancelled" and scene.GetNumberOfNodes() == n_before
    assert leftover_dirs(Path(flow.temp_root)) == []
    with pytest.raises(CancelledError):
        task.wait()


def test_bad_inputs_are_refused_before_anything_runs(scene, flow, tmp_path):
    nodes, heat, truth, _ = case(scene)
    elsewhere = bridge.add_volume_node(scene, Volume(np.ones((1, 6, 8, 11), np.float32)), "other map", channel=None)
    with pytest.raises(InputError, match="other map"):
        flow.start_quality(elsewhere, nodes, "demo-brain-tumour", truth)
    empty = bridge.labelmap_to_segmentation(scene, Volume(np.zeros((1, 6, 8, 10), np.int16)), nodes[0], {},
                                            name="empty")
    empty.GetSegmentation().AddEmptySegment("nothing")
    with pytest.raises(InputError, match="empty"):
        flow.start_quality(heat, nodes, "demo-brain-tumour", empty, "nothing")
    assert leftover_dirs(Path(flow.temp_root)) == [] and not (tmp_path / "calls.jsonl").exists()


def test_quality_numbers_keeps_scalars_in_order():
    data = {"pointing_game": 1.0, "deletion_curve": [1, 0], "sanity_passed": False, "n": 3,
            "faithfulness_settings": {"steps": 10}, "inputs": {"heatmap": "h"}, "note": "text"}
    assert workflow.quality_numbers(data) == {"pointing_game": 1.0, "sanity_passed": 0.0, "n": 3.0}
