"""Issue 22: a seeded fuzz run of derived output names and damaged DICOM through the CLI.

Two generators (``MEDXAI_FUZZ_OUTPUT_CASES`` and ``MEDXAI_FUZZ_DICOM_CASES`` cases, default 60 and 50):

- **derived output names**: random base names, suffixes and folders for ``explain --counterfactual`` (which also
  writes ``NAME_<channel>``), ``--series`` (``step<NN>[_<channel>]``), ``--output`` / ``--normalized`` beside them,
  ``compare --output`` (``<method>.nrrd``, ``consensus.nrrd``, ``agreement.json``…) and the reserved files of a
  ``train`` / ``benchmark`` folder, with inputs placed (as files, symlinks or hard links) where a derived name falls,
  or just beside it;
- **damaged DICOM**: copies of four real CT slices (cropped to 48 × 48, uncompressed) and of the real chest CR with
  their pixel data cut or padded, the file cut anywhere, a pixel or geometry attribute changed on one slice or all,
  a position or orientation removed or made NaN, the photometric interpretation of one slice flipped, a rescale that
  is not a number; and harmless edits (descriptions, private tags) that must give the intact output.

The rules, counted over all cases and asserted at the end: no traceback; a refusal is exit 2 with one ``error:``
line and nothing else; every file that existed before is byte-identical (sha256) after; a refused case leaves no
file; a case that must be refused never ends with exit 0; a harmless one gives exactly the intact output; a valid
variant writes exactly its declared files. ``MEDXAI_FUZZ_REPORT=FILE`` writes the counts and verdicts as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import SimpleITK as sitk
from bad_inputs import make_world, snapshot
from helpers import save_model, tiny_classifier
from helpers_dicom import CHEST_DICOM, CT_SERIES, data_path, tiny_model_folder
from test_dicom_damaged import edit, small_cr, small_ct_series

from MedXAILib.cli import main

pydicom = pytest.importorskip("pydicom")
N_OUTPUT = int(os.environ.get("MEDXAI_FUZZ_OUTPUT_CASES", "60"))
N_DICOM = int(os.environ.get("MEDXAI_FUZZ_DICOM_CASES", "50"))
SIDE = 48
CHANNELS = ("c0", "c1")  # the tiny segmentation model's channel names
METHODS = ("gradcam", "saliency", "gradcampp", "random", "edges", "layercam")  # cheap on a 16³ tiny U-Net
OUTPUT_KINDS = ("cf", "series", "output-vs-cf", "compare", "folder")
CR_KINDS = ("pixel-cut", "pixel-extra", "file-cut", "rows", "bits", "samples", "harmless")
CT_KINDS = CR_KINDS + ("frames", "no-ipp", "no-iop", "ipp-nan", "iop-zero", "mono1-one", "slope-text",
                       "own-rescale", "mono1-all")
#: Every (modality, damage) pair in turn, so that each is drawn at least twice in 50 cases.
DICOM_KINDS = [("cr", k) for k in CR_KINDS] + [("ct", k) for k in CT_KINDS]
RESERVED = {"train": ("splits.json", "folds.json", "summary.csv"),
            "benchmark": ("benchmark.json", "splits.json", "cases.csv", "summary.csv", "folds.csv",
                          "agreement.csv", "report.html", "summary.md", "conventions.json")}


@dataclass
class Case:
    """One command line (``{case}`` is its folder) and what must happen: ``refuse``, ``same`` (exactly the intact
    output ``baseline``) or ``ok`` (exit 0 and exactly ``outputs``, paths relative to the case folder)."""

    seed: int
    kind: str
    expect: str
    argv: list[str]
    build: Callable[[Path], None] | None = None
    outputs: list[str] = field(default_factory=list)
    baseline: str | None = None

    @property
    def name(self) -> str:
        return f"{self.kind.split('-')[0]}{self.seed:03d}-{self.kind}"


# ---- derived output names ------------------------------------------------------------------------------------------
def _base(rng: np.random.Generator) -> str:
    alphabet = list("abcdefxyz019-.") + ["é", " ", "ü"]
    return "".join(rng.choice(alphabet) for _ in range(int(rng.integers(1, 7)))).strip(". ") or "cf"


def _place(rng: np.random.Generator, src: Path, dest: Path, stash: Path) -> None:
    """Put an input at ``dest`` (written in the format its name says): a file, or a symlink / hard link to a file
    kept elsewhere."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    stash.mkdir(parents=True, exist_ok=True)
    how = rng.choice(["file", "symlink", "hardlink"])
    kept = dest if how == "file" else stash / f"kept-{dest.name}"
    if kept.name.lower().endswith(".nii.gz") or not kept.name.lower().endswith((".nii", ".nrrd", ".mha")):
        shutil.copy(src, kept)
    else:
        sitk.WriteImage(sitk.ReadImage(str(src)), str(kept))
    if how != "file":
        (os.symlink if how == "symlink" else os.link)(kept, dest)


def output_case(i: int, w: dict) -> Case:
    rng = np.random.default_rng(1000 + i)
    kind = OUTPUT_KINDS[i % len(OUTPUT_KINDS)]  # the details are drawn
    seg, c0, c1 = str(w["seg"]), w["c0"], w["c1"]
    base, suffix = _base(rng), str(rng.choice([".nii.gz", ".nrrd", ".mha"]))
    explain = ["explain", "--model", seg, "--method", "counterfactual", "--param", "steps=2"]
    if kind == "cf":
        collide = bool(rng.random() < 0.6)
        names = [f"{base}_{rng.choice([*CHANNELS, 'x', ''])}{suffix}" if collide and k == 0 else f"{base}-c{k}.nii.gz"
                 for k in range(2)]

        def build(d: Path, names=names) -> None:
            for src, n in zip((c0, c1), names):
                _place(rng, src, d / "in" / n, d / "stash")

        argv = [*explain, "--input", f"{{case}}/in/{names[0]}", "--input", f"{{case}}/in/{names[1]}",
                "--output", "{case}/h.nii.gz", "--counterfactual", f"{{case}}/in/{base}{suffix}", "--dry-run"]
        return Case(i, f"cf-{'collide' if collide else 'beside'}", "refuse" if collide else "ok", argv, build)
    if kind == "series":
        collide = bool(rng.random() < 0.6)
        name = f"step{rng.integers(0, 100):02d}{rng.choice(['', '_c0', '_x'])}.nii.gz" if collide else \
            str(rng.choice(["Step00.nii.gz", "step00.nrrd", "stepa.nii", "t1.nii.gz", "step.nii.gz.bak.nii"]))

        def build(d: Path, name=name) -> None:
            _place(rng, c0, d / "s" / name, d / "stash")

        argv = [*explain, "--input", f"{{case}}/s/{name}", "--input", str(c1), "--output", "{case}/h.nii.gz",
                "--series", "{case}/s", "--dry-run"]
        return Case(i, f"series-{'collide' if collide else 'beside'}", "refuse" if collide else "ok", argv, build)
    if kind == "output-vs-cf":
        collide = bool(rng.random() < 0.6)
        flag = str(rng.choice(["--output", "--normalized"]))
        name = f"{base}_{rng.choice(['c0', 'c1', 'z'])}{suffix}" if collide else f"{base}{suffix}.x{suffix}"
        other = ["--output", "{case}/h.nii.gz"] if flag == "--normalized" else []
        argv = [*explain, "--input", str(c0), "--input", str(c1), flag, f"{{case}}/{name}", *other,
                "--counterfactual", f"{{case}}/{base}{suffix}", "--dry-run"]
        return Case(i, f"{flag[2:]}-vs-cf-{'collide' if collide else 'apart'}", "refuse" if collide else "ok", argv)
    if kind == "compare":
        methods = [str(m) for m in rng.choice(METHODS, size=2, replace=False)]
        if rng.random() < 0.3:  # a real run beside an input with another name: exactly the declared files appear
            figure = bool(rng.random() < 0.3)
            written = [n for m in methods for n in (f"out/{m}.nrrd", f"out/{m}.nrrd.json")]
            written += ["out/consensus.nrrd", "out/consensus_agreement.nrrd", "out/agreement.json"]
            written += ["out/agreement.png"] if figure else []

            def build(d: Path) -> None:
                _place(rng, c0, d / "out" / "c0.nii.gz", d / "stash")

            argv = ["compare", "--model", seg, "--input", "{case}/out/c0.nii.gz", "--input", str(c1), "--methods",
                    ",".join(methods), "--output", "{case}/out"] + ([] if figure else ["--no-figure"])
            return Case(i, "compare-beside", "ok", argv, build, written)
        name = str(rng.choice([f"{methods[0]}.nrrd", f"{methods[1]}.nrrd.json", "consensus.nrrd",
                               "consensus_agreement.nrrd", "agreement.json"]))
        as_region = name.endswith(".json")

        def build(d: Path, name=name, as_region=as_region) -> None:  # a region mask is an input too
            _place(rng, w["ref"] if as_region else c0, d / "out" / name, d / "stash")

        first = "{case}/out/" + name if not as_region else str(c0)
        argv = ["compare", "--model", seg, "--input", first, "--input", str(c1), "--methods", ",".join(methods),
                "--output", "{case}/out", "--no-figure"] + (["--region", "{case}/out/" + name] if as_region else [])
        return Case(i, "compare-collide", "refuse", argv, build)
    command = str(rng.choice(["train", "benchmark"]))
    name = str(rng.choice(RESERVED[command]))

    def build(d: Path, name=name) -> None:
        (d / "out").mkdir(parents=True, exist_ok=True)
        (d / "out" / name).write_text("case_id,image\n")

    dataset = f"csv:{{case}}/out/{name}"
    argv = (["train", "--dataset", dataset, "--task", "segmentation", "--output", "{case}/out"] if command == "train"
            else ["benchmark", "--dataset", dataset, "--model", seg, "--methods", "gradcam", "--output", "{case}/out"])
    return Case(i, f"{command}-folder-collide", "refuse", argv, build)


# ---- damaged DICOM -------------------------------------------------------------------------------------------------
def _patch(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    path.write_bytes(data.replace(old, new, 1))


def dicom_case(i: int, w: dict) -> Case:
    rng = np.random.default_rng(2000 + i)
    modality, kind = DICOM_KINDS[i % len(DICOM_KINDS)]  # the slice, the cut, the value are drawn
    cr = modality == "cr"
    src = w["cr_dcm"] if cr else w["ct_dir"]
    expect = {"harmless": "same", "own-rescale": "ok", "mono1-all": "ok"}.get(kind, "refuse")

    def build(d: Path) -> None:
        if cr:
            target = Path(shutil.copy(src, d / "cr.dcm"))
            files = [target]
        else:
            shutil.copytree(src, d / "ct")
            files = sorted((d / "ct").iterdir())
        every = kind in ("bits", "samples", "mono1-all") or (kind == "rows" and rng.random() < 0.5)
        chosen = files if every else [files[int(rng.integers(len(files)))]]
        for f in chosen:
            _damage(f, kind, rng)

    if cr:
        argv = ["classify", "--model", str(w["cls_model"]), "--input", "{case}/cr.dcm", "--output", "{case}/o.json"]
        outputs = ["o.json"]
    else:
        argv = ["segment", "--model", str(w["ct_model"]), "--input", "{case}/ct", "--output", "{case}/o.nii.gz"]
        outputs = ["o.nii.gz", "o.nii.gz.json"]
    return Case(i, f"{'cr' if cr else 'ct'}-{kind}", expect, argv, build, outputs, baseline="cr" if cr else "ct")


def _damage(f: Path, kind: str, rng: np.random.Generator) -> None:
    ds = pydicom.dcmread(f)
    n = len(ds.PixelData)
    if kind == "pixel-cut":
        ds.PixelData = ds.PixelData[: int(rng.integers(0, n // 2)) * 2]
        ds.save_as(f)
    elif kind == "pixel-extra":
        ds.PixelData = ds.PixelData + rng.bytes(2 * int(rng.integers(1, 200)))
        ds.save_as(f)
    elif kind == "file-cut":
        data = f.read_bytes()
        f.write_bytes(data[: int(rng.integers(0, len(data) - 1))])
    elif kind == "rows":
        edit(f, Rows=int(rng.choice([1, ds.Rows - 1, ds.Rows + 1, ds.Rows * 2])))
    elif kind == "bits":
        edit(f, BitsAllocated=int(rng.choice([1, 32] if ds.BitsAllocated == 16 else [16, 32])))
    elif kind == "samples":
        edit(f, SamplesPerPixel=3)
    elif kind == "frames":
        edit(f, NumberOfFrames=int(rng.integers(2, 5)))
    elif kind in ("no-ipp", "no-iop"):
        edit(f, **{"ImagePositionPatient" if kind == "no-ipp" else "ImageOrientationPatient": None})
    elif kind == "ipp-nan":
        edit(f, ImagePositionPatient=["1.11111", "2", "3"])
        _patch(f, b"1.11111", rng.choice([b"nan    ", b"inf    ", b"-inf   "]))
    elif kind == "iop-zero":
        edit(f, ImageOrientationPatient=[0, 0, 0, 0, 0, 0] if rng.random() < 0.5 else [1, 0, 0, 1, 0, 0])
    elif kind in ("mono1-one", "mono1-all"):
        edit(f, PhotometricInterpretation="MONOCHROME1")
    elif kind == "slope-text":
        edit(f, RescaleSlope="7.77777")
        _patch(f, b"7.77777", rng.choice([b"abc.xyz", b"1,5    ", b"nan    "]))
    elif kind == "own-rescale":
        edit(f, RescaleSlope=float(rng.choice([0.5, 2.0])), RescaleIntercept=float(rng.integers(-2000, 0)))
    elif kind == "harmless":
        ds.SeriesDescription = "fuzz " + "".join(rng.choice(list("abc xyz")) for _ in range(8))
        ds.add_new(0x00091010, "LO", "private value")
        ds.save_as(f)


# ---- running and judging -------------------------------------------------------------------------------------------
def _call(argv: list[str]) -> tuple[int | None, str | None]:
    try:
        return int(main(argv)), None
    except SystemExit as exc:
        return int(exc.code or 0), None
    except Exception:  # noqa: BLE001 - a traceback is what this test counts
        return None, traceback.format_exc()


def _same(a: Path, b: Path) -> bool:
    x, y = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    return (np.array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y)) and x.GetOrigin() == y.GetOrigin()
            and x.GetSpacing() == y.GetSpacing() and x.GetDirection() == y.GetDirection())


def _judge(case: Case, code, tb, err, before, after, case_dir: Path, root: Path,
           baselines: dict[str, Path]) -> list[str]:
    problems = []
    if tb is not None or "Traceback" in err:
        problems.append("traceback")
    if any(after.get(k) != v for k, v in before.items()):
        problems.append("modified-input")
    new = sorted(set(after) - set(before))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if code == 2:
        errors = [ln for ln in lines if ln.startswith("error:")]
        if len(errors) != 1 or any(not ln.startswith(("error:", "warning:")) for ln in lines):
            problems.append("unclean-refusal")
        if new:
            problems.append("partial-output")
        if case.expect != "refuse":
            problems.append("unexpected-refusal")
    elif code == 0:
        if case.expect == "refuse":
            problems.append("silent-wrong")
        prefix = case_dir.relative_to(root).as_posix() + "/"
        if sorted(n[len(prefix):] for n in new) != sorted(case.outputs):
            problems.append("undeclared-or-missing-output")
        elif case.expect == "same" and case.outputs and case.outputs[0].endswith(".nii.gz"):
            if not _same(case_dir / case.outputs[0], baselines[case.baseline or ""] / case.outputs[0]):
                problems.append("silent-wrong")
        elif case.expect == "same" and case.outputs:
            got = json.loads((case_dir / case.outputs[0]).read_text())
            want = json.loads((baselines[case.baseline or ""] / case.outputs[0]).read_text())
            if got["probabilities"] != want["probabilities"]:
                problems.append("silent-wrong")
    elif tb is None:
        problems.append(f"exit-{code}")
    return problems


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz22")
    w = make_world(root / "world")
    w["ct_dir"] = small_ct_series(data_path(CT_SERIES), root / "world" / "ct", side=SIDE)[0].parent
    w["cr_dcm"] = small_cr(data_path(CHEST_DICOM), root / "world" / "cr.dcm", side=64)
    w["ct_model"] = tiny_model_folder(root / "world" / "ct-model", 3, ["background", "liver"])
    w["cls_model"] = save_model(tiny_classifier(classes=3, input_size=[32, 32]), root / "world" / "cr-model")
    return root, w


@pytest.mark.usefixtures("one_torch_thread")
def test_fuzz_derived_outputs_and_damaged_dicom(world, capfd):
    t0 = time.perf_counter()
    root, w = world
    baselines = {}
    for key, argv in (("ct", ["segment", "--model", str(w["ct_model"]), "--input", str(w["ct_dir"])]),
                      ("cr", ["classify", "--model", str(w["cls_model"]), "--input", str(w["cr_dcm"])])):
        out = root / f"baseline-{key}"
        out.mkdir()
        name = "o.nii.gz" if key == "ct" else "o.json"
        assert main([*argv, "--output", str(out / name), "--progress", "none"]) == 0
        baselines[key] = out
    capfd.readouterr()
    cases = [output_case(i, w) for i in range(N_OUTPUT)] + [dicom_case(i, w) for i in range(N_DICOM)]
    counts: Counter[str] = Counter()
    verdicts = []
    for case in cases:
        case_dir = root / "cases" / case.name
        case_dir.mkdir(parents=True)
        if case.build is not None:
            case.build(case_dir)
        argv = [a.replace("{case}", str(case_dir)) for a in case.argv] + ["--progress", "none"]
        capfd.readouterr()  # what building the case said (ITK writing a file) is not the command's
        before = snapshot(root)
        code, tb = _call(argv)
        _, err = capfd.readouterr()
        problems = _judge(case, code, tb, err, before, snapshot(root), case_dir, root, baselines)
        counts["cases"] += 1
        counts[f"expect-{case.expect}"] += 1
        counts["exit-0" if code == 0 else "refused" if code == 2 else "other"] += 1
        counts.update(problems)
        verdicts.append({"case": case.name, "expect": case.expect, "exit": code, "problems": problems,
                         "error": next((ln for ln in err.splitlines() if ln.startswith("error:")), None),
                         "traceback": tb})
        shutil.rmtree(case_dir)
    counts["seconds"] = round(time.perf_counter() - t0)
    report = os.environ.get("MEDXAI_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({"summary": dict(counts), "cases": verdicts}, indent=1))
    print("fuzz summary:", json.dumps(dict(counts)))
    bad = [v for v in verdicts if v["problems"]]
    assert counts["cases"] == N_OUTPUT + N_DICOM and counts["expect-refuse"] and counts["exit-0"]
    assert not bad, json.dumps(bad[:8], indent=1)
