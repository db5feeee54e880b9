"""Shared pieces of the bad-input tests (issue 17): a tiny world of models and files, and the rules a refusal obeys.

A refusal is: exit status 2, exactly one ``error:`` line on stderr (nothing from ITK or niftilib before it), no
traceback, every file that existed before byte-identical (sha256), and no file left behind. Runs are in-process
through :func:`MedXAILib.cli.main`, so each case costs milliseconds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from helpers import save_model, tiny_classifier, tiny_unet_model

from MedXAILib.cli import main


def snapshot(root: Path) -> dict[str, str]:
    """``relative path → sha256`` of every file under ``root`` (hidden ones included)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Result:
    code: int
    out: str
    err: str
    before: dict[str, str]
    after: dict[str, str]

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]

    @property
    def new_files(self) -> list[str]:
        return sorted(set(self.after) - set(self.before))

    @property
    def changed_inputs(self) -> list[str]:
        return sorted(k for k, v in self.before.items() if self.after.get(k) != v)


def run(capfd, root: Path, *argv: str) -> Result:
    """Run the CLI in-process with ``--progress none`` and snapshot ``root`` before and after."""
    capfd.readouterr()
    before = snapshot(root)
    args = [str(a) for a in argv]
    if "--progress" not in args and args[0] not in ("methods", "speed", "bench"):
        args += ["--progress", "none"]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse refusals
        code = int(exc.code or 0)
    out, err = capfd.readouterr()
    return Result(code, out, err, before, snapshot(root))


def assert_refused(r: Result, pattern: str = "") -> str:
    """The refusal rules; returns the error line."""
    import re

    assert "Traceback" not in r.err, r.err
    assert r.code == 2, (r.code, r.err, r.out)
    lines = r.err_lines
    errors = [ln for ln in lines if ln.startswith("error:") or ": error:" in ln]
    assert len(errors) == 1, lines
    allowed = ("error:", "usage:", " ", "note: 'bench' is deprecated")
    assert all(ln.startswith(allowed) or ": error:" in ln for ln in lines), lines
    assert re.search(pattern, errors[0]), errors[0]
    assert r.changed_inputs == [], r.changed_inputs
    assert [f for f in r.after if f not in r.before] == [], r.new_files
    return errors[0]


# ---- the world -------------------------------------------------------------------------------------------------------
SHAPE = (16, 16, 16)


def write_nifti(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path), useCompression=True)
    return path


def make_world(root: Path) -> dict[str, Path]:
    """Tiny models and files: a 2-channel 3-class 3D UNet folder, a 3-finding 2D classifier folder, two channel files,
    a reference and a prediction label map, and a grey X-ray PNG."""
    root.mkdir(parents=True, exist_ok=True)
    w: dict[str, Path] = {"root": root}
    torch.manual_seed(0)
    w["seg"] = save_model(tiny_unet_model(channels=2, classes=3), root / "seg-model")
    w["cls"] = save_model(tiny_classifier(classes=3, input_size=[32, 32]), root / "cls-model")
    rng = np.random.default_rng(0)
    w["c0"] = write_nifti(root / "c0.nii.gz", rng.normal(size=SHAPE).astype(np.float32))
    w["c1"] = write_nifti(root / "c1.nii.gz", rng.normal(size=SHAPE).astype(np.float32))
    ref = np.zeros(SHAPE, np.uint8)
    ref[4:12, 4:12, 4:12] = 1
    ref[6:10, 6:10, 6:10] = 2
    w["ref"] = write_nifti(root / "ref.nii.gz", ref)
    pred = ref.copy()
    pred[4:6] = 0
    w["pred"] = write_nifti(root / "pred.nii.gz", pred)
    xray = (rng.random((40, 48)) * 200).astype(np.uint8)
    w["xray"] = root / "xray.png"
    sitk.WriteImage(sitk.GetImageFromArray(xray), str(w["xray"]))
    return w


def truncated(src: Path, dest: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def uncompressed(src: Path, dest: Path) -> Path:
    dest.write_bytes(gzip.decompress(src.read_bytes()))
    return dest


def description(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())


def model_variant(world: dict[str, Path], name: str, base: str = "seg", **changes) -> Path:
    """A copy of a model folder with description fields changed (a value of ``...`` deletes the key)."""
    import shutil

    src = world[base]
    dest = world["root"] / name
    if not dest.exists():
        shutil.copytree(src, dest)
    desc = description(src)
    for k, v in changes.items():
        if v is ...:
            desc.pop(k, None)
        else:
            desc[k] = v
    (dest / "model.json").write_text(json.dumps(desc))
    return dest
