"""``python -m MedXAILib evaluate``: both modes, the model-based hook, and one-line errors with no output file."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from MedXAILib import cli, io
from MedXAILib.volume import Volume, make_ijk_to_ras

REPO = Path(__file__).resolve().parents[1]
GRID = make_ijk_to_ras((0.5, 1.0, 2.0), origin=(4.0, -3.0, 1.0))


def write(tmp: Path, name: str, array: np.ndarray, m: np.ndarray = GRID) -> Path:
    return io.write_volume(Volume(array[None], m), tmp / name)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ref = np.zeros((6, 12, 14), np.int16)
    ref[1:4, 2:7, 3:9] = 1
    ref[2:3, 3:5, 4:6] = 2
    pred = np.roll(ref, 1, axis=2)
    heat = np.zeros(ref.shape, np.float32)
    heat[2, 4, 5] = 1.0
    heat[ref > 0] += 0.5
    return {
        "ref": write(tmp_path, "ref.nii.gz", ref),
        "pred": write(tmp_path, "pred.nii.gz", pred),
        "heat": write(tmp_path, "heat.nii.gz", heat),
        "other_grid": write(tmp_path, "other.nii.gz", pred, make_ijk_to_ras((1.0, 1.0, 2.0))),
    }


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = cli.main(["evaluate", "--progress", "none", *[str(a) for a in args]])
    return rc, capsys.readouterr().err


def test_segmentation_mode(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seg.json"
    rc, err = run_cli(
        ["--prediction", files["pred"], "--reference", files["ref"], "--region", "whole=1,2", "--output", out], capsys
    )
    assert rc == 0, err
    data = json.loads(out.read_text())
    assert list(data["labels"]) == ["1", "2"]
    assert set(data["labels"]["1"]) == {"dice", "iou", "hd95_mm", "volume_ml_prediction", "volume_ml_reference"}
    assert data["labels"]["1"]["volume_ml_reference"] == pytest.approx(86 * 1e-3)  # 90 - 4 (label 2) voxels of 1 mm³
    assert 0 < data["labels"]["1"]["dice"] < 1 and data["labels"]["1"]["hd95_mm"] > 0
    assert "whole" in data["regions"]
    assert data["inputs"]["spacing_mm"] == pytest.approx([0.5, 1.0, 2.0])


def test_only_some_labels(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seg.json"
    rc, _ = run_cli(
        ["--prediction", files["pred"], "--reference", files["ref"], "--labels", "2", "--output", out], capsys
    )
    assert rc == 0 and list(json.loads(out.read_text())["labels"]) == ["2"]


def test_heatmap_mode(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "loc.json"
    rc, err = run_cli(
        [
            "--heatmap",
            files["heat"],
            "--reference",
            files["ref"],
            "--tolerance-mm",
            "2",
            "--topk",
            "5",
            "--output",
            out,
        ],
        capsys,
    )
    assert rc == 0, err
    data = json.loads(out.read_text())
    for key in ("pointing_game", "pointing_game_tol2mm", "relevance_mass", "relevance_rank", "topk_dice_5pct"):
        assert key in data
    assert data["pointing_game"] == 1.0 and data["relevance_mass"] == pytest.approx(1.0)
    assert data["relevance_rank"] == pytest.approx(1.0)
    assert 0 < data["sparseness_gini"] < 1


def test_heatmap_box_protocol_2d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    heat = np.zeros((1, 32, 40), np.float32)
    heat[0, 8:16, 10:30] = 1.0
    path = write(tmp_path, "heat2d.nii.gz", heat, np.eye(4))
    out = tmp_path / "box.json"
    rc, err = run_cli(["--heatmap", path, "--box", "10,8,20,16", "--output", out], capsys)
    assert rc == 0, err
    data = json.loads(out.read_text())
    assert data["box_iobb"] == 1.0 and data["box_iou"] == pytest.approx(0.5)
    assert data["box_detected_xywh"] == [10.0, 8.0, 20.0, 8.0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prediction", "{pred}", "--reference", "{ref}", "--labels", "7"], "label 7 is in neither"),
        (["--prediction", "{pred}", "--reference", "{ref}", "--labels", "one"], "whole numbers"),
        (["--prediction", "{other_grid}", "--reference", "{ref}"], "spacing"),
        (["--prediction", "{pred}", "--reference", "{heat}"], "not a label map"),
        (["--prediction", "{pred}"], "needs --reference"),
        (["--prediction", "{pred}", "--reference", "{tmp}/missing.nii.gz"], "file not found"),
        (["--heatmap", "{heat}", "--reference", "{other_grid}"], "spacing"),
        (["--heatmap", "{heat}", "--reference", "{ref}", "--labels", "3"], "label 3 is not in the reference"),
        (["--heatmap", "{heat}", "--reference", "{ref}", "--box", "1,2,3"], "--box needs 4"),
        (["--heatmap", "{heat}", "--box", "1,2,3,4"], "2D heat maps"),
        (
            ["--heatmap", "{heat}", "--reference", "{ref}", "--model", "m.pt", "--input", "{heat}"],
            "unknown model 'm.pt'",
        ),
        (["--heatmap", "{heat}", "--reference", "{ref}", "--model", "m.pt"], "both --model and --input"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_output(
    extra: list[str], message: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.json"
    names = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp_path)}
    rc, err = run_cli([a.format(**names) for a in extra] + ["--output", out], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.json")]  # no temporary left behind


def test_model_based_hook_is_plugged_when_quality_exists(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = {}

    def model_based_metrics(args, heatmap, reference):  # noqa: ANN001, ANN202
        seen["shapes"] = (heatmap.shape, reference.shape)
        return {"faithfulness_correlation": 0.25}

    fake = types.ModuleType("MedXAILib.quality")
    fake.model_based_metrics = model_based_metrics  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "MedXAILib.quality", fake)
    out = tmp_path / "q.json"
    args = ["--heatmap", files["heat"], "--reference", files["ref"], "--model", "m.pt", "--input", files["heat"]]
    rc, err = run_cli([*args, "--output", out], capsys)
    assert rc == 0, err
    data = json.loads(out.read_text())
    assert data["faithfulness_correlation"] == 0.25 and "pointing_game" in data
    assert seen["shapes"] == ((6, 12, 14), (6, 12, 14))


@pytest.mark.slow
def test_subprocess_entry_point(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "seg.json"
    proc = subprocess.run(
        [sys.executable, "-m", "MedXAILib", "evaluate", "--prediction", str(files["pred"]), "--reference",
         str(files["ref"]), "--output", str(out), "--progress", "json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[-1] == {"stage": "done", "progress": 1.0}
    assert set(json.loads(out.read_text())["labels"]) == {"1", "2"}
