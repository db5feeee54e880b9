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


def qt_double_spin_box(value: float, decimals: int, minimum: float, maximum: float) -> float:
    """What a QDoubleSpinBox holds after ``setDecimals``, ``setRange`` and ``setValue``.

    Qt's documented rule (QDoubleSpinBox): the range and every value are rounded to the decimals
    (``QString::number(v, 'f', decimals).toDouble()``, which is C's correctly rounded ``%.Nf``), and the value is
    bounded by the range. The panel sets the decimals first (``test_slicer_static`` checks the order).
    """
    def rounded(x: float) -> float:
        return float(f"{x:.{decimals}f}")

    return min(max(rounded(value), rounded(minimum)), rounded(maximum))


def widget_round_trip(spec: catalog.ParameterSpec) -> object:
    """The default as the panel's widget for it gives it back (a spin box rounds; other widgets keep the text)."""
    if spec.kind == "float":
        return qt_double_spin_box(float(spec.default), catalog.spin_box_decimals(spec), spec.minimum, spec.maximum)
    if spec.kind == "int":
        return min(max(int(spec.default), int(spec.minimum)), int(spec.maximum))
    if spec.kind == "bool":
        return bool(spec.default)
    return "" if spec.default is None else str(spec.default)


def test_every_method_default_survives_the_widget_round_trip():
    """Every parameter of every method ``methods --json`` lists: shown in its widget and read back, the default is
    unchanged, so an untouched panel sends no ``--param`` (four decimals sent LRP's epsilon=1e-06 as 0.0)."""
    from MedXAILib.commands.methods import describe_methods

    methods = catalog.parse_methods_json(json.dumps({"methods": describe_methods()}))  # what the CLI prints
    assert {"lrp", "gradcam", "counterfactual", "sedc", "partitionshap", "kernelshap"} <= set(methods)
    floats = 0
    for name, record in methods.items():
        specs = catalog.parameter_specs(record)
        values = {spec.name: widget_round_trip(spec) for spec in specs}
        for spec in specs:
            if spec.kind == "float":
                floats += 1
                assert values[spec.name] == spec.default, (name, spec.name, spec.default, values[spec.name])
        assert catalog.method_arguments(specs, values) == [], name
    assert floats >= 20
    epsilon = next(s for s in catalog.parameter_specs(methods["lrp"]) if s.name == "epsilon")
    assert epsilon.default == 1e-06 and catalog.spin_box_decimals(epsilon) >= 6
    assert qt_double_spin_box(epsilon.default, 4, epsilon.minimum, epsilon.maximum) == 0.0  # the defect, as it was
    assert catalog.spin_box_step(epsilon) == pytest.approx(1e-06)


def test_spin_box_decimals_hold_the_default_and_the_range():
    spec = catalog.ParameterSpec("x", "float", 0.15, 0.001, 2.5)
    assert catalog.spin_box_decimals(spec) == 3 and catalog.spin_box_step(spec) == pytest.approx(0.1)
    assert catalog.decimals_needed(32.0) == 0 and catalog.decimals_needed(1e-9) == 9
    assert catalog.spin_box_decimals(catalog.ParameterSpec("y", "float", 8.0, 0.0, 1e9)) == 2


def test_model_options_become_the_flags_of_each_command():
    nnunet = catalog.entry_from_dict({**MODELS_JSON["models"][1], "card": {"folds": ["0", "1"]}})
    xray = catalog.entry_from_dict(MODELS_JSON["models"][0])
    options = catalog.ModelOptions(folds="0, 1", checkpoint="best", mirroring=False, fast=True, organ="liver")
    assert options.arguments("segment", nnunet) == ["--folds", "0,1", "--checkpoint", "best", "--param", "tta=false"]
    assert options.arguments("classify", nnunet) == ["--folds", "0,1", "--checkpoint", "best"]  # no --param there
    assert "tta=false" not in options.arguments("compare", nnunet)  # compare reads --param as METHOD.KEY=VALUE
    assert options.arguments("evaluate", nnunet) == [] and options.arguments("segment", xray) == []
    assert catalog.ModelOptions().arguments("explain", nnunet) == []  # nnU-Net's defaults: no flag
    total = catalog.entry_from_dict({"name": "total", "load": "totalsegmentator:total", "source": "totalsegmentator",
                                     "task": "segmentation", "spatial_dims": 3, "channels": ["CT"],
                                     "classes": ["background", "liver"], "card": {"parts": ["a", "b"]}})
    assert total.name == "totalsegmentator:total" and total.display_name == "total" and total.needs_class_target
    assert options.arguments("segment", total)[-2:] == ["--target", "liver"] and "--fast" in options.arguments(
        "segment", total)
    assert "--target" not in options.arguments("explain", total)  # explain's --target is the explained organ
    rows = dict(total.card_rows({"version": "2.5", "intended_use": "research"}))
    assert rows["version"] == "2.5" and rows["intended use"] == "research" and rows["inputs"] == "CT"


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
