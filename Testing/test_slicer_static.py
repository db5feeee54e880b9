"""Static checks of the Slicer panel (``MedXAI/MedXAI.py`` and its ``.ui``), which cannot run outside Slicer.

- the module compiles, also with Python 3.9's grammar (Slicer 5.8 ships 3.9) and without runtime ``X | Y``
  annotations;
- nothing third-party is imported at file scope and nothing runs on import;
- the ``.ui`` parses, its widget names are unique and its MRML widgets get the scene;
- every ``SlicerParameterName`` is a field of ``MedXAIParameterNode``, every field is bound, and each widget's class
  can represent its field's type (the parameter node wrapper's connectors);
- every ``self.ui.X`` used in ``MedXAI.py`` exists in the ``.ui``;
- the self-test covers the whole flow.
"""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "MedXAI" / "MedXAI.py"
UI = ROOT / "MedXAI" / "Resources" / "UI" / "MedXAI.ui"
SLICER_PROVIDED = {"slicer", "vtk", "qt", "ctk", "__future__"}
MRML_WIDGETS = {"qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget", "qMRMLTableView", "qSlicerMarkupsPlaceWidget"}


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(MODULE.read_text(), filename=str(MODULE))


@pytest.fixture(scope="module")
def ui() -> ET.Element:
    return ET.parse(UI).getroot()


def widgets(ui: ET.Element) -> dict[str, str]:
    """Widget name → class for every widget in the .ui."""
    return {w.get("name"): w.get("class") for w in ui.iter("widget")}


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
            assert node.name == "MedXAIParameterNode"
            return {s.target.id: s.annotation for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in MedXAI.py")


def test_module_compiles_for_slicer_python(tree):
    compile(MODULE.read_text(), str(MODULE), "exec")
    ast.parse(MODULE.read_text(), feature_version=(3, 9))
    # `X | Y` in a def's annotations is evaluated at definition time and fails on Python 3.9
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations = [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation]
            annotations += [node.returns] if node.returns else []
            for annotation in annotations:
                assert not any(isinstance(n, ast.BinOp) for n in ast.walk(annotation)), (
                    f"{node.name}: use Optional/Union, not X | Y (Python 3.9)")


def test_no_third_party_import_at_file_scope(tree):
    stdlib = set(sys.stdlib_module_names)

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
            root = name.split(".")[0]
            assert root in stdlib or root in SLICER_PROVIDED, (
                f"line {node.lineno}: `{name}` imported at file scope; import it inside the function that needs it")


def test_nothing_runs_on_import(tree):
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # docstring
            continue
        if isinstance(node, ast.Assign):
            ast.literal_eval(node.value)  # constants only (raises on a call)
            continue
        raise AssertionError(f"line {node.lineno}: a statement that runs on import ({type(node).__name__})")


def test_template_classes_exist(tree):
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    bases = {name: [ast.unparse(b) for b in c.bases] for name, c in classes.items()}
    assert bases["MedXAI"] == ["ScriptedLoadableModule"]
    assert bases["MedXAIWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert bases["MedXAILogic"] == ["ScriptedLoadableModuleLogic"]
    assert bases["MedXAITest"] == ["ScriptedLoadableModuleTest"]
    assert "MedXAIParameterNode" in classes


def test_handlers_show_errors_and_strings_are_translatable(tree):
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAIWidget")
    handlers = [f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name.startswith("on")
                and f.name.endswith(("Button", "Cancel"))]
    assert len(handlers) >= 6
    for handler in handlers:
        source = ast.unparse(handler)
        if handler.name == "onApplyButton":  # delegates to onCancel while running
            assert "tryWithErrorDisplay" in source
            continue
        assert "slicer.util.tryWithErrorDisplay(_(" in source, f"{handler.name} must use tryWithErrorDisplay"
    # user-facing message boxes take translated strings
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("slicer.util.errorDisplay",
                                                                      "slicer.util.confirmOkCancelDisplay"):
            first = node.args[0]
            assert isinstance(first, ast.Call) and ast.unparse(first).startswith("_("), ast.unparse(node)


def test_ui_parses_and_names_are_unique(ui):
    assert ui.tag == "ui" and ui.find("class").text == "MedXAI"
    names = [w.get("name") for w in ui.iter("widget")]
    assert len(names) == len(set(names)), "duplicate widget names"
    root = ui.find("widget")
    assert root.get("class") == "qMRMLWidget"
    connected = {c.find("receiver").text for c in ui.iter("connection")
                 if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {name for name, cls in widgets(ui).items() if cls in MRML_WIDGETS}
    assert mrml <= connected, f"MRML widgets without the scene: {sorted(mrml - connected)}"
    custom = {c.find("class").text for c in ui.iter("customwidget")}
    used = {cls for cls in widgets(ui).values() if not cls.startswith("Q")}
    assert used <= custom, f"custom widgets not declared: {sorted(used - custom)}"


def module_constants(tree: ast.Module) -> dict:
    return {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}


def widget_class(tree: ast.Module) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAIWidget")


def test_every_binding_is_a_parameter_and_every_parameter_is_bound(tree, ui):
    fields = parameter_fields(tree)
    bound = bindings(ui)
    unknown = sorted(set(bound) - set(fields))
    assert not unknown, f"SlicerParameterName not in MedXAIParameterNode: {unknown}"
    code_set = module_constants(tree)["CODE_SET_PARAMETERS"]
    assert not set(code_set) & set(bound), "a parameter set from code must not also be bound to a widget"
    unbound = sorted(set(fields) - set(bound) - set(code_set))
    assert not unbound, f"parameters without a widget: {unbound}"
    # every parameter set from code really is set by the panel (its choices come from the model or the method)
    source = ast.unparse(widget_class(tree))
    for name in code_set:
        assert name in fields, name
        assert f"self._parameterNode.{name} = " in source, f"the panel never sets {name}"
        assert ast.unparse(fields[name]) == "str", f"{name}: a code-set parameter is a plain str"


def _widget_can_represent(widget_class: str, annotation: ast.expr) -> bool:
    """Mirror of the parameter node wrapper's GUI connectors for the types this module uses."""
    text = ast.unparse(annotation)
    base = text
    if text.startswith("Annotated["):
        base = ast.unparse(annotation.slice.elts[0])
    if base.startswith("vtkMRML"):
        return widget_class == "qMRMLNodeComboBox"
    if base == "bool":
        return widget_class in ("QCheckBox", "QPushButton")
    if base == "float":
        bounded = "WithinRange" in text
        return widget_class == "QDoubleSpinBox" or (widget_class == "ctkSliderWidget" and bounded)
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


def test_node_selectors_accept_their_parameter_node_class(tree, ui):
    fields = parameter_fields(tree)
    by_name = {w.get("name"): w for w in ui.iter("widget")}
    for name, (widget_name, widget_class) in bindings(ui).items():
        if widget_class != "qMRMLNodeComboBox":
            continue
        node_types = [s.text for p in by_name[widget_name].findall("property") if p.get("name") == "nodeTypes"
                      for s in p.iter("string")]
        assert node_types == [ast.unparse(fields[name])], f"{widget_name}: nodeTypes {node_types}"


def test_every_ui_attribute_used_in_code_exists(tree, ui):
    names = set(widgets(ui))
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert used, "no self.ui.X found"
    missing = sorted(used - names)
    assert not missing, f"self.ui.X not in MedXAI.ui: {missing}"


def test_choices_fill_the_combo_boxes(tree):
    # the Choice lists are module constants; they must not be empty and must hold the defaults
    consts = module_constants(tree)
    fields = {n.target.id: n for n in ast.walk(tree) if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    for field, const in (("targetKind", "TARGET_CHOICES"), ("steps", "STEP_CHOICES")):
        assert const in ast.unparse(fields[field].annotation)
        assert ast.literal_eval(fields[field].value) in consts[const]
    # model and method lists come from the core at run time; the fallbacks hold the defaults
    assert {"demo-brain-tumour", "demo-chest-xray"} <= set(consts["BUILTIN_MODEL_NAMES"])
    assert ast.literal_eval(fields["modelName"].value) in consts["BUILTIN_MODEL_NAMES"]
    assert ast.literal_eval(fields["method"].value) in consts["METHOD_CHOICES"]
    assert "gradcam" in consts["METHOD_CHOICES"]


def test_panel_follows_the_model(tree, ui):
    """Model list, input rows from channel names, class drop-down, parameter widgets, point placing, 3D."""
    classes = widgets(ui)
    assert classes["modelComboBox"] == "QComboBox" and classes["refreshModelsButton"] == "QPushButton"
    assert classes["targetClassComboBox"] == "QComboBox", "the target class is a drop-down of the model's classes"
    assert "targetClassLineEdit" not in classes and "methodParametersLineEdit" not in classes
    assert classes["methodParametersWidget"] == "QWidget" and classes["extraInputsWidget"] == "QWidget"
    assert classes["targetPointPlaceWidget"] == "qSlicerMarkupsPlaceWidget"
    assert classes["browseModelFolderButton"] == "QPushButton"
    assert classes["show3DButton"] == "QPushButton" and classes["volumeRenderCheckBox"] == "QCheckBox"
    assert classes["thresholdSegmentationSelector"] == "qMRMLNodeComboBox"
    source = ast.unparse(widget_class(tree))
    for needle in ("listModels(", "listMethods(", "methodParameterSpecs(", "entry.channels", "target_classes()",
                   "targetPointPlaceWidget.setCurrentNode(", "qMRMLNodeComboBox()", "getExistingDirectory(",
                   "showSegmentation3D(", "showHeatmap3D(", "_offerResampling(", "confirmYesNoDisplay(",
                   "p.thresholdSegmentation", "isClassificationModel("):
        assert needle in source, f"the panel does not use {needle}"
    # the views follow the heat-map and table selectors
    connected = {(c.args[0].value, ast.unparse(c.args[1])) for c in ast.walk(widget_class(tree))
                 if isinstance(c, ast.Call) and ast.unparse(c.func).endswith(".connect") and len(c.args) == 2
                 and isinstance(c.args[0], ast.Constant)}
    assert ("currentNodeChanged(vtkMRMLNode*)", "self.onHeatmapSelected") in connected
    assert ("currentNodeChanged(vtkMRMLNode*)", "self.onTableSelected") in connected
    assert ("currentPathChanged(QString)", "self.onModelPathChanged") in connected


def test_no_deprecated_or_missing_slicer_api():
    for path in sorted((ROOT / "MedXAI").rglob("*.py")):
        text = path.read_text()
        assert "slicer.pydeps" not in text, f"{path.name}: slicer.pydeps does not exist"
        # deprecated since Slicer 5.10 (logs an error on every call); still needed by 5.8 to keep colour names
        for match in re.finditer(r"\.SetNamesInitialised\(", text):
            before = text[max(0, match.start() - 120):match.start()]
            assert 'if not hasattr(node, "SetColorDefined"):' in before, f"{path.name}: unguarded SetNamesInitialised"
    module = MODULE.read_text()
    assert "sys.executable" not in module
    jobs = (ROOT / "MedXAI" / "MedXAILogicLib" / "jobs.py").read_text()
    assert 'which("PythonSlicer")' in jobs


def test_self_test_covers_the_whole_flow(tree):
    test = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAITest")
    source = ast.unparse(test)
    for step in ("loadPhantomCase", "loadChestXrayCase", ".segment(", ".explain(", ".classify(", "overlay",
                 ".evaluate(", ".evaluateExplanation(", ".cancel(", "waitForCompletion=True", "thresholdHeatmap",
                 "setHeatmapOpacity", "showSegmentation3D", "showHeatmap3D", "SetAndObserveTransformNodeID",
                 "segment_terminology", "listModels("):
        assert step in source, f"the self-test does not exercise {step}"
    methods = {f.name: f for f in test.body if isinstance(f, ast.FunctionDef)}
    assert {"setUp", "runTest"} <= set(methods)


def test_self_test_methods_stand_alone(tree):
    """ctest loads the case by name: test methods run alphabetically, each after setUp, without runTest."""
    test = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAITest")
    methods = {f.name: f for f in test.body if isinstance(f, ast.FunctionDef)}
    setup = ast.unparse(methods["setUp"])
    assert "slicer.mrmlScene.Clear()" in setup and "ensureDependencies(askConfirmation=False)" in setup
    set_in_setup = {t.attr for n in ast.walk(methods["setUp"]) if isinstance(n, ast.Assign) for t in n.targets
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    tests = [f for name, f in methods.items() if name.startswith("test_")]
    assert len(tests) >= 4
    for f in tests:
        written = {t.attr for n in ast.walk(f) if isinstance(n, ast.Assign) for t in n.targets
                   if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
        assert not written, f"{f.name} leaves state on self for another test: {written}"
        read = {n.attr for n in ast.walk(f) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                and n.value.id == "self" and not n.attr.startswith(("assert", "delayDisplay", "fail"))}
        assert read <= set_in_setup, f"{f.name} needs {read - set_in_setup}, which setUp does not make"
    run = ast.unparse(methods["runTest"])
    assert "self.setUp()" in run and "test_" in run  # Reload and Test runs every method after its own setUp
    # testing mode installs the dependencies explicitly (pip_ensure skips them there otherwise)
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAILogic")
    ensure = ast.unparse(next(f for f in logic.body if isinstance(f, ast.FunctionDef)
                              and f.name == "ensureDependencies"))
    assert "testingEnabled()" in ensure and "skip_in_testing=False" in ensure
    assert "declined" in ensure and "return False" in ensure  # a declined install is a False, not an exception


def test_sample_data_is_registered_after_startup(tree):
    source = MODULE.read_text()
    assert 'slicer.app.connect("startupCompleted()", registerSampleData)' in source
    register = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "registerSampleData")
    assert "registerCustomSampleDataSource" in ast.unparse(register)
    assert "customDownloader" in ast.unparse(register)  # generated locally, no download
    # one sample per built-in model: the brain phantom and the chest X-ray
    assert "loadPhantomSample" in ast.unparse(register) and "loadChestXraySample" in ast.unparse(register)


def test_dependencies_go_through_pytorchutils_and_pip_ensure(tree):
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAILogic")
    ensure = next(f for f in logic.body if isinstance(f, ast.FunctionDef) and f.name == "ensureDependencies")
    source = ast.unparse(ensure)
    assert "PyTorchUtils" in source and "installTorch" in source
    assert "pip_ensure" in source and "pip_install" in source
    assert "pip_install('torch" not in source and 'pip_install("torch' not in source
