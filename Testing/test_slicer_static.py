"""Static checks of the Slicer modules (the panel cannot run outside Slicer), for every module folder the top-level
``CMakeLists.txt`` adds, and of MedXAI's panel in particular.

Every module: its Python compiles with Python 3.9's grammar (Slicer 5.8) and uses ``X | Y`` annotations only under
``from __future__ import annotations``; the module file imports nothing third-party at file scope (its own packages
aside) and runs nothing on import; no file is over 700 lines; its ``.ui`` parses, names are unique, MRML widgets get
the scene, every ``self.ui.X`` used exists; *Reload* reloads its own packages.

MedXAI: the template classes; the parameter node (every choice of the panel is a field: bound to its widget, or set
by the panel and read back when a scene is loaded); the layout (Inputs, Model, Explain, Outputs with "Create new …"
selectors, Advanced collapsed, then Apply/Cancel outside the sections); handlers; the self-test.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from slicer_modules import ROOT, module_folders, packages, python_files, ui_files

MEDXAI = ROOT / "MedXAI"
MODULE = MEDXAI / "MedXAI.py"
UI = MEDXAI / "Resources" / "UI" / "MedXAI.ui"
PANEL = MEDXAI / "MedXAIPanelLib"
SLICER_PROVIDED = {"slicer", "vtk", "qt", "ctk", "__future__"}
MRML_WIDGETS = {"qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget", "qMRMLTableView", "qSlicerMarkupsPlaceWidget"}
MAX_LINES = 700
FOLDERS = module_folders()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return _tree(MODULE)


@pytest.fixture(scope="module")
def ui() -> ET.Element:
    return ET.parse(UI).getroot()


def widgets(ui: ET.Element) -> dict[str, str]:
    """Widget name → class for every widget in the .ui."""
    return {w.get("name"): w.get("class") for w in ui.iter("widget")}


def properties(widget: ET.Element) -> dict[str, str]:
    out = {}
    for prop in widget.findall("property"):
        value = prop.find("*")
        out[prop.get("name")] = (value.text or "") if value is not None and value.tag != "stringlist" else [
            s.text for s in value.iter("string")] if value is not None else ""
    return out


def bindings(ui: ET.Element) -> dict[str, tuple[str, str]]:
    """Parameter name → (widget name, widget class) from the ``SlicerParameterName`` dynamic properties."""
    out: dict[str, tuple[str, str]] = {}
    for w in ui.iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", f"{w.get('name')}: SlicerParameterName must be a dynamic property"
                name = prop.find("string").text
                assert name not in out, f"{name} is bound to two widgets"
                out[name] = (w.get("name"), w.get("class"))
    return out


def parameter_fields(tree: ast.Module) -> dict[str, ast.expr]:
    """Field name → annotation of the ``@parameterNodeWrapper`` class."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(d, ast.Name) and d.id == "parameterNodeWrapper") for d in node.decorator_list
        ):
            return {s.target.id: s.annotation for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in MedXAI.py")


def module_constants(tree: ast.Module) -> dict:
    return {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}


def panel_source() -> str:
    return "\n".join(p.read_text() for p in sorted(PANEL.glob("*.py")))


# ---- every module ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_python_compiles_for_slicer_python_and_files_stay_small(folder):
    for path in python_files(folder):
        text = path.read_text()
        tree = ast.parse(text, feature_version=(3, 9))
        assert len(text.splitlines()) <= MAX_LINES, f"{path.relative_to(ROOT)} is over {MAX_LINES} lines"
        future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                     any(a.name == "annotations" for a in n.names) for n in tree.body)
        if future:
            continue
        # `X | Y` in a def's annotations is evaluated at definition time and fails on Python 3.9
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                annotations = [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation]
                annotations += [node.returns] if node.returns else []
                for annotation in annotations:
                    assert not any(isinstance(n, ast.BinOp) for n in ast.walk(annotation)), (
                        f"{path.name}:{node.name}: use Optional/Union, not X | Y (Python 3.9)")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_module_file_imports_nothing_third_party_and_runs_nothing_on_import(folder):
    tree = _tree(folder / f"{folder.name}.py")
    allowed = set(sys.stdlib_module_names) | SLICER_PROVIDED | set(packages(folder))

    def top_level_imports(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, (ast.If, ast.Try)):  # imports guarded at file scope still run at import
                yield from top_level_imports(node.body)
                yield from top_level_imports(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    yield from top_level_imports(handler.body)

    for node in top_level_imports(tree.body):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            assert name.split(".")[0] in allowed, (
                f"line {node.lineno}: `{name}` imported at file scope; import it inside the function that needs it")
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # docstring
            continue
        assert isinstance(node, ast.Assign), f"line {node.lineno}: a statement that runs on import"
        ast.literal_eval(node.value)  # constants only (raises on a call)


def test_what_the_module_file_imports_at_startup_stays_light():
    """Slicer imports every module at startup: the logic mixins it imports must not pull numpy, torch, vtk or the
    core (they are imported inside the functions that need them)."""
    code = ("import sys; sys.path[:0] = ['MedXAI']; import MedXAILogicLib.logic, MedXAILogicLib.sample_sources; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'torch', 'vtk', 'MedXAILib', 'slicer', "
            "'monai', 'SimpleITK'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_ui_parses_names_are_unique_and_every_used_widget_exists(folder):
    for path in ui_files(folder):
        ui = ET.parse(path).getroot()
        assert ui.tag == "ui" and ui.find("class").text == path.stem
        names = [w.get("name") for w in ui.iter("widget")]
        assert len(names) == len(set(names)), "duplicate widget names"
        assert ui.find("widget").get("class") == "qMRMLWidget"
        connected = {c.find("receiver").text for c in ui.iter("connection")
                     if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"}
        mrml = {name for name, cls in widgets(ui).items() if cls in MRML_WIDGETS}
        assert mrml <= connected, f"MRML widgets without the scene: {sorted(mrml - connected)}"
        custom = {c.find("class").text for c in ui.iter("customwidget")}
        used = {cls for cls in widgets(ui).values() if not cls.startswith("Q")}
        assert used <= custom, f"custom widgets not declared: {sorted(used - custom)}"
    names = {w.get("name") for path in ui_files(folder) for w in ET.parse(path).getroot().iter("widget")}
    used = {}
    for path in python_files(folder):
        for node in ast.walk(_tree(path)):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
                used[node.attr] = path.name
    missing = sorted(f"{name} ({file})" for name, file in used.items() if name not in names)
    assert not missing, f"self.ui.X not in the .ui: {missing}"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_reload_reloads_the_modules_own_packages(folder):
    own = packages(folder)
    if not own:
        pytest.skip(f"{folder.name} has no package of its own")
    tree = _tree(folder / f"{folder.name}.py")
    constants = module_constants(tree)
    assert sorted(constants.get("MODULE_PACKAGES", [])) == own, "MODULE_PACKAGES must list every own package"
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{folder.name}Widget")
    reload = next(f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == "onReload")
    source = ast.unparse(reload)
    assert "reload_packages(MODULE_PACKAGES)" in source and "ScriptedLoadableModuleWidget.onReload(self)" in source


def _ui_widget_name(expr: ast.expr) -> str | None:
    """``W`` for ``self.ui.W`` / ``ui.W``."""
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, (ast.Attribute, ast.Name)):
        owner = expr.value.attr if isinstance(expr.value, ast.Attribute) else expr.value.id
        return expr.attr if owner == "ui" else None
    return None


def _walk_now(node: ast.AST):
    """``ast.walk`` without the bodies of functions defined inside (callbacks run later, not in the slot)."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        todo.extend(child for child in ast.iter_child_nodes(current)
                    if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _self_calls(node: ast.AST, methods: dict) -> list:
    return [methods[c.func.attr] for c in _walk_now(node) if isinstance(c, ast.Call)
            and isinstance(c.func, ast.Attribute) and isinstance(c.func.value, ast.Name) and c.func.value.id == "self"
            and c.func.attr in methods]


def _reads_of(function: ast.FunctionDef, name: str, methods: dict, seen: set) -> list[str]:
    """Where ``function`` (and the methods of its class it calls, transitively) reads an attribute ``name`` that is
    not a widget of the ``.ui``."""
    if function.name in seen:
        return []
    seen.add(function.name)
    found = [f"{function.name}:{n.lineno}" for n in _walk_now(function)
             if isinstance(n, ast.Attribute) and n.attr == name and isinstance(n.ctx, ast.Load)
             and _ui_widget_name(n) is None]
    for callee in _self_calls(function, methods):
        found += _reads_of(callee, name, methods, seen)
    return found


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_slots_of_bound_widgets_take_the_new_value_from_the_signal(folder):
    """A slot the panel connects (in ``setup``) to a widget that is also bound to a parameter runs *before* the
    parameter node's connector stores the new value: Slicer's ``connectGui`` connects its connectors later
    (``parameterNodeWrapper/guiConnectors.py``: each connector's ``_connect`` runs in ``connectGui``; Qt calls slots in
    connection order). Such a slot (or a method of its class it calls) must not read that parameter: it would see
    the previous value (the reader list of the previous study, the previous model file's description)."""
    bound: dict[str, str] = {}
    for path in ui_files(folder):
        bound.update({widget: name for name, (widget, _cls) in bindings(ET.parse(path).getroot()).items()})
    stale = []
    for path in python_files(folder):
        for cls in (n for n in ast.walk(_tree(path)) if isinstance(n, ast.ClassDef)):
            methods = {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}
            for call in (n for n in ast.walk(cls) if isinstance(n, ast.Call)):
                if not (isinstance(call.func, ast.Attribute) and call.func.attr == "connect" and len(call.args) == 2):
                    continue
                widget = _ui_widget_name(call.func.value)
                if widget not in bound:
                    continue
                slot = call.args[1]
                if isinstance(slot, ast.Attribute) and isinstance(slot.value, ast.Name) and slot.attr in methods:
                    functions = [methods[slot.attr]]
                else:
                    functions = _self_calls(slot, methods)
                for function in functions:
                    for where in _reads_of(function, bound[widget], methods, set()):
                        stale.append(f"{path.name}: {widget} -> {ast.unparse(slot)} reads {bound[widget]} at {where}")
    assert not stale, stale


def test_reload_packages_reads_the_package_from_disk_again(tmp_path, monkeypatch):
    """Slicer's reload re-executes the module file only; the packages must be read again too."""
    sys.path.insert(0, str(MEDXAI))
    from MedXAILogicLib.reloading import reload_packages

    package = tmp_path / "reloadme"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "part.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import reloadme.part

    assert reloadme.part.VALUE == 1
    (package / "part.py").write_text("VALUE = 2  # edited\n")
    assert "reloadme.part" in reload_packages(["reloadme"])
    import reloadme.part as again

    assert again.VALUE == 2 and again is not reloadme.part
    for name in [m for m in sys.modules if m.startswith("reloadme")]:
        del sys.modules[name]


# ---- MedXAI's panel ------------------------------------------------------------------------------------------------
def test_template_classes_exist(tree):
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    bases = {name: [ast.unparse(b) for b in c.bases] for name, c in classes.items()}
    assert bases["MedXAI"] == ["ScriptedLoadableModule"]
    assert bases["MedXAIWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert bases["MedXAILogic"] == ["ScriptedLoadableModuleLogic", "MedXAILogicBase"]
    assert bases["MedXAITest"] == ["ScriptedLoadableModuleTest"]
    assert "MedXAIParameterNode" in classes


def test_one_widget_class_per_section_and_a_thin_widget(tree):
    sections = {"inputs": "InputsSection", "model": "ModelSection", "explain": "ExplainSection",
                "results": "ResultsSection", "evaluate": "EvaluateSection", "report": "ReportSection",
                "run": "RunSection"}
    for module, cls in sections.items():
        section = _tree(PANEL / f"{module}.py")
        found = [n for n in section.body if isinstance(n, ast.ClassDef) and n.name == cls]
        assert found and [ast.unparse(b) for b in found[0].bases] == ["Section"], cls
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAIWidget")
    assert len(ast.unparse(widget).splitlines()) < 120, "MedXAIWidget composes the sections; it holds no section"
    logic = _tree(MEDXAI / "MedXAILogicLib" / "logic" / "__init__.py")
    base = next(n for n in logic.body if isinstance(n, ast.ClassDef) and n.name == "MedXAILogicBase")
    assert {ast.unparse(b) for b in base.bases} == {"InputsLogic", "ModelLogic", "ExplainLogic", "ResultsLogic",
                                                   "EvaluateLogic", "ReportLogic", "DependenciesLogic"}


def test_handlers_show_errors_and_strings_are_translatable():
    handlers = 0
    for path in sorted(PANEL.glob("*.py")):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("on") and node.name.endswith("Button"):
                handlers += 1
                assert "slicer.util.tryWithErrorDisplay(_(" in ast.unparse(node), f"{path.name}: {node.name}"
            dialogs = ("slicer.util.errorDisplay", "slicer.util.confirmOkCancelDisplay",
                       "slicer.util.confirmYesNoDisplay")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in dialogs:
                first = node.args[0]
                assert isinstance(first, ast.Call) and ast.unparse(first).startswith("_("), ast.unparse(node)
    assert handlers >= 10


def test_every_choice_is_in_the_parameter_node(tree, ui):
    """Bound to its widget (``SlicerParameterName``), or set by the panel and read back in a ``restore``."""
    fields = parameter_fields(tree)
    bound = bindings(ui)
    unknown = sorted(set(bound) - set(fields))
    assert not unknown, f"SlicerParameterName not in MedXAIParameterNode: {unknown}"
    code_set = module_constants(tree)["CODE_SET_PARAMETERS"]
    assert not set(code_set) & set(bound), "a parameter set from code must not also be bound to a widget"
    unbound = sorted(set(fields) - set(bound) - set(code_set))
    assert not unbound, f"parameters without a widget: {unbound}"
    source = panel_source()
    restores = "\n".join(ast.unparse(f) for p in PANEL.glob("*.py") for f in ast.walk(_tree(p))
                         if isinstance(f, ast.FunctionDef) and f.name in ("restore", "fillModelList", "fillMethods",
                                                                         "followModel", "savedValues", "modelArgument"))
    for name in code_set:
        assert re.search(rf"\bp\.{name} = |\.parameterNode\.{name} = ", source), f"the panel never sets {name}"
        assert re.search(rf"\b(?:p|self\.parameterNode)\.{name}\b", restores), f"{name} is not shown again"
    # every input widget of the .ui is a choice kept in the parameter node (bound, or code-set through its section)
    inputs = {"QComboBox", "QCheckBox", "QLineEdit", "QDoubleSpinBox", "QSpinBox", "ctkSliderWidget",
              "ctkPathLineEdit", "qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget"}
    code_widgets = {"modelComboBox": "modelName", "methodComboBox": "method", "targetClassComboBox": "targetClass",
                    "targetSegmentSelector": "targetSegmentation", "predictionSegmentSelector": "evaluatePrediction",
                    "referenceSegmentSelector": "evaluateReferenceSegmentID"}
    bound_widgets = {w for w, _cls in bound.values()}
    for name, cls in widgets(ui).items():
        if cls in inputs:
            assert name in bound_widgets or code_widgets.get(name) in code_set, f"{name} ({cls}) is not saved"


def _widget_can_represent(widget_class: str, annotation: ast.expr) -> bool:
    """Mirror of the parameter node wrapper's GUI connectors for the types this module uses."""
    text = ast.unparse(annotation)
    base = ast.unparse(annotation.slice.elts[0]) if text.startswith("Annotated[") else text
    if base.startswith("vtkMRML"):
        return widget_class == "qMRMLNodeComboBox"
    if base == "bool":
        return widget_class in ("QCheckBox", "QPushButton")
    if base == "float":
        return widget_class == "QDoubleSpinBox" or (widget_class == "ctkSliderWidget" and "WithinRange" in text)
    if base == "int":
        return widget_class in ("QSpinBox", "QSlider")
    if base == "str":
        if widget_class == "QComboBox":
            return "Choice(" in text  # a combo box needs the Choice annotation
        return widget_class in ("QLineEdit", "QTextEdit")
    if base in ("pathlib.Path", "Path"):
        return widget_class == "ctkPathLineEdit"
    return False


def test_widgets_can_represent_their_parameter_types(tree, ui):
    fields = parameter_fields(tree)
    for name, (widget_name, widget_class) in bindings(ui).items():
        assert _widget_can_represent(widget_class, fields[name]), (
            f"{widget_name} ({widget_class}) cannot show {name}: {ast.unparse(fields[name])}")


def _offered(node_types: list[str], show_children: bool, hidden: list[str]) -> set[str]:
    """The MRML node classes a ``qMRMLNodeComboBox`` lists, by ``qMRMLSortFilterProxyModel::filterAcceptsRow``
    (Slicer 5.8 and 5.10): a node that ``IsA`` one of ``nodeTypes``; with ``showChildNodeTypes`` off only that exact
    class, with it on every subclass less those that ``IsA`` one of ``hideChildNodeTypes``. Classes: every node class
    registered in a real scene (``slicer-core``)."""
    import slicer

    scene = slicer.vtkMRMLScene()
    offered = set()
    for i in range(scene.GetNumberOfRegisteredNodeClasses()):
        name = scene.GetNthRegisteredNodeClass(i).GetClassName()
        node = scene.CreateNodeByClass(name)
        for node_type in node_types:
            if not node.IsA(node_type) or (not show_children and name != node_type):
                continue
            if show_children and any(node.IsA(h) for h in hidden):
                break
            offered.add(name)
            break
    return offered


def test_node_selectors_offer_only_nodes_their_parameter_accepts(tree, ui):
    """What each node selector lists once Slicer has connected it: the parameter node's connector replaces the
    ``.ui``'s ``nodeTypes`` with the parameter's class (``qMRMLNodeComboBoxToNodeConnector``: ``nodeTypes =
    getNodeTypes(datatype)``, 5.8 and 5.10), so the ``.ui`` must say that class, and every node offered must be one
    the parameter holds (real MRML ``IsA``). Input rows offer scalar and RGB (vector) volumes, never label maps, and
    the rows made in code offer the same."""
    import slicer

    constants = module_constants(_tree(MEDXAI / "MedXAILogicLib" / "logic" / "inputs.py"))
    rows = set(constants["INPUT_NODE_TYPES"])
    fields = parameter_fields(tree)
    by_name = {w.get("name"): w for w in ui.iter("widget")}
    for name, (widget_name, widget_class) in bindings(ui).items():
        if widget_class != "qMRMLNodeComboBox":
            continue
        props = properties(by_name[widget_name])
        annotation = ast.unparse(fields[name])
        assert props["nodeTypes"] == [annotation], f"{widget_name}: the connector sets nodeTypes to [{annotation}]"
        offered = _offered([annotation], props.get("showChildNodeTypes", "true") == "true",
                           props.get("hideChildNodeTypes", []))
        assert annotation in offered and all(getattr(slicer, c)().IsA(annotation) for c in offered), widget_name
        if name.startswith("inputVolume"):
            assert offered == rows, f"{widget_name} offers {sorted(offered)}"
    assert _offered(list(constants["INPUT_SELECTOR_NODE_TYPES"]), True,
                    list(constants["INPUT_HIDDEN_NODE_TYPES"])) == rows
    assert "INPUT_SELECTOR_NODE_TYPES" in (PANEL / "inputs.py").read_text()


def test_layout_inputs_outputs_advanced_then_apply_and_cancel(ui):
    """Slicer's and the reference extensions' order; Apply/Cancel outside any section (collapsing hides nothing)."""
    layout = ui.find("widget").find("layout")
    top = [item.find("widget") for item in layout.findall("item") if item.find("widget") is not None]
    names = [w.get("name") for w in top]
    order = ["inputsCollapsibleButton", "modelCollapsibleButton", "explainCollapsibleButton",
             "outputsCollapsibleButton", "advancedCollapsibleButton", "runButtonsWidget"]
    assert names[:len(order)] == order
    assert properties(top[4]).get("collapsed") == "true", "Advanced starts collapsed"
    run_buttons = {w.get("name") for w in top[5].iter("widget")}
    assert {"applyButton", "cancelButton"} <= run_buttons
    for section in top[:5]:
        inside = {w.get("name") for w in section.iter("widget")}
        assert not inside & {"applyButton", "cancelButton"}
    by_name = {w.get("name"): w for w in ui.iter("widget")}
    outputs = {w.get("name") for w in top[3].iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    assert outputs == {"predictionSelector", "heatmapSelector", "resultsTableSelector"}
    for name in outputs:
        props = properties(by_name[name])
        assert props["noneDisplay"].startswith("Create new ") and props["addEnabled"] == "true", name
    advanced = {w.get("name") for w in top[4].iter("widget")}
    assert {"useGpuCheckBox", "nnunetFoldsLineEdit", "nnunetCheckpointComboBox", "nnunetMirroringCheckBox",
            "totalSegmentatorFastCheckBox", "shapPlotCheckBox"} <= advanced
    for name in ("modelCardLabel", "modelWarningLabel"):
        assert name in {w.get("name") for w in top[1].iter("widget")}, f"{name} sits beside the model"


def test_panel_follows_the_model_and_runs_everything_in_the_background():
    source = panel_source()
    for needle in ("startCatalogRefresh(", "pollCatalog(", "addPoller(", "startDescribe(", "methodParameterSpecs(",
                   "entry.channels", "target_classes()", "targetPointPlaceWidget.setCurrentNode",
                   "qMRMLNodeComboBox()", "getExistingDirectory(", "showSegmentation3D(", "showHeatmap3D(",
                   "offerResampling(", "confirmYesNoDisplay(", "spin_box_decimals(", "ensureOptionalPackages(",
                   "showSeriesStep(", "shap_plot_png", "domain_warning", "colourNotes(", "needs_class_target"):
        assert needle in source, f"the panel does not use {needle}"
    # nothing in the panel waits for a child process: every job goes to the job controls
    for blocking in ("waitForCompletion=True", ".wait(", "listModels(", "listMethods(", "modelEntry(",
                     "estimateCost("):
        assert blocking not in source, f"the panel blocks on {blocking}"
    for start in ("logic.evaluate(", "logic.evaluateExplanation(", "logic.startEstimate(", "logic.compare(",
                  "logic.writeCaseReport(", "logic.explain(", "logic.segment(", "logic.classify("):
        assert start in source
    assert source.count("self.jobs.run(") >= 7


def test_spin_boxes_get_decimals_before_range_and_value():
    """Qt rounds the range and the value to the decimals: they must be set first."""
    source = (PANEL / "explain.py").read_text()
    decimals = source.index("widget.decimals =")
    assert decimals < source.index("widget.minimum, widget.maximum =") < source.index("widget.value =")


def test_self_test_covers_the_flow_and_installs_nothing_in_testing_mode(tree):
    test = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAITest")
    source = ast.unparse(test)
    for step in ("loadPhantomCase", "loadChestXrayCase", ".segment(", ".explain(", ".classify(", "overlay",
                 ".evaluate(", ".evaluateExplanation(", ".cancel(", "waitForCompletion=True", "thresholdHeatmap",
                 "setHeatmapOpacity", "showSegmentation3D", "showHeatmap3D", "SetAndObserveTransformNodeID",
                 "segment_terminology", "listModels("):
        assert step in source, f"the self-test does not exercise {step}"
    methods = {f.name: f for f in test.body if isinstance(f, ast.FunctionDef)}
    setup = ast.unparse(methods["setUp"])
    assert "slicer.mrmlScene.Clear()" in setup and "ensureDependencies(askConfirmation=False)" in setup
    assert "self.skipTest(" in setup  # nothing installed on a build machine: the tests skip
    set_in_setup = {t.attr for n in ast.walk(methods["setUp"]) if isinstance(n, ast.Assign) for t in n.targets
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    tests = [f for name, f in methods.items() if name.startswith("test_")]
    assert len(tests) >= 4
    for f in tests:  # ctest loads the case by name: methods run alphabetically, each after setUp, without runTest
        written = {t.attr for n in ast.walk(f) if isinstance(n, ast.Assign) for t in n.targets
                   if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
        assert not written, f"{f.name} leaves state on self for another test: {written}"
        read = {n.attr for n in ast.walk(f) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                and n.value.id == "self" and not n.attr.startswith(("assert", "delayDisplay", "fail"))}
        assert read <= set_in_setup, f"{f.name} needs {read - set_in_setup}, which setUp does not make"
    run = ast.unparse(methods["runTest"])
    assert "self.setUp()" in run and "test_" in run
    dependencies = (MEDXAI / "MedXAILogicLib" / "logic" / "dependencies.py").read_text()
    assert "skip_in_testing=False" in dependencies and dependencies.count("self._installAllowed()") >= 3


def test_sample_data_is_registered_after_startup(tree):
    assert 'slicer.app.connect("startupCompleted()", registerSampleData)' in MODULE.read_text()
    register = ast.unparse(next(n for n in tree.body if isinstance(n, ast.FunctionDef)
                                and n.name == "registerSampleData"))
    assert "registerCustomSampleDataSource(**source)" in register and "sample_data_sources(" in register
    assert "loadPhantomSample" in register and "loadChestXraySample" in register
    assert "except Exception" not in register  # a wrong call is not hidden in the log any more


def test_contributors_are_the_extensions(tree):
    contributors = module_constants(tree)["CONTRIBUTORS"]
    cmake = (ROOT / "CMakeLists.txt").read_text()
    listed = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', cmake).group(1)
    assert contributors and all(c in listed for c in contributors)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_the_gui_binding_tag_comes_from_connect_parameters_to_gui(folder):
    """``connectGui`` returns no tag before Slicer 5.10 (its ``_connectGui`` drops the tag that
    ``_connectParametersToGui`` returns; checked against Slicer's source in ``test_slicer_api_names.py``), so a tag
    stored from it makes every ``disconnectGui`` a no-op on 5.8: the widgets stay bound to old parameter nodes and
    every enter adds another set of connectors. The tag must come from ``connectParametersToGui``."""
    disconnects, tagged = 0, 0
    for path in python_files(folder):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and isinstance(node.value.func, ast.Attribute):
                assert node.value.func.attr != "connectGui", f"{path.name}:{node.lineno} stores connectGui's result"
                tagged += node.value.func.attr == "connectParametersToGui"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                disconnects += node.func.attr == "disconnectGui"
    assert not disconnects or tagged, f"{folder.name} disconnects its GUI but keeps no tag"
