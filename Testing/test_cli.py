"""The CLI: outputs keep the input geometry; every bad input gets one line, exit 2, no traceback, no output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import oblique_direction, oblique_volume, save_model, tiny_classifier, tiny_unet_model

from MedXAILib.cli import main
from MedXAILib.io import read_image, write_volume
from MedXAILib.volume import Volume, make_ijk_to_ras

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def seg_case(tmp_path):
    model_dir = save_model(tiny_unet_model(channels=2), tmp_path / "seg-model")
    vol = oblique_volume(channels=2, shape=(12, 20, 18))
    inputs = [write_volume(vol.channel(c), tmp_path / f"in{c}.nii.gz") for c in range(2)]
    return model_dir, inputs, vol


def _refused(capsys, argv, pattern, out: Path):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert pattern in err, err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_segment_and_explain_keep_oblique_geometry(seg_case, tmp_path):
    model_dir, inputs, vol = seg_case
    args = ["--model", str(model_dir), "--input", str(inputs[0]), "--input", str(inputs[1]), "--progress", "none"]
    assert main(["segment", *args, "--output", str(tmp_path / "pred.nii.gz")]) == 0
    assert main(["explain", *args, "--output", str(tmp_path / "heat.nrrd")]) == 0
    for name in ("pred.nii.gz", "heat.nrrd"):
        out = read_image(tmp_path / name)
        assert out.shape == vol.shape
        np.testing.assert_allclose(out.ijk_to_ras, vol.ijk_to_ras, atol=1e-5)
    sidecar = json.loads((tmp_path / "heat.nrrd.json").read_text())
    assert sidecar["method"] == "gradcam" and sidecar["cost"]["backward_passes"] == 1


def test_explain_dry_run_prints_cost(seg_case, capsys):
    model_dir, inputs, _ = seg_case
    argv = ["explain", "--model", str(model_dir), "--input", str(inputs[0]), "--input", str(inputs[1]), "--dry-run"]
    assert main(argv) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["forward_passes"] == 1 and est["backward_passes"] == 1 and est["estimated_seconds"] >= 0


def test_bad_inputs_are_refused_cleanly(seg_case, tmp_path, capsys):
    model_dir, inputs, vol = seg_case
    out = tmp_path / "out" / "pred.nii.gz"
    out.parent.mkdir()
    base = ["segment", "--model", str(model_dir), "--output", str(out), "--progress", "none"]
    missing = str(tmp_path / "missing.nii.gz")
    _refused(capsys, [*base, "--input", missing, "--input", str(inputs[1])], "file not found", out)
    _refused(capsys, [*base, "--input", str(inputs[0])], "takes 2 channel", out)
    other = Volume(vol.array[:1], make_ijk_to_ras((0.8, 1.1, 3.0), vol.origin, oblique_direction()))
    shifted = write_volume(other, tmp_path / "shifted.nii.gz")
    _refused(capsys, [*base, "--input", str(inputs[0]), "--input", str(shifted)], "shifted.nii.gz has spacing", out)
    nan = vol.channel(1)
    nan.array[0, 3, 3, 3] = np.nan
    nan_path = write_volume(nan, tmp_path / "nan.nii.gz")
    _refused(capsys, [*base, "--input", str(inputs[0]), "--input", str(nan_path)], "NaN", out)
    flat = [write_volume(Volume(np.ones((1, 1, 16, 16), np.float32)), tmp_path / f"flat{c}.nii.gz") for c in range(2)]
    _refused(capsys, [*base, "--input", str(flat[0]), "--input", str(flat[1])], "2D image", out)
    _refused(capsys, ["segment", "--model", "no-such-model", "--input", str(inputs[0]), "--output", str(out)],
             "unknown model", out)
    heat = tmp_path / "out" / "heat.nrrd"
    explain = ["explain", "--model", str(model_dir), "--input", str(inputs[0]), "--input", str(inputs[1]),
               "--output", str(heat), "--progress", "none"]
    _refused(capsys, [*explain, "--target", "tumour"], "no class 'tumour'", heat)
    empty = write_volume(Volume(np.zeros((1,) + vol.shape, np.int16), vol.ijk_to_ras), tmp_path / "empty.nii.gz")
    _refused(capsys, [*explain, "--target", "1", "--region", str(empty)], "region mask is empty", heat)
    _refused(capsys, [*explain, "--region", str(inputs[0])], "not a label map", heat)


def test_3d_volume_to_2d_model_refused(tmp_path, capsys):
    model_dir = save_model(tiny_classifier(), tmp_path / "cls")
    vol = write_volume(oblique_volume(channels=1), tmp_path / "vol.nii.gz")
    out = tmp_path / "c.json"
    _refused(capsys, ["classify", "--model", str(model_dir), "--input", str(vol), "--output", str(out)],
             "2D model but the input is a 3D volume", out)


def test_progress_json_lines_and_subprocess_exit_code(seg_case, tmp_path):
    model_dir, inputs, _ = seg_case
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "MedXAILib", "segment", "--model", str(model_dir), "--input", str(inputs[0]),
           "--input", str(inputs[1]), "--output", str(tmp_path / "p.nii.gz"), "--progress", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert lines and all({"stage", "progress"} <= set(x) for x in lines)
    assert lines[-1]["progress"] == 1.0
    one_channel = cmd[:7] + cmd[9:-4] + ["--output", str(tmp_path / "q.nii.gz")]  # drops the second --input
    bad = subprocess.run(one_channel, capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.startswith("error:")


def test_every_command_has_help(capsys):
    from MedXAILib.cli import COMMANDS, build_parser

    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert {"segment", "classify", "explain", "evaluate", "demo"} <= names
    for name in names & set(COMMANDS):
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out
