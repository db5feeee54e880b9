"""Both panels' parameter nodes through Slicer's own ``slicer.parameterNodeWrapper``, saved with a real scene and
loaded again.

The wrapper is pure Python over ``vtkMRMLScriptedModuleNode`` (in the ``slicer-core`` wheel) but ships only with the
Slicer application, so this test reads it from a clone of Slicer's repository at the tags 5.8 and 5.10
(``MEDXAI_SLICER_SOURCE``; skipped otherwise, as CI has no Slicer source). ``qt`` and ``ctk`` are stood in for: the
wrapper only names their widget classes when it binds a GUI, which this test does not. Every field of
``MedXAIParameterNode`` and ``MedXAIReaderStudyParameterNode`` is given a value other than its default (nodes of the
declared class, a choice, a value in range, a path), the scene is written to MRML XML and read into a new scene, and
every value must come back: the choices the panels say are "saved with the scene" are. And every widget the ``.ui``
binds gets Slicer's own connector for its class and the field's type (what ``connectGui`` builds), with the node
types a bound node selector really lists.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = json.loads((Path(__file__).resolve().parent / "slicer_api" / "slicer_api.json").read_text())
SOURCE = os.environ.get("MEDXAI_SLICER_SOURCE")
pytestmark = pytest.mark.skipif(not SOURCE, reason="set MEDXAI_SLICER_SOURCE to a Slicer clone")
WRAPPER = "Base/Python/slicer/parameterNodeWrapper"
MODULES = {"MedXAI": ("MedXAI/MedXAI.py", "MedXAIParameterNode"),
           "MedXAIReaderStudy": ("MedXAIReaderStudy/MedXAIReaderStudy.py", "MedXAIReaderStudyParameterNode")}


class _Widget:
    """A stand-in widget: its class is the Qt class it stands for; any method call or property set is accepted."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


class _AnyName(types.ModuleType):
    """``qt`` / ``ctk``: any class name is a distinct widget class (the wrapper compares widget types only)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Widget,), {})
        setattr(self, name, value)
        return value


def _load_wrapper(version: str, tmp_path: Path, monkeypatch) -> types.ModuleType:
    import slicer

    ref = API["refs"][version]["commit"]
    names = subprocess.run(["git", "-C", SOURCE, "ls-tree", "--name-only", f"{ref}:{WRAPPER}"], capture_output=True,
                           text=True, check=True).stdout.split()
    package = tmp_path / "parameterNodeWrapper"
    package.mkdir()
    for name in names:
        text = subprocess.run(["git", "-C", SOURCE, "show", f"{ref}:{WRAPPER}/{name}"], capture_output=True,
                              text=True, check=True).stdout
        (package / name).write_text(text)
    for stub in ("qt", "ctk"):
        monkeypatch.setitem(sys.modules, stub, _AnyName(stub))
    for widget in sorted(set(re.findall(r"slicer\.(q[A-Z]\w+)", "".join(p.read_text() for p in package.iterdir())))):
        if not hasattr(slicer, widget):  # the application's widget classes
            monkeypatch.setattr(slicer, widget, type(widget, (_Widget,), {}), raising=False)
    for name in [m for m in sys.modules if m.startswith("slicer.parameterNodeWrapper")]:
        monkeypatch.delitem(sys.modules, name)
    spec = importlib.util.spec_from_file_location("slicer.parameterNodeWrapper", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(slicer, "parameterNodeWrapper", module, raising=False)
    return module


def _other_value(name: str, annotation, default, scene, wrapper, tmp_path: Path):
    """A value of the field's type that differs from its default (nodes: new nodes of the declared class)."""
    base, annotations = wrapper.splitAnnotations(annotation)
    choice = wrapper.findFirstAnnotation(annotations, wrapper.Choice)
    within = wrapper.findFirstAnnotation(annotations, wrapper.WithinRange)
    if isinstance(base, type) and base.__name__.startswith("vtkMRML"):
        rgb = name == "inputVolume2"  # an input row offers RGB (vector) volumes too
        return scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if rgb else base.__name__, f"saved {name}")
    if choice is not None:
        return next(c for c in reversed(list(choice.choices)) if c != default)
    if base is bool:
        return not default
    if base in (int, float):
        low, high = (within.minimum, within.maximum) if within is not None else (default - 3, default + 3)
        value = low + (high - low) * 0.75
        return base(value) if base is float or value != default else base(low)
    if base is str:
        return f"{name} saved"
    if base in (pathlib.Path, pathlib.PosixPath):
        return tmp_path / f"{name} folder"
    raise AssertionError(f"{name}: no test value for {annotation}")


def _same(a, b) -> bool:
    if hasattr(a, "GetName") and hasattr(b, "GetName"):
        return a.GetClassName() == b.GetClassName() and a.GetName() == b.GetName()
    return a == b


def _parameter_class(version: str, module_name: str, tmp_path: Path, monkeypatch):
    """(Slicer's wrapper package, the module's parameter class built by it, its fields and their types)."""
    import slicer
    from test_slicer_logic import _stub_modules

    _stub_modules(monkeypatch)
    wrapper = _load_wrapper(version, tmp_path, monkeypatch)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(connect=lambda *args: None), raising=False)
    for folder in ("MedXAI", "MedXAIReaderStudy"):
        monkeypatch.syspath_prepend(str(ROOT / folder))
    path, class_name = MODULES[module_name]
    spec = importlib.util.spec_from_file_location(f"{module_name}_parameters", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module, class_name)
    return wrapper, cls, typing.get_type_hints(cls, include_extras=True)


@pytest.mark.parametrize("version", ["5.8", "5.10"])
@pytest.mark.parametrize("module_name", sorted(MODULES))
def test_every_bound_widget_gets_slicers_connector(version, module_name, tmp_path, monkeypatch):
    """Each ``SlicerParameterName`` of the ``.ui`` names a field, and Slicer's own connector for that widget class
    and field type is created (what ``connectGui`` does; it raises where none fits, e.g. a combo box without
    ``Choice``). A node selector's connector sets ``nodeTypes`` to what the ``.ui`` says."""
    import xml.etree.ElementTree as ET

    import slicer
    from test_slicer_static import bindings, properties

    wrapper, cls, fields = _parameter_class(version, module_name, tmp_path, monkeypatch)
    ui = ET.parse(ROOT / module_name / "Resources" / "UI" / f"{module_name}.ui").getroot()
    by_name = {w.get("name"): w for w in ui.iter("widget")}
    qt, ctk = sys.modules["qt"], sys.modules["ctk"]
    for name, (widget_name, widget_class) in bindings(ui).items():
        assert name in fields, f"{widget_name} is bound to {name}, which is not a parameter"
        owner = qt if widget_class.startswith("Q") else ctk if widget_class.startswith("ctk") else slicer
        widget = getattr(owner, widget_class)()
        connector = wrapper.createGuiConnector(widget, cls.dataType(name))
        assert connector.widget() is widget
        if widget_class == "qMRMLNodeComboBox":
            assert list(widget.nodeTypes) == properties(by_name[widget_name])["nodeTypes"], widget_name


@pytest.mark.parametrize("version", ["5.8", "5.10"])
@pytest.mark.parametrize("module_name", sorted(MODULES))
def test_every_choice_survives_saving_and_loading_the_scene(version, module_name, tmp_path, monkeypatch):
    import slicer

    wrapper, cls, fields = _parameter_class(version, module_name, tmp_path, monkeypatch)
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", f"{module_name} parameters")
    parameters = cls(node)
    defaults = {name: getattr(parameters, name) for name in fields}  # every default is valid for its type
    chosen = {name: _other_value(name, fields[name], defaults[name], scene, wrapper, tmp_path) for name in fields}
    for name, value in chosen.items():
        setattr(parameters, name, value)
        assert _same(getattr(parameters, name), value), name
    extra = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "saved fifth input")
    node.SetNodeReferenceID("MedXAI.input5", extra.GetID())  # rows made in code keep their node this way
    scene.SetSaveToXMLString(1)
    scene.Commit()
    loaded = slicer.vtkMRMLScene()
    loaded.SetLoadFromXMLString(1)
    loaded.SetSceneXMLString(scene.GetSceneXMLString())
    loaded.Import()
    again = cls(loaded.GetFirstNodeByName(f"{module_name} parameters"))
    assert _same(again.parameterNode.GetNodeReference("MedXAI.input5"), extra)
    for name, value in chosen.items():
        got = getattr(again, name)
        assert _same(got, value), f"{name}: saved {value!r}, loaded {got!r}"
        if hasattr(got, "GetScene"):
            assert got.GetScene() is loaded, f"{name} refers to a node outside the loaded scene"
