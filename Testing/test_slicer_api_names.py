"""Every ``slicer.*``, ``qt.*`` and ``ctk.*`` name the extension's modules use exists in Slicer 5.8 and 5.10.

The reference is ``Testing/slicer_api/slicer_api.json``, made from Slicer's own source at the tags v5.8.1 and v5.10.0
(and main) by ``Testing/slicer_api/refresh_slicer_api.py`` (see its docstring for what it collects). A name used
inside ``try: … except ImportError / AttributeError`` or under ``if hasattr(…)`` is optional and must exist in one
version at least (``slicer.packaging`` is Slicer >= 5.12). The widget classes of every ``.ui`` are checked too, and
the keyword arguments MedXAI passes to Slicer's Python functions against their argument names in each version.

Set ``MEDXAI_SLICER_SOURCE`` to a clone of Slicer's repository to also construct Sample Data's real
``SampleDataSource`` with MedXAI's arguments at each tag (skipped otherwise: CI has no Slicer source).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from slicer_modules import ROOT, module_folders, python_files, ui_files

API = json.loads((Path(__file__).resolve().parent / "slicer_api" / "slicer_api.json").read_text())
REQUIRED = ("5.8", "5.10")
NAMESPACES = ("util", "app", "modules", "i18n", "packaging", "parameterNodeWrapper", "ScriptedLoadableModule",
              "logic", "cli", "testing")
GUARD_ERRORS = {"ImportError", "ModuleNotFoundError", "AttributeError"}


def versions_of() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for versions, names in API["names_by_versions"].items():
        for name in names:
            out[name] = set(versions.split(","))
    return out


VERSIONS = versions_of()


def checked_name(dotted: str) -> str:
    """The part of a dotted name that Slicer's source can confirm (a class; a namespace and its member)."""
    root, *parts = dotted.split(".")
    if not parts:
        return dotted
    first = parts[0]
    if root in ("qt", "ctk"):
        return ".".join([root, *parts[:2]]) if first == "Qt" and len(parts) > 1 else f"{root}.{first}"
    if first.startswith(("vtk", "qMRML", "qSlicer")) or first not in NAMESPACES or len(parts) == 1:
        return f"slicer.{first}"
    return f"slicer.{first}.{parts[1]}"


def _is_guard(node: ast.AST) -> bool:
    if isinstance(node, ast.Try):
        for handler in node.handlers:
            caught = handler.type
            names = [caught] if not isinstance(caught, ast.Tuple) else list(caught.elts)
            if any(isinstance(n, ast.Name) and n.id in GUARD_ERRORS for n in names):
                return True
    return isinstance(node, ast.If) and "hasattr(" in ast.unparse(node.test)


def used_names(path: Path) -> list[tuple[str, bool, int]]:
    """``(name, guarded, line)`` for every ``slicer``/``qt``/``ctk`` name a Python file uses."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def guarded(node: ast.AST) -> bool:
        while node in parents:
            parent = parents[node]
            if _is_guard(parent) and (not isinstance(parent, ast.Try) or node in parent.body):
                return True
            node = parent
        return False

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not (isinstance(parents.get(node), ast.Attribute)):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in ("slicer", "qt", "ctk"):
                found.append((checked_name(".".join([value.id, *chain])), guarded(node), node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("slicer", "qt", "ctk"):
            for alias in node.names:
                found.append((checked_name(f"{node.module}.{alias.name}"), guarded(node), node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "slicer" and "." in alias.name:
                    found.append((checked_name(alias.name), guarded(node), node.lineno))
    return found


def ui_names(path: Path) -> list[str]:
    out = []
    for cls in re.findall(r'<widget class="(\w+)"', path.read_text()):
        out.append(f"qt.{cls}" if cls.startswith("Q") else f"ctk.{cls}" if cls.startswith("ctk") else f"slicer.{cls}")
    return out


def test_the_reference_covers_the_checked_versions():
    assert set(REQUIRED) <= set(API["refs"]) and len(VERSIONS) > 1500
    for label in REQUIRED:
        assert re.fullmatch(r"[0-9a-f]{40}", API["refs"][label]["commit"])
    # a few names every Slicer module uses: the reference is complete enough to mean something
    for name in ("slicer.util.loadUI", "slicer.app.processEvents", "slicer.mrmlScene", "qt.QTimer",
                 "ctk.ctkCollapsibleButton", "slicer.qMRMLNodeComboBox", "slicer.vtkMRMLScalarVolumeNode"):
        assert set(REQUIRED) <= VERSIONS.get(name, set()), name


@pytest.mark.parametrize("folder", module_folders(), ids=lambda p: p.name)
def test_every_slicer_qt_ctk_name_exists_in_slicer_5_8_and_5_10(folder):
    missing = []
    for path in python_files(folder):
        for name, guarded, line in used_names(path):
            have = VERSIONS.get(name, set())
            ok = bool(have) if guarded else set(REQUIRED) <= have
            if not ok:
                where = f"{path.relative_to(ROOT)}:{line}"
                missing.append(f"{where}: {name} ({'only in ' + ', '.join(sorted(have)) if have else 'unknown'})")
    for path in ui_files(folder):
        for name in ui_names(path):
            if not set(REQUIRED) <= VERSIONS.get(name, set()):
                missing.append(f"{path.relative_to(ROOT)}: widget class {name}")
    assert not missing, "not in Slicer's source for 5.8 and 5.10:\n" + "\n".join(sorted(set(missing)))


def test_names_are_found_where_they_are_used():
    """The extraction itself, on MedXAI's own sources: chained calls, imports and guards are seen."""
    folder = ROOT / "MedXAI"
    names = {(n, g) for p in python_files(folder) for n, g, _line in used_names(p)}
    assert ("slicer.util.tryWithErrorDisplay", False) in names and ("slicer.app.layoutManager", False) in names
    assert ("slicer.modules.volumerendering", False) in names and ("slicer.qMRMLNodeComboBox", False) in names
    assert ("slicer.i18n.tr", False) in names and ("qt.QTimer", False) in names
    assert ("slicer.packaging", True) in names  # Slicer >= 5.12 only, imported under `except ImportError`
    assert checked_name("qt.Qt.ToolTipRole") == "qt.Qt.ToolTipRole" and checked_name("qt.QTimer.singleShot") == (
        "qt.QTimer")


def _sample_sources() -> list[dict]:
    sys.path.insert(0, str(ROOT / "MedXAI"))
    try:
        from MedXAILogicLib.sample_sources import sample_data_sources
    finally:
        sys.path.remove(str(ROOT / "MedXAI"))
    return sample_data_sources("MedXAI.png", {"MedXAIBrainPhantom": print, "MedXAIChestXray": print})


@pytest.mark.parametrize("version", sorted(API["refs"]))
def test_sample_data_arguments_fit_sampledatasource(version):
    """``registerCustomSampleDataSource`` passes them to ``SampleDataSource``, which takes ``len()`` of its file
    arguments: each must be a sequence, all of one length (``uris`` left out raised a TypeError)."""
    register = API["signatures"][version]["SampleDataLogic.registerCustomSampleDataSource"]
    source_args = API["signatures"][version]["SampleDataSource.__init__"]
    needs_len = API["sample_data_len_arguments"][version]
    assert register and source_args and needs_len
    for source in _sample_sources():
        assert set(source) <= set(register), sorted(set(source) - set(register))
        assert set(source) - {"category"} <= set(source_args)
        lengths = {len(source[name]) for name in needs_len if isinstance(source.get(name), (list, tuple))}
        assert all(isinstance(source.get(name), (list, tuple)) for name in needs_len), needs_len
        assert len(lengths) == 1 and callable(source["customDownloader"])


def _keyword_calls(function: str) -> list[tuple[Path, set[str]]]:
    out = []
    for folder in module_folders():
        for path in python_files(folder):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(function):
                    out.append((path, {k.arg for k in node.keywords if k.arg}))
    return out


def test_keyword_arguments_exist_in_the_called_functions():
    calls = _keyword_calls(".installTorch")
    assert calls, "installTorch is not called"
    for path, keywords in calls:
        assert keywords <= set(API["pytorchutils"]["installTorch"]), (path, keywords)
        assert "torchVersionRequirement" in keywords, "pass MedXAI's minimum torch version to PyTorchUtils"
    ensure = _keyword_calls(".pip_ensure")
    assert ensure
    for path, keywords in ensure:
        assert keywords <= set(API["signatures"]["main"]["slicer.packaging.pip_ensure"]), (path, keywords)


@pytest.mark.skipif(not os.environ.get("MEDXAI_SLICER_SOURCE"), reason="set MEDXAI_SLICER_SOURCE to a Slicer clone")
@pytest.mark.parametrize("version", sorted(API["refs"]))
def test_sample_data_sources_construct_with_slicers_own_class(version):
    """Slicer's real ``SampleDataSource`` (read from the tag, run alone: it needs no Qt) accepts the arguments."""
    ref = API["refs"][version]["commit"]
    text = subprocess.run(["git", "-C", os.environ["MEDXAI_SLICER_SOURCE"], "show",
                           f"{ref}:Modules/Scripted/SampleData/SampleData.py"], capture_output=True, text=True,
                          check=True).stdout
    module = ast.parse(text)
    cls = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "SampleDataSource")
    namespace: dict = {}
    exec(compile(ast.Module(body=[cls], type_ignores=[]), "SampleData.py", "exec"), namespace)  # noqa: S102
    for source in _sample_sources():
        made = namespace["SampleDataSource"](**{k: v for k, v in source.items() if k != "category"})
        assert made.sampleName == source["sampleName"] and made.customDownloader is source["customDownloader"]
        assert made.uris == [] and str(made)


def _slicer_source(version: str, path: str) -> ast.Module:
    ref = API["refs"][version]["commit"]
    return ast.parse(subprocess.run(["git", "-C", os.environ["MEDXAI_SLICER_SOURCE"], "show", f"{ref}:{path}"],
                                    capture_output=True, text=True, check=True).stdout)


def _function(module: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(module) if isinstance(n, ast.FunctionDef) and n.name == name)


def _returns_value(function: ast.FunctionDef) -> bool:
    return any(isinstance(n, ast.Return) and n.value is not None for n in ast.walk(function))


@pytest.mark.skipif(not os.environ.get("MEDXAI_SLICER_SOURCE"), reason="set MEDXAI_SLICER_SOURCE to a Slicer clone")
@pytest.mark.parametrize("version", REQUIRED)
def test_the_parameter_node_wrapper_facts_the_panels_rely_on(version):
    """What ``test_slicer_static.py`` assumes of ``slicer.parameterNodeWrapper``, read from Slicer's source:
    ``connectParametersToGui`` returns the tag ``disconnectGui`` takes (``connectGui`` does only from 5.10 on), and the
    node selector's connector replaces the selector's ``nodeTypes`` with the parameter's class."""
    wrapper = _slicer_source(version, "Base/Python/slicer/parameterNodeWrapper/wrapper.py")
    assert _returns_value(_function(wrapper, "_connectParametersToGui"))
    assert _returns_value(_function(wrapper, "_connectGui")) == (version != "5.8")
    attached = {ast.unparse(c.args[1]): ast.unparse(c.args[2]) for c in ast.walk(wrapper) if isinstance(c, ast.Call)
                and isinstance(c.func, ast.Name) and c.func.id == "checkedSetAttr" and len(c.args) == 3}
    assert attached["'connectParametersToGui'"] == "_connectParametersToGui"
    assert "guiTag" in [a.arg for a in _function(wrapper, "_disconnectGui").args.args]
    connectors = _slicer_source(version, "Base/Python/slicer/parameterNodeWrapper/guiConnectors.py")
    combo = next(n for n in connectors.body
                 if isinstance(n, ast.ClassDef) and n.name == "qMRMLNodeComboBoxToNodeConnector")
    assert "self._widget.nodeTypes = getNodeTypes(datatype)" in ast.unparse(_function(combo, "__init__"))
