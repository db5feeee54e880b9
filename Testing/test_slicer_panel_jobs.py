"""What the panel's jobs add to the workflow, on real MRML (``slicer-core``) with real child processes.

- outputs go into the node chosen under *Outputs* (its old content replaced) and a failed job leaves it untouched;
- the relevance levels are made but not drawn over the heat map;
- counterfactual methods give the counterfactual, the difference map and the series as a sequence;
- shap's plots come back as a PNG; the model card and the out-of-domain warning come back from the sidecar;
- the model and method lists are read in the background and kept (no child on the second opening);
- Evaluate and Estimate are background jobs that Cancel stops, leaving nothing;
- every command line the panel builds is accepted by the real CLI's own argument parser (``MedXAILib.cli``).

The child is the stand-in CLI of ``test_slicer_jobs.py`` (it writes what the real commands write), except for the
argument check, which parses with the real parser.
"""

from __future__ import annotations

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
from MedXAILogicLib import bridge, catalog, workflow  # noqa: E402
from MedXAILogicLib.jobs import JobResult  # noqa: E402
from MedXAILogicLib.logic import MedXAILogicBase  # noqa: E402
from test_slicer_jobs import FAKE_CLI, brain_nodes, calls, leftover_dirs, write_script  # noqa: E402

from MedXAILib.errors import CancelledError, InputError  # noqa: E402


@pytest.fixture
def scene() -> slicer.vtkMRMLScene:
    return slicer.vtkMRMLScene()


@pytest.fixture
def flow(scene, tmp_path, monkeypatch) -> workflow.Workflow:
    script = write_script(tmp_path, "fake_cli.py", FAKE_CLI)
    monkeypatch.setenv("FAKE_CLI_LOG", str(tmp_path / "calls.jsonl"))
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    return workflow.Workflow(scene, command_prefix=[sys.executable, str(script)], temp_root=temp_root)


def segment_names(node) -> list[str]:
    return [node.GetSegmentation().GetSegment(s).GetName() for s in bridge.segment_ids(node)]


def test_outputs_go_into_the_chosen_nodes_and_a_failure_leaves_them_alone(scene, flow):
    nodes = brain_nodes(scene)
    old = np.zeros((1, 6, 8, 10), np.int16)
    old[0, 0, 0, 0] = 1
    chosen = bridge.labelmap_to_segmentation(scene, bridge.node_to_volume(nodes[0]).with_array(old), nodes[0],
                                             {1: "old"}, name="my prediction")
    with pytest.raises(InputError, match="input"):
        flow.start_explain(nodes, "demo-brain-tumour", heatmap_node=nodes[1])  # never write over an input
    task = flow.start_segment(nodes, "missing-model", segmentation_node=chosen)
    with pytest.raises(workflow.JobFailedError):
        task.wait()
    assert segment_names(chosen) == ["old"] and chosen.GetScene() is scene
    seg = flow.start_segment(nodes, "demo-brain-tumour", segmentation_node=chosen).wait()["segmentation"]
    assert seg is chosen and segment_names(chosen) == ["necrotic core", "oedema"]
    # the chosen node follows the input like a new one: same grid in the stored geometry, same voxels
    labels = bridge.segmentation_to_labelmap(chosen, nodes[0]).array[0]
    assert int((labels > 0).sum()) == 3 * 4 * 5

    heat_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my heat map")
    out = flow.start_explain(nodes, "demo-brain-tumour", heatmap_node=heat_node).wait()
    assert out["heatmap"] is heat_node and heat_node.GetName() == "my heat map"
    expected = np.mean([bridge.node_to_volume(n).array[0] for n in nodes], axis=0)
    assert np.allclose(bridge.node_to_volume(heat_node).array[0], expected)
    assert np.array_equal(bridge.ijk_to_ras_of(heat_node), bridge.ijk_to_ras_of(nodes[0]))

    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "my table")
    assert flow.start_classify(nodes[0], "five-inputs", table_node=table).wait()["table"] is table
    assert bridge.table_to_rows(table)[0] == ["class", "probability"]
    assert flow.start_evaluate(seg, seg, nodes[0], table_node=table).wait()["table"] is table
    assert bridge.table_to_rows(table)[0][:2] == ["segment", "Dice"]


def test_relevance_levels_are_made_but_not_drawn_over_the_heat_map(scene, flow):
    for _ in range(2):
        scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    nodes = brain_nodes(scene)
    out = flow.start_explain(nodes, "demo-brain-tumour").wait()
    assert out["overlay"].IsA("vtkMRMLLabelMapVolumeNode")
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        assert composite.GetForegroundVolumeID() == out["heatmap"].GetID()
        assert composite.GetBackgroundVolumeID() == nodes[0].GetID()
        assert composite.GetLabelVolumeID() != out["overlay"].GetID()


def test_counterfactual_result_difference_and_series(scene, flow):
    nodes = brain_nodes(scene)
    n_before = scene.GetNumberOfNodes()
    out = flow.start_explain(nodes, "demo-brain-tumour", method="counterfactual").wait()
    argv = calls(Path(flow.temp_root).parent)[-1]["argv"]
    assert "--counterfactual" in argv and "--series" in argv
    cf = out["counterfactual"]
    assert [n.GetName().rsplit(" ", 1)[-1] for n in cf] == ["t1", "t1ce", "t2", "flair"]
    for node, source in zip(cf, nodes):
        assert np.allclose(bridge.node_to_volume(node).array, bridge.node_to_volume(source).array + 0.5)
        assert np.array_equal(bridge.ijk_to_ras_of(node), bridge.ijk_to_ras_of(source))
    difference = out["heatmap"]
    assert difference.GetAttribute("MedXAI.Role") == "counterfactual-difference"
    assert np.allclose(bridge.node_to_volume(difference).array, 0.5)
    series = out["series"]
    assert series["sequence"].GetNumberOfDataNodes() == 3 and series["proxy"].GetScene() is scene
    # sedc has no series, and a cancelled or failed counterfactual leaves no node behind
    sedc = flow.start_explain(nodes, "demo-brain-tumour", method="sedc").wait()
    assert sedc["series"] is None and "--series" not in calls(Path(flow.temp_root).parent)[-1]["argv"]
    before = scene.GetNumberOfNodes()
    task = flow.start_explain(nodes, "slow", method="counterfactual")
    task.cancel()
    assert scene.GetNumberOfNodes() == before > n_before and leftover_dirs(Path(flow.temp_root)) == []


def test_shap_plot_card_and_domain_warning_come_back(scene, flow):
    nodes = brain_nodes(scene)
    out = flow.start_explain(nodes, "odd-domain", method="kernelshap", shap_plot=True).wait()
    assert out["shap_plot_png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert out["domain_warning"] == "spacing 0.5 mm, trained on 2 mm" and out["card"]["version"] == "3"
    assert "--shap-plot" in calls(Path(flow.temp_root).parent)[-1]["argv"]
    plain = flow.start_explain(nodes, "demo-brain-tumour", method="gradcam", shap_plot=True).wait()
    assert "shap_plot_png" not in plain and plain["domain_warning"] is None  # no shap values: no plot asked for
    assert "--shap-plot" not in calls(Path(flow.temp_root).parent)[-1]["argv"]
    seg = flow.start_segment(nodes, "classes-sidecar").wait()
    assert segment_names(seg["segmentation"]) == ["liver", "kidney"]  # the names of the model that ran
    assert seg["card"] == {"name": "part 1", "version": "2"}


def test_model_and_method_lists_are_read_in_the_background_and_kept(scene, flow, monkeypatch):
    monkeypatch.setenv("FAKE_CLI_SLOW_LIST", "1.0")
    monkeypatch.setattr("MedXAILogicLib.logic.model._CACHE", [])
    logic = MedXAILogicBase(scene=scene, commandPrefix=flow.command_prefix)
    logic._workflow = flow
    start = time.monotonic()
    assert logic.startCatalogRefresh() is True
    assert time.monotonic() - start < 0.8, "opening the panel must not wait for the lists"
    models, note = logic.currentModels()  # meanwhile: the built-in models, from their description files
    assert {m.name for m in models} == {"demo-brain-tumour", "demo-chest-xray"} and note is None
    assert logic.pollCatalog() is False
    deadline = time.monotonic() + 30
    while not logic.pollCatalog() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m.name for m in logic.currentModels()[0]][:2] == ["demo-brain-tumour", "monai:spleen_ct_segmentation"]
    assert sorted(logic.listMethods()) == ["gradcam", "ig"]
    n_calls = len(calls(Path(flow.temp_root).parent))
    other = MedXAILogicBase(scene=scene, commandPrefix=flow.command_prefix)  # the panel opened again
    assert other.startCatalogRefresh() is False and len(calls(Path(flow.temp_root).parent)) == n_calls
    assert other.startCatalogRefresh(force=True) is True  # Refresh reads them again
    other.catalog.cancel()


@pytest.mark.parametrize("command", ["evaluate", "explain"])
def test_evaluate_and_estimate_are_cancellable_background_jobs(scene, flow, monkeypatch, command):
    monkeypatch.setenv("FAKE_CLI_SLOW", command)
    logic = MedXAILogicBase(scene=scene)
    logic._workflow = flow
    nodes = brain_nodes(scene)
    seg = bridge.labelmap_to_segmentation(scene, bridge.node_to_volume(nodes[0]).with_array(
        (bridge.node_to_volume(nodes[0]).array > 0.5).astype(np.int16)), nodes[0], {1: "x"})
    slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)  # as in the application
    n_before = scene.GetNumberOfNodes()
    start = time.monotonic()
    task = logic.evaluate(seg, seg, nodes[0]) if command == "evaluate" else logic.startEstimate(nodes)
    assert time.monotonic() - start < 5 and not task.finished  # returned at once, still running
    deadline = time.monotonic() + 20
    while task.fraction < 0.5 and time.monotonic() < deadline:
        task.process_events()
        time.sleep(0.02)
    task.cancel()
    assert task.status == "cancelled" and scene.GetNumberOfNodes() == n_before
    assert leftover_dirs(Path(flow.temp_root)) == []
    with pytest.raises(CancelledError):
        task.wait()


class _RecordingRunner:
    """Records each command line and ends the job at once (nothing runs)."""

    def __init__(self) -> None:
        self.argv: list[list[str]] = []

    def start(self, args, cwd=None, env=None):
        self.argv.append([str(a) for a in args])
        runner = self

        class _Job:
            def events(self):
                return []

            def is_running(self):
                return False

            def cancel(self):
                pass

            def wait(self, timeout=None):
                return JobResult(returncode=0, cancelled=True)

        runner.last = _Job()
        return runner.last


def test_every_command_line_the_panel_builds_is_accepted_by_the_real_cli(scene, tmp_path):
    """Parsed with ``MedXAILib.cli.build_parser()``: the flags exist, with these values, on each command."""
    from MedXAILogicLib.compare_job import start_compare
    from MedXAILogicLib.report import start_report

    from MedXAILib.cli import build_parser

    runner = _RecordingRunner()
    flow = workflow.Workflow(scene, runner=runner, command_prefix=["python", "-m", "MedXAILib"], temp_root=tmp_path)
    nodes = brain_nodes(scene)
    seg = bridge.labelmap_to_segmentation(scene, bridge.node_to_volume(nodes[0]).with_array(
        (bridge.node_to_volume(nodes[0]).array > 0.5).astype(np.int16)), nodes[0], {1: "liver"})
    total = catalog.ModelEntry("totalsegmentator:total", "totalsegmentator", "segmentation", 3, ["CT"],
                               ["background", "liver", "spleen"], {"parts": ["Dataset291_x", "Dataset292_y"]})
    builtin = catalog.builtin_entries()[0]
    heat = bridge.add_heatmap_node(scene, bridge.node_to_volume(nodes[0]), nodes[0])
    options = catalog.ModelOptions(folds="0,1", checkpoint="best", mirroring=False, fast=True, organ="liver")
    point = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    point.AddControlPoint([10.0, -20.0, 5.0])
    tasks = [
        flow.start_segment(nodes, total.name, extra_args=options.arguments("segment", total)),
        flow.start_classify(nodes, "demo-chest-xray", extra_args=options.arguments("classify", builtin)),
        flow.start_explain(nodes, total.name, method="lrp", target="liver",
                           method_args=["--param", "epsilon=1e-05"] + options.arguments("explain", total)),
        flow.start_explain(nodes, total.name, method="counterfactual", region=(seg, "liver")),
        flow.start_explain(nodes, total.name, method="partitionshap", voxel=(1, 2, 3), shap_plot=True),
        flow.start_estimate(nodes, total.name, method="occlusion", target="liver"),
        flow.start_evaluate(seg, seg, nodes[0]),
        flow.start_quality(heat, nodes, total.name, seg, "liver", slow=True),
        start_compare(flow, nodes, total.name, "gradcam,lrp", target="liver",
                      extra_args=options.arguments("compare", total)),
        start_report(flow, nodes, total.name, tmp_path / "case.html", method="gradcam", target="liver",
                     reference=seg, extra_args=options.arguments("report", total)),
    ]
    parser = build_parser()
    commands = []
    for argv in runner.argv:
        assert argv[:3] == ["python", "-m", "MedXAILib"]
        parsed = parser.parse_args(argv[3:])  # SystemExit on an unknown flag or value
        commands.append(parsed.command)
    assert {"segment", "classify", "explain", "evaluate", "compare", "report"} <= set(commands)
    segment = runner.argv[0]
    assert segment[segment.index("--target") + 1] == "liver" and "--fast" in segment
    from MedXAILib.commands.common import model_options

    options_seen = model_options(parser.parse_args(segment[3:]))  # what the core's loader gets
    assert options_seen["target"] == "liver" and options_seen["fast"] and options_seen["tta"] is False
    assert options_seen["checkpoint"] == "best" and options_seen["folds"] == [0, 1]
    assert segment[segment.index("--folds") + 1] == "0,1" and "tta=false" in segment
    assert "--folds" not in runner.argv[1]  # not an nnU-Net model: no nnU-Net flags
    for task in tasks:
        task.cancel()
    assert leftover_dirs(tmp_path) == []


def _totalsegmentator_weights(root: Path) -> None:
    """TotalSegmentator's layout (results folders per dataset id), with just the JSON the catalogue reads."""
    import json

    parts = {291: ["spleen", "liver"], 292: ["vertebrae_L1"], 293: ["heart"], 294: ["humerus_left"], 295: ["rib_1"]}
    for dataset, classes in parts.items():
        folder = root / f"Dataset{dataset}_TotalSegmentator_part" / "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
        (folder / "fold_0").mkdir(parents=True)
        (folder / "plans.json").write_text("{}")
        labels = {"background": 0, **{name: i + 1 for i, name in enumerate(classes)}}
        (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": labels}))


def test_totalsegmentator_tasks_are_found_where_slicertotalsegmentator_keeps_them(scene, tmp_path):
    """``~/.totalsegmentator`` (TotalSegmentator's default home) and the weights folder SlicerTotalSegmentator sets in
    ``TOTALSEG_WEIGHTS_PATH``: the real ``models --json`` lists the task, and the panel offers its organs."""
    import os

    from MedXAILogicLib.workflow_catalog import models_from_task

    tasks = []
    for where in ("home", "TOTALSEG_WEIGHTS_PATH"):
        home = tmp_path / where / "home"
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("TOTALSEG", "nnUNet"))}
        environment["HOME"] = str(home)
        if where == "home":
            _totalsegmentator_weights(home / ".totalsegmentator" / "nnunet" / "results")
        else:
            _totalsegmentator_weights(tmp_path / where / "weights")
            environment["TOTALSEG_WEIGHTS_PATH"] = str(tmp_path / where / "weights")
        flow = workflow.Workflow(scene, command_prefix=[sys.executable, "-m", "MedXAILib"], temp_root=tmp_path,
                                 environment=environment)
        tasks.append(flow.start_list_models())  # both children run at once
    for task in tasks:
        task.wait(timeout=120)
        models, note = models_from_task(task)
        assert note is None
        total = next(m for m in models if m.name == "totalsegmentator:total")
        assert total.display_name == "total" and total.is_nnunet and total.needs_class_target
        assert {"liver", "spleen", "heart"} <= set(total.target_classes()) and total.channels == ["CT"]
    options = catalog.ModelOptions(organ="liver", mirroring=False)
    assert options.arguments("segment", total) == ["--param", "tta=false", "--target", "liver"]
