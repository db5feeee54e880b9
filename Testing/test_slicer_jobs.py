"""The background job runner and the Qt-free workflow, with real subprocesses (no Qt, no model needed).

The child processes are small Python scripts written by the tests: one that reports progress and writes a file
atomically, one that starts a grandchild and waits (to be cancelled), one that fails like the CLI does, and a
stand-in for ``python -m MedXAILib`` that writes the files the real commands write.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "MedXAI"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import slicer  # noqa: E402
from MedXAILogicLib import bridge, jobs, workflow  # noqa: E402

from MedXAILib.errors import CancelledError, InputError  # noqa: E402
from MedXAILib.volume import Volume, make_ijk_to_ras  # noqa: E402

PROGRESS_SCRIPT = """
import json, os, sys, time
out = sys.argv[1]
for i, stage in enumerate(["loading", "inference", "writing"]):
    print(json.dumps({"stage": stage, "progress": (i + 1) / 3}), flush=True)
    print("a plain log line", flush=True)
    time.sleep(0.05)
tmp = out + ".part"
with open(tmp, "w") as f:
    f.write("done")
os.replace(tmp, out)
print("warning: something mild", file=sys.stderr, flush=True)
"""

TREE_SCRIPT = """
import subprocess, sys, time, json
pids = sys.argv[1]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(pids, "w") as f:
    f.write(f"{child.pid}")
print(json.dumps({"stage": "working", "progress": 0.1}), flush=True)
time.sleep(60)
"""

FAIL_SCRIPT = """
import sys, json
print(json.dumps({"stage": "loading", "progress": 0.0}), flush=True)
print("some context", file=sys.stderr)
print("error: input_0_t1.nii.gz has 12 NaN or infinite voxels (channel t1); fix or mask them", file=sys.stderr)
sys.exit(2)
"""

# A stand-in for `python -m MedXAILib`, speaking its flags and writing the files its commands write.
FAKE_CLI = """
import argparse, json, os, sys, time
import numpy as np
from MedXAILib.io import read_image, read_volume, write_volume, write_json

p = argparse.ArgumentParser()
p.add_argument("command")
p.add_argument("--model"); p.add_argument("--input", action="append"); p.add_argument("--output")
p.add_argument("--method"); p.add_argument("--target"); p.add_argument("--region"); p.add_argument("--voxel")
p.add_argument("--dry-run", action="store_true"); p.add_argument("--progress")
p.add_argument("--prediction"); p.add_argument("--reference"); p.add_argument("--labels")
p.add_argument("--json", action="store_true"); p.add_argument("--threshold")
p.add_argument("--layer"); p.add_argument("--device", default="cpu"); p.add_argument("--param", action="append")
p.add_argument("--counterfactual"); p.add_argument("--series"); p.add_argument("--shap-plot")
p.add_argument("--folds"); p.add_argument("--checkpoint"); p.add_argument("--fast", action="store_true")
a = p.parse_args()
log = os.environ.get("FAKE_CLI_LOG")
if log:
    with open(log, "a") as f:
        f.write(json.dumps({"argv": sys.argv[1:], "device": a.device, "env_device": os.environ.get("MEDXAI_DEVICE"),
                            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\\n")
if os.environ.get("FAKE_CLI_OOM") and a.device == "cuda":
    print("error: CUDA out of memory (tried to allocate 2.00 GiB); choose the CPU", file=sys.stderr)
    sys.exit(2)
if os.environ.get("FAKE_CLI_SLOW_LIST") and a.command in ("models", "methods"):
    time.sleep(float(os.environ["FAKE_CLI_SLOW_LIST"]))
if a.command == "models":
    if os.environ.get("FAKE_CLI_OLD_CORE"):
        print("usage: MedXAILib ...", file=sys.stderr)
        print("MedXAILib: error: argument command: invalid choice: 'models' (choose from 'segment', 'explain')",
              file=sys.stderr)
        sys.exit(2)
    print(json.dumps({"models": [
        {"name": "demo-brain-tumour", "source": "builtin", "task": "segmentation", "spatial_dims": 3,
         "channels": ["t1", "t1ce", "t2", "flair"],
         "classes": ["background", "necrotic core", "oedema", "enhancing rim"],
         "card": {"name": "demo-brain-tumour", "version": "1", "training_data": "synthetic phantoms",
                  "intended_use": "demonstration only"}},
        {"name": "monai:spleen_ct_segmentation", "source": "zoo", "task": "segmentation", "spatial_dims": 3,
         "channels": ["ct"], "classes": ["background", "spleen"], "card": {}},
        {"name": "five-inputs", "source": "file", "task": "classification", "spatial_dims": 3,
         "channels": ["t1", "t1ce", "t2", "flair", "dwi"], "classes": ["low grade", "high grade"], "card": {}},
        {"name": "broken", "task": "regression"}]}))
    sys.exit(0)
if a.command == "methods":
    print(json.dumps({"methods": [{"name": "gradcam", "dims": [2, 3], "tasks": ["classification", "segmentation"],
                                   "params": {"layer": ""}},
                                  {"name": "ig", "dims": [2, 3], "tasks": ["segmentation"],
                                   "params": {"steps": 32, "baseline": "zeros", "internal_batch_size": 8}}]}))
    sys.exit(0)
if a.model == "missing-model":
    print("error: unknown model 'missing-model'; choose demo-brain-tumour or demo-chest-xray", file=sys.stderr)
    sys.exit(2)
def progress(f, stage):
    if a.progress == "json":
        print(json.dumps({"stage": stage, "progress": f}), flush=True)
if a.command in ("segment", "explain", "evaluate"):
    progress(0.5, "inference")
    if a.model == "slow" or os.environ.get("FAKE_CLI_SLOW") == a.command:
        time.sleep(60)
if a.command in ("segment", "explain"):
    vol = read_volume(a.input)
if a.command == "segment":
    t1 = vol.array[0]
    labels = np.zeros(t1.shape, np.int16)
    labels[t1 > 0.5] = 2
    labels[t1 > 1.5] = 1
    write_volume(vol.with_array(labels[None]), a.output)
    if a.model == "with-terminology":
        write_json({"class_names": ["background", "core", "swelling"], "terminology": {
            "swelling": {"category": ["SCT", "49755003", "Morphologically Altered Structure"],
                         "type": ["SCT", "79654002", "Edema"]}}}, a.output + ".json")
    elif a.model == "classes-sidecar":
        write_json({"classes": {"background": {"label": 0}, "kidney": {"label": 2}, "liver": {"label": 1}},
                    "card": {"name": "part 1", "version": "2"}}, a.output + ".json")
    elif a.model == "odd-domain":
        write_json({"card": {"name": "odd", "version": "3"}, "domain_warning": "spacing 0.5 mm, trained on 2 mm"},
                   a.output + ".json")
elif a.command == "explain" and a.dry_run:
    est = {"method": a.method, "forward_passes": 1, "backward_passes": 1, "estimated_seconds": 0.25,
           "estimated_peak_memory_bytes": 3 * 2**20}
    print(json.dumps(est, indent=None if a.progress == "json" else 2))
elif a.command == "explain":
    heat = vol.array.mean(axis=0).astype(np.float32)
    if a.region:
        heat = heat * (read_image(a.region).array[0] > 0)
    names = ["t1", "t1ce", "t2", "flair"][: vol.n_channels]
    sidecar = {"cost": {"forward_passes": 1, "backward_passes": 1},
               "channel_importance": {"overall": {n: 0.25 for n in names},
                                      "inside_target": {n: (i + 1) / 10 for i, n in enumerate(names)}}}
    if a.counterfactual:  # one file per channel (stem + _CHANNEL), like the real command
        stem = a.counterfactual[: -len(".nii.gz")]
        sidecar["counterfactual_channels"] = names
        sidecar["counterfactual_files"] = [f"{stem}_{n}.nii.gz" for n in names]
        for c, path in enumerate(sidecar["counterfactual_files"]):
            write_volume(vol.channel(c).with_array(vol.array[c:c + 1] + 0.5), path)
        heat = (0.5 * np.ones_like(vol.array[0])).astype(np.float32)  # the difference: counterfactual - input
    if a.series:
        os.makedirs(a.series, exist_ok=True)
        sidecar["series_files"] = []
        for step in range(3):
            files = [os.path.join(a.series, f"step{step:02d}_{n}.nii.gz") for n in names]
            for c, path in enumerate(files):
                write_volume(vol.channel(c).with_array(vol.array[c:c + 1] + 0.25 * step), path)
            sidecar["series_files"].append(files)
    if a.shap_plot:
        from PIL import Image
        Image.new("RGB", (40, 20), (200, 30, 30)).save(a.shap_plot)
    if a.model == "odd-domain":
        sidecar.update(card={"name": "odd", "version": "3"}, domain_warning="spacing 0.5 mm, trained on 2 mm")
    write_volume(vol.with_array(heat[None]), a.output)
    write_json(sidecar, a.output + ".json")
elif a.command == "classify":
    write_json({"probabilities": {"low grade": 0.2, "high grade": 0.8}}, a.output)
elif a.command == "evaluate":
    pred = read_image(a.prediction).array[0]; ref = read_image(a.reference).array[0]
    out = {"labels": {}}
    for lab in a.labels.split(","):
        x, y = pred == int(lab), ref == int(lab)
        inter = float((x & y).sum())
        out["labels"][lab] = {"dice": 2 * inter / max(x.sum() + y.sum(), 1), "iou": inter / max((x | y).sum(), 1),
                              "hd95_mm": 0.0, "volume_ml_prediction": float(x.sum()) / 1000,
                              "volume_ml_reference": float(y.sum()) / 1000}
    write_json(out, a.output)
progress(1.0, "done")
"""


def write_script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie waiting for its parent counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


# ---- the runner ----------------------------------------------------------------------------------------------------
def test_parse_progress_accepts_only_progress_objects():
    assert jobs.parse_progress('{"stage": "inference", "progress": 0.42}') == (0.42, "inference")
    assert jobs.parse_progress('{"progress": 1.7}') == (1.0, "")
    for line in ("", "plain text", '{"stage": "x"}', "{not json}", '{"progress": "abc"}', "[1, 2]"):
        assert jobs.parse_progress(line) is None


def test_error_message_prefers_the_cli_error_line():
    assert jobs.error_message(["Traceback", "error: bad input"], 2) == "bad input"
    assert "ValueError: boom" in jobs.error_message(["Traceback (most recent call last):", "ValueError: boom"], 1)
    assert "exit status 3" in jobs.error_message([], 3)
    assert jobs.is_out_of_memory("CUDA out of memory. Tried to allocate 2 GiB")
    assert not jobs.is_out_of_memory("file not found")


def test_progress_is_parsed_and_output_written(tmp_path):
    script = write_script(tmp_path, "progress.py", PROGRESS_SCRIPT)
    out = tmp_path / "out.txt"
    job = jobs.SubprocessJobRunner().start([sys.executable, str(script), str(out)])
    events: list[jobs.JobEvent] = []
    deadline = time.monotonic() + 20
    while job.is_running() and time.monotonic() < deadline:
        events += job.events()
        time.sleep(0.02)
    result = job.wait(10)
    events += job.events()
    assert result is not None and result.ok and result.error is None
    progress = [(e.fraction, e.stage) for e in events if e.kind == "progress"]
    assert progress == [(pytest.approx(1 / 3), "loading"), (pytest.approx(2 / 3), "inference"), (1.0, "writing")]
    logs = [e.text for e in events if e.kind == "log"]
    assert logs.count("a plain log line") == 3 and "warning: something mild" in logs
    assert result.stdout == ["a plain log line"] * 3 and result.stderr == ["warning: something mild"]
    assert events[-1].kind == "finished"
    assert out.read_text() == "done" and not (tmp_path / "out.txt.part").exists()


def test_failure_comes_back_as_the_one_line_message(tmp_path):
    script = write_script(tmp_path, "fail.py", FAIL_SCRIPT)
    result = jobs.SubprocessJobRunner().start([sys.executable, str(script)]).wait(20)
    assert result is not None and not result.ok and result.returncode == 2
    assert result.error == "input_0_t1.nii.gz has 12 NaN or infinite voxels (channel t1); fix or mask them"


@pytest.mark.skipif(os.name == "nt", reason="process-group check uses POSIX signals")
def test_cancel_kills_the_whole_process_tree(tmp_path):
    script = write_script(tmp_path, "tree.py", TREE_SCRIPT)
    pids = tmp_path / "pids.txt"
    job = jobs.SubprocessJobRunner().start([sys.executable, str(script), str(pids)])
    deadline = time.monotonic() + 20
    while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild = int(pids.read_text())
    child = job.process.pid
    assert pid_alive(child) and pid_alive(grandchild)
    start = time.monotonic()
    job.cancel()
    assert time.monotonic() - start < jobs.TERMINATE_GRACE_S + 3
    result = job.wait(5)
    assert result is not None and result.cancelled and result.error is None and not result.ok
    deadline = time.monotonic() + 5
    while pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(child) and not pid_alive(grandchild)


# ---- the workflow, with a stand-in CLI ---------------------------------------------------------------------------
@pytest.fixture
def scene() -> slicer.vtkMRMLScene:
    return slicer.vtkMRMLScene()


@pytest.fixture
def cli(tmp_path, monkeypatch) -> list[str]:
    script = write_script(tmp_path, "fake_cli.py", FAKE_CLI)
    monkeypatch.setenv("FAKE_CLI_LOG", str(tmp_path / "calls.jsonl"))
    return [sys.executable, str(script)]


def brain_nodes(scene: slicer.vtkMRMLScene) -> list:
    """Four channels on an oblique, anisotropic grid; t1 holds a two-level 'tumour'."""
    matrix = make_ijk_to_ras(spacing=(1.2, 0.9, 2.5), origin=(10.0, -20.0, 5.0),
                             direction=np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    t1 = np.zeros((6, 8, 10), np.float32)
    t1[2:5, 2:6, 3:8] = 1.0
    t1[3, 3:5, 4:6] = 2.0
    nodes = []
    for c, name in enumerate(["t1", "t1ce", "t2", "flair"]):
        nodes.append(bridge.add_volume_node(scene, Volume((t1 + c)[None], matrix), name, channel=None))
    return nodes


def calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def leftover_dirs(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.name.startswith("MedXAI-")]


def test_segment_explain_evaluate_through_the_workflow(scene, cli, tmp_path):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=temp_root)
    nodes = brain_nodes(scene)
    before = {n.GetID(): bridge.node_to_volume(n).array.copy() for n in nodes}

    seg = flow.start_segment(nodes, "demo-brain-tumour").wait()["segmentation"]
    names = [seg.GetSegmentation().GetSegment(s).GetName() for s in bridge.segment_ids(seg)]
    assert names == ["necrotic core", "oedema"]
    oedema = bridge.segment_to_mask(seg, "oedema", nodes[0]).array[0]
    assert int(oedema.sum()) == 3 * 4 * 5 - 4

    task = flow.start_explain(nodes, "demo-brain-tumour", region=(seg, "oedema"), method_args="--layer enc.2")
    seen: list[float] = []
    task.listeners.append(lambda t, e: seen.append(e.fraction) if e.kind == "progress" else None)
    out = task.wait()
    assert seen and seen[-1] == 1.0 and task.status == "done" and task.fraction == 1.0
    heat = out["heatmap"]
    assert np.array_equal(bridge.ijk_to_ras_of(heat), bridge.ijk_to_ras_of(nodes[0]))
    heat_array = bridge.node_to_volume(heat).array[0]
    assert np.all(heat_array[oedema == 0] == 0) and heat_array.max() > 0  # the region reached the CLI
    assert out["overlay"].IsA("vtkMRMLLabelMapVolumeNode")
    cols, rows = bridge.table_to_rows(out["importance"])
    assert cols == ["sequence", "overall", "inside target"]
    assert [r[0] for r in rows] == ["t1", "t1ce", "t2", "flair"] and rows[3][2] == pytest.approx(0.4)
    assert out["cost"]["forward_passes"] == 1
    argv = calls(tmp_path)[-1]["argv"]
    assert argv[0] == "explain" and argv.count("--input") == 4 and "--region" in argv
    assert argv[argv.index("--layer") + 1] == "enc.2" and argv[argv.index("--progress") + 1] == "json"

    reference = bridge.labelmap_to_segmentation(
        scene, bridge.segmentation_to_labelmap(seg, nodes[0]), nodes[0], {1: "necrotic core", 2: "oedema"},
        name="truth")
    ev = flow.start_evaluate(seg, reference, nodes[0]).wait()
    columns, rows = bridge.table_to_rows(ev["table"])
    assert columns[:3] == ["segment", "Dice", "IoU"]
    assert sorted(r[0] for r in rows) == ["necrotic core", "oedema"]
    assert all(r[1] == pytest.approx(1.0) for r in rows)

    cost = flow.start_estimate(nodes, "demo-brain-tumour", target="oedema").wait()
    assert cost["cost"]["forward_passes"] == 1
    assert cost["text"] == "gradcam, 1 forward passes, 1 backward passes, about 0.2 s, 3 MiB peak memory"
    assert "--dry-run" in calls(tmp_path)[-1]["argv"]

    # inputs untouched, temporary folders gone, CPU hidden from the GPU-less child
    for n in nodes:
        assert np.array_equal(bridge.node_to_volume(n).array, before[n.GetID()])
    assert leftover_dirs(temp_root) == []
    assert all(c["cuda"] == "" and c["env_device"] == "cpu" for c in calls(tmp_path))
    assert all(c["device"] == "cpu" for c in calls(tmp_path) if c["argv"][0] != "evaluate")
    assert "--device" not in calls(tmp_path)[2]["argv"]  # evaluate takes no device


def test_cli_error_comes_back_and_leaves_nothing(scene, cli, tmp_path):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=temp_root)
    nodes = brain_nodes(scene)
    n_before = scene.GetNumberOfNodes()
    task = flow.start_segment(nodes, "missing-model")
    with pytest.raises(workflow.JobFailedError, match="unknown model 'missing-model'"):
        task.wait()
    assert task.status == "failed" and scene.GetNumberOfNodes() == n_before
    assert leftover_dirs(temp_root) == []


@pytest.mark.skipif(os.name == "nt", reason="process-group check uses POSIX signals")
def test_cancel_removes_temp_folder_and_creates_no_node(scene, cli, tmp_path):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=temp_root)
    nodes = brain_nodes(scene)
    n_before = scene.GetNumberOfNodes()
    task = flow.start_explain(nodes, "slow")
    deadline = time.monotonic() + 20
    while task.fraction < 0.5 and time.monotonic() < deadline:  # wait until it is really working
        task.process_events()
        time.sleep(0.02)
    assert task.stage == "inference"
    task.cancel()
    assert task.status == "cancelled" and scene.GetNumberOfNodes() == n_before
    assert leftover_dirs(temp_root) == []
    with pytest.raises(CancelledError):
        task.wait()


def test_gpu_out_of_memory_falls_back_to_cpu(scene, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_CLI_OOM", "1")
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=tmp_path)
    task = flow.start_segment(brain_nodes(scene), "demo-brain-tumour", device="cuda")
    task.wait()
    assert task.device == "cpu" and any("running again on the CPU" in line for line in task.log)
    assert [c["device"] for c in calls(tmp_path)] == ["cuda", "cpu"]


def test_inputs_on_different_grids_are_refused_before_anything_runs(scene, cli, tmp_path):
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=tmp_path)
    nodes = brain_nodes(scene)
    odd = bridge.add_volume_node(scene, Volume(np.zeros((1, 6, 8, 11), np.float32)), "flair_resampled",
                                 channel=None)
    with pytest.raises(InputError, match="flair_resampled"):
        flow.start_segment(nodes[:3] + [odd], "demo-brain-tumour")
    assert leftover_dirs(tmp_path) == [] and not (tmp_path / "calls.jsonl").exists()


def test_channel_matching_from_node_names():
    channels = ["t1", "t1ce", "t2", "flair"]
    names = ["BraTS_001_flair", "BraTS_001_t1ce", "BraTS_001_t2", "BraTS_001_t1", "MRHead"]
    assert workflow.match_channels(channels, names) == [3, 1, 2, 0]
    assert workflow.match_channels(channels, ["T1 post-contrast", "T1", "T2-FLAIR", "T2w"]) == [1, 0, 3, 2]
    assert workflow.match_channels(channels, ["CT"]) == [None, None, None, None]


def test_child_environment_makes_the_core_importable():
    env = workflow.child_environment("cuda", base={"PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]
    assert env["MEDXAI_DEVICE"] == "cuda" and "CUDA_VISIBLE_DEVICES" not in env
    assert workflow.child_environment("cpu", base={})["CUDA_VISIBLE_DEVICES"] == ""


# ---- what the panel offers, terminology, progress flags --------------------------------------------------------------
def test_model_list_comes_from_the_cli_and_falls_back_on_an_old_core(scene, cli, tmp_path, monkeypatch):
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=tmp_path)
    models, note = flow.list_models()
    assert note is None
    assert [m.name for m in models] == ["demo-brain-tumour", "monai:spleen_ct_segmentation", "five-inputs"]
    five = models[2]
    assert five.is_classification and five.channels == ["t1", "t1ce", "t2", "flair", "dwi"]
    assert models[0].target_classes() == ["necrotic core", "oedema", "enhancing rim"]
    assert "trained on: synthetic phantoms" in models[0].summary() and "source: builtin" in models[0].summary()
    monkeypatch.setenv("FAKE_CLI_OLD_CORE", "1")
    models, note = flow.list_models()
    assert note and "no `models` command" in note
    assert {"demo-brain-tumour", "demo-chest-xray"} <= {m.name for m in models}
    assert all(m.source == "builtin" for m in models)
    assert next(m for m in models if m.name == "demo-chest-xray").task == "classification"
    assert leftover_dirs(tmp_path) == []


def test_method_list_comes_from_the_cli(scene, cli, tmp_path):
    methods = workflow.Workflow(scene, command_prefix=cli, temp_root=tmp_path).list_methods()
    assert sorted(methods) == ["gradcam", "ig"] and methods["ig"]["params"]["steps"] == 32


@pytest.mark.slow
def test_a_model_file_is_described_by_the_core_loader(scene, tmp_path):
    """The real core loads a model file in a child and reports its task (a classification model is not segmented)."""
    builtin = ROOT / "MedXAILib" / "builtin_models"
    model = tmp_path / "my classifier"
    model.mkdir()
    for suffix in (".json", ".pt"):
        (model / f"demo-chest-xray{suffix}").write_bytes((builtin / f"demo-chest-xray{suffix}").read_bytes())
    flow = workflow.Workflow(scene, command_prefix=[sys.executable, "-m", "MedXAILib"], temp_root=tmp_path)
    entry = flow.describe_model(str(model / "demo-chest-xray.json"))
    assert entry.task == "classification" and entry.is_classification
    assert entry.channels == ["xray"] and entry.spatial_dims == 2 and "effusion" in entry.classes
    with pytest.raises(workflow.JobFailedError) as failed:
        flow.describe_model(str(tmp_path / "nothing-here.pt"))
    assert "\n" not in str(failed.value) and "Traceback" not in str(failed.value)


def test_predicted_segments_get_terminology(scene, cli, tmp_path):
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=tmp_path)
    nodes = brain_nodes(scene)
    seg = flow.start_segment(nodes, "demo-brain-tumour").wait()["segmentation"]
    assert seg.GetAttribute("MedXAI.Role") == "prediction"
    by_name = {seg.GetSegmentation().GetSegment(s).GetName(): seg.GetSegmentation().GetSegment(s)
               for s in bridge.segment_ids(seg)}
    oedema = bridge.segment_terminology(by_name["oedema"])
    assert "SCT^79654002^Edema" in oedema and len(oedema.split("~")) == 7
    assert "SCT^6574001^Necrosis" in bridge.segment_terminology(by_name["necrotic core"])
    # the segment sidecar's terminology wins (issue 16's contract)
    seg = flow.start_segment(nodes, "with-terminology").wait()["segmentation"]
    names = {seg.GetSegmentation().GetSegment(s).GetName(): s for s in bridge.segment_ids(seg)}
    entry = bridge.segment_terminology(seg.GetSegmentation().GetSegment(names["swelling"]))
    assert entry.split("~")[1:3] == ["SCT^49755003^Morphologically Altered Structure", "SCT^79654002^Edema"]
    # a class nobody knows gets Slicer's own default (Tissue)
    assert "SCT^85756007^Tissue" in bridge.segment_terminology(seg.GetSegmentation().GetSegment(names["core"]))


def test_segments_are_named_after_the_models_classes(scene, cli, tmp_path):
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=tmp_path)
    seg = flow.start_segment(brain_nodes(scene), "monai:some_bundle", class_names={1: "core", 2: "swelling"}).wait()
    names = [seg["segmentation"].GetSegmentation().GetSegment(s).GetName()
             for s in bridge.segment_ids(seg["segmentation"])]
    assert names == ["core", "swelling"]


def test_classify_and_evaluate_report_progress(scene, cli, tmp_path):
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=tmp_path)
    nodes = brain_nodes(scene)
    out = flow.start_classify(nodes[0], "five-inputs").wait()
    assert out["scores"] == {"low grade": 0.2, "high grade": 0.8}
    seg = flow.start_segment(nodes, "demo-brain-tumour").wait()["segmentation"]
    flow.start_evaluate(seg, seg, nodes[0]).wait()
    for call in calls(tmp_path):
        if call["argv"][0] in ("classify", "evaluate", "segment"):
            argv = call["argv"]
            assert argv[argv.index("--progress") + 1] == "json", argv
    evaluate = next(c["argv"] for c in calls(tmp_path) if c["argv"][0] == "evaluate")
    assert evaluate[evaluate.index("--labels") + 1] == "1,2"  # one comma-separated value, as the CLI reads it


def test_child_gets_utf8_output():
    assert workflow.child_environment("cpu", base={})["PYTHONIOENCODING"] == "utf-8"


def test_python_command_inside_slicer_is_pythonslicer_not_the_application(tmp_path):
    app = "/opt/Slicer/bin/SlicerApp-real"
    assert jobs.python_command(app, which=lambda n: "/opt/Slicer/bin/PythonSlicer") == ["/opt/Slicer/bin/PythonSlicer"]
    beside = {"/opt/Slicer/bin/PythonSlicer"}
    assert jobs.python_command(app, which=lambda n: None, is_file=beside.__contains__) == [
        "/opt/Slicer/bin/PythonSlicer"]
    with pytest.raises(RuntimeError, match="PythonSlicer"):
        jobs.python_command(app, which=lambda n: None, is_file=lambda p: False)
    assert jobs.python_command("/usr/bin/python3.11", which=lambda n: None) == ["/usr/bin/python3.11"]
    windows = {"C:/Slicer/bin/PythonSlicer.exe"}
    assert jobs.python_command("C:/Slicer/bin/SlicerApp-real.exe", which=lambda n: None,
                               is_file=lambda p: p.replace("\\", "/") in windows)[0].endswith("PythonSlicer.exe")


def test_a_crash_while_making_nodes_is_one_line(scene, cli, tmp_path, monkeypatch):
    flow = workflow.Workflow(scene, command_prefix=cli, temp_root=tmp_path)
    nodes = brain_nodes(scene)

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(bridge, "labelmap_to_segmentation", broken)
    task = flow.start_segment(nodes, "demo-brain-tumour")
    with pytest.raises(workflow.JobFailedError) as failed:
        task.wait()
    assert "\n" not in str(failed.value) and "KeyError" in str(failed.value)
    assert any("Traceback" in line for line in task.log)
