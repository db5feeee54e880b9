"""The Slicer panel's Compare action (bridge layer): the real ``compare`` CLI in the background, results as nodes."""

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
from MedXAILogicLib.compare_job import start_compare  # noqa: E402

from MedXAILib.errors import InputError  # noqa: E402
from MedXAILib.volume import Volume, make_ijk_to_ras  # noqa: E402


def test_compare_job_makes_consensus_agreement_and_table_nodes(tmp_path):
    from helpers import save_model, tiny_classifier

    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("slicer-core is not installed")
    scene = slicer.vtkMRMLScene()
    folder = save_model(tiny_classifier(), tmp_path / "model")
    matrix = make_ijk_to_ras(spacing=(0.7, 0.7, 1.0), origin=(5.0, -3.0, 0.0))
    image = np.random.default_rng(0).random((1, 1, 32, 32)).astype(np.float32)
    node = bridge.add_volume_node(scene, Volume(image, matrix), "xray", channel=None)
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    flow = workflow.Workflow(scene, command_prefix=[sys.executable, "-m", "MedXAILib"], temp_root=temp_root)
    with pytest.raises(InputError, match="at least two methods"):
        start_compare(flow, [node], str(folder), "gradcam")
    out = start_compare(flow, [node], str(folder), "gradcam,saliency", target="f1", show=False).wait()
    assert out["report"]["methods"] == ["gradcam", "saliency"]
    for key in ("heatmap", "agreement_map"):
        assert np.array_equal(bridge.ijk_to_ras_of(out[key]), bridge.ijk_to_ras_of(node))
    consensus = bridge.node_to_volume(out["heatmap"]).array
    assert consensus.shape == image.shape and 0.0 <= consensus.min() and consensus.max() <= 1.0
    columns, rows = bridge.table_to_rows(out["table"])
    assert columns[:2] == ["method", "ρ to consensus"] and [r[0] for r in rows] == ["gradcam", "saliency"]
    assert rows[0][columns.index("ρ gradcam")] == pytest.approx(1.0)
    assert list(temp_root.iterdir()) == []  # the job's folder is gone
    assert np.array_equal(bridge.node_to_volume(node).array, image)  # the input is untouched
