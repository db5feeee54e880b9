"""The Slicer module's case-report job, with the real ``python -m MedXAILib report`` in a background process."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "MedXAI"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

slicer = pytest.importorskip("slicer")

from MedXAILogicLib import bridge, workflow  # noqa: E402
from MedXAILogicLib.report import start_report  # noqa: E402

from MedXAILib.errors import InputError  # noqa: E402
from MedXAILib.phantoms import make_chest_phantom  # noqa: E402


def test_report_job_writes_html_and_pdf_and_leaves_the_scene_alone(tmp_path):
    scene = slicer.vtkMRMLScene()
    phantom = make_chest_phantom(seed=2, findings=(0, 1, 1))
    node = bridge.add_volume_node(scene, phantom.image, "chest", channel=None)
    before = bridge.node_to_volume(node).array.copy()
    n_nodes = scene.GetNumberOfNodes()
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    flow = workflow.Workflow(scene, command_prefix=[sys.executable, "-m", "MedXAILib"], temp_root=temp_root)
    out = start_report(flow, [node], "demo-chest-xray", tmp_path / "reports" / "chest.html", quality="none").wait(
        timeout=300)
    assert out["html"].exists() and out["pdf"].read_bytes().startswith(b"%PDF")
    html = out["html"].read_text()
    assert "MedXAI case report: chest" in html and "cardiomegaly" in html and "Not for diagnostic use" in html
    assert scene.GetNumberOfNodes() == n_nodes
    assert np.array_equal(bridge.node_to_volume(node).array, before)
    assert [p for p in temp_root.iterdir()] == []
    with pytest.raises(InputError, match=r"\.html"):
        start_report(flow, [node], "demo-chest-xray", tmp_path / "chest.pdf")
