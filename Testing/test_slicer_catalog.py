"""What the panel offers (models, method parameters), terminology strings, and where the module finds the core.

Pure Python except the last test, which starts a plain Python with only the module folder on its path (as Slicer
does for a scripted module in a developer's checkout) and one with the packaged layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "MedXAI"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from MedXAILogicLib import catalog, terminology  # noqa: E402

MODELS_JSON = {"models": [
    {"name": "demo-chest-xray", "source": "builtin", "task": "classification", "spatial_dims": 2,
     "channels": ["xray"], "classes": ["nodule", "cardiomegaly", "effusion"],
     "card": {"name": "demo-chest-xray", "version": "1.0", "training_data": "synthetic phantoms",
              "intended_use": "demonstration"}},
    {"name": "/data/Dataset001_Brain/nnUNetTrainer__nnUNetPlans__3d_fullres", "source": "nnunet",
     "task": "segmentation", "spatial_dims": 3, "channels": ["T1", "T2"], "classes": ["background", "lesion"]},
    {"name": "bad", "source": "file", "task": "detection", "spatial_dims": 3, "channels": ["x"], "classes": ["y"]},
]}


def test_models_json_is_read_and_invalid_records_skipped():
    text = "a log line\n" + json.dumps(MODELS_JSON)
    entries = catalog.parse_models_json(text)
    assert [e.name for e in entries] == ["demo-chest-xray", MODELS_JSON["models"][1]["name"]]
    xray, nnunet = entries
    assert xray.is_classification and xray.spatial_dims == 2 and xray.target_classes() == xray.classes
    assert nnunet.target_classes() == ["lesion"] and nnunet.channels == ["T1", "T2"] and nnunet.source == "nnunet"
    assert "version: 1.0" in xray.summary() and "inputs: xray" in xray.summary()
    with pytest.raises(ValueError, match="models"):
        catalog.parse_models_json("no json here")


def test_label_names_follow_label_values():
    brats = catalog.entry_from_dict({"name": "brats", "task": "segmentation", "channels": ["t1"],
                                     "classes": ["background", "necrosis", "oedema", "enhancing"],
                                     "label_values": [0, 1, 2, 4]})
    assert brats.label_names() == {1: "necrosis", 2: "oedema", 4: "enhancing"}
    plain = catalog.entry_from_dict({"name": "spleen", "task": "segmentation", "channels": ["ct"],
                                     "classes": ["background", "spleen"]})
    assert plain.label_names() == {1: "spleen"}
    assert catalog.entry_from_dict(MODELS_JSON["models"][0]).label_names() == {}  # a classifier has no labels


def test_builtin_models_are_listed_from_their_description_files():
    entries = {e.name: e for e in catalog.builtin_entries()}
    assert entries["demo-brain-tumour"].task == "segmentation"
    assert entries["demo-brain-tumour"].channels == ["t1", "t1ce", "t2", "flair"]
    assert entries["demo-chest-xray"].task == "classification" and entries["demo-chest-xray"].spatial_dims == 2


def test_missing_models_command_is_recognised():
    stderr = ["usage: python -m MedXAILib [-h] COMMAND ...",  # what a core without `models` prints (argparse)
              "python -m MedXAILib: error: argument COMMAND: invalid choice: 'models' (choose from 'demo', "
              "'segment', 'classify', 'explain', 'evaluate', 'methods', 'train', 'benchmark', 'speed', 'bench')"]
    assert catalog.is_missing_command(stderr, "models")
    assert not catalog.is_missing_command(["error: model 'x' not found"], "models")


def test_parameter_specs_from_methods_json_and_back_to_flags():
    record = {"name": "ig", "params": {"steps": 32, "method": "gausslegendre", "blur_sigma_mm": 8.0,
                                       "per_channel": False, "layers": [1, 2],
                                       "baseline": {"default": "zeros", "choices": ["zeros", "blurred"],
                                                    "help": "what 'absent' means"},
                                       "n": {"default": 4, "type": "int", "min": 1, "max": 64}}}
    specs = {s.name: s for s in catalog.parameter_specs(record)}
    assert [s for s in specs] == ["steps", "method", "blur_sigma_mm", "per_channel", "layers", "baseline", "n"]
    assert specs["steps"].kind == "int" and specs["steps"].minimum == 0
    assert specs["blur_sigma_mm"].kind == "float" and specs["per_channel"].kind == "bool"
    assert specs["method"].kind == "str" and specs["layers"].default == "1,2"
    assert specs["baseline"].kind == "choice" and specs["baseline"].choices == ["zeros", "blurred"]
    assert specs["baseline"].help == "what 'absent' means"
    assert (specs["n"].minimum, specs["n"].maximum) == (1, 64)
    flags = catalog.method_arguments(list(specs.values()), {"steps": 64.0, "blur_sigma_mm": 8.0,
                                                            "per_channel": True, "method": "", "baseline": "blurred"})
    assert flags == ["--param", "steps=64", "--param", "per_channel=true", "--param", "baseline=blurred"]
    with pytest.raises(ValueError, match="unknown method parameter"):
        catalog.method_arguments(list(specs.values()), {"stepz": 3})


def test_method_support_follows_the_model():
    xray = catalog.entry_from_dict(MODELS_JSON["models"][0])
    assert catalog.supports({"dims": [2, 3], "tasks": ["classification"]}, xray)
    assert not catalog.supports({"dims": [3], "tasks": ["classification"]}, xray)
    assert not catalog.supports({"dims": [2], "tasks": ["segmentation"]}, xray)


def test_terminology_entries_use_slicers_format():
    entry = terminology.serialize(("SCT", "49755003", "Morphologically Altered Structure"),
                                  ("SCT", "79654002", "Edema"))
    parts = entry.split("~")
    assert len(parts) == 7 and parts[0] == terminology.DICOM_CONTEXT and parts[3] == "^^"
    assert terminology.parse(entry)["type"] == ("SCT", "79654002", "Edema")
    assert terminology.DEFAULT_ENTRY == (  # vtkSegment's own default
        "Segmentation category and type - 3D Slicer General Anatomy list~SCT^85756007^Tissue~SCT^85756007^Tissue"
        "~^^~Anatomic codes - DICOM master list~^^~^^")
    sidecar = {"lesion": {"category": ["SCT", "49755003", "Morphologically Altered Structure"],
                          "type": ["SCT", "52988006", "Lesion"]},
               "broken": {"category": ["SCT", "1"], "type": "x"}}
    codes = terminology.entries_for_labels({1: "lesion", 2: "oedema", 3: "broken", 4: "liver?"}, sidecar)
    assert "SCT^52988006^Lesion" in codes[1]
    assert "SCT^79654002^Edema" in codes[2]
    assert codes[3] == codes[4] == terminology.DEFAULT_ENTRY
    with pytest.raises(ValueError):
        terminology.serialize(("SCT", "1~2", "x"), ("SCT", "2", "y"))


def _run(code: str, cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


# what workflow.medxailib_root() does, without importing slicer/vtk (seconds saved per child)
CHECK = ("import importlib.util, os, sys; import MedXAILogicLib; import MedXAILib.errors, MedXAILib.volume; "
         "print(os.path.dirname(os.path.dirname(os.path.realpath(importlib.util.find_spec('MedXAILib').origin)))); "
         "print(MedXAILogicLib.__file__)")


def test_source_checkout_with_only_the_module_folder_on_the_path(tmp_path):
    """Slicer adds only `<checkout>/MedXAI` to sys.path: the core one level up must still be found."""
    done = _run(CHECK, tmp_path, [ROOT / "MedXAI"])
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.splitlines()[0]) == ROOT


def test_packaged_layout_keeps_the_core_beside_the_module(tmp_path):
    """The built extension installs MedXAILib into the module's folder; nothing is added to sys.path then."""
    modules = tmp_path / "qt-scripted-modules"
    modules.mkdir()
    (modules / "MedXAILogicLib").symlink_to(ROOT / "MedXAI" / "MedXAILogicLib", target_is_directory=True)
    (modules / "MedXAILib").symlink_to(ROOT / "MedXAILib", target_is_directory=True)
    code = CHECK + f"; print({str(ROOT)!r} in sys.path)"
    done = _run(code, tmp_path, [modules])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert Path(lines[0]) == (modules / "MedXAILib").resolve().parent  # the core found where it was installed
    assert Path(lines[1]).parent.parent == modules and lines[2] == "False"  # and no checkout path added
