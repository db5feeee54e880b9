"""The MedXAI Reader Study Slicer module: its Qt-free logic on real MRML (``slicer-core``), a killed process, and
static checks of the panel and its packaging (the panel itself runs only inside Slicer: its self-test).
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from study_helpers import tiny_study

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "MedXAIReaderStudy"
for p in (ROOT, MODULE_DIR):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import slicer  # noqa: E402
import vtk  # noqa: E402
from ReaderStudyLib.reading import ReadingLogic  # noqa: E402
from ReaderStudyLib.scene import HEAT_COLOR_NODE_ID, READING_ATTRIBUTE  # noqa: E402
from test_slicer_packaging import cmake_list, shipped_files  # noqa: E402
from test_slicer_static import bindings, widgets  # noqa: E402
from vtk.util.numpy_support import vtk_to_numpy  # noqa: E402

from MedXAILib.errors import InputError  # noqa: E402
from MedXAILib.io import read_image  # noqa: E402
from MedXAILib.study.records import read_records  # noqa: E402

PANEL = MODULE_DIR / "MedXAIReaderStudy.py"
UI = MODULE_DIR / "Resources" / "UI" / "MedXAIReaderStudy.ui"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def study(tmp_path_factory, tmp_path) -> Path:
    return tiny_study(tmp_path_factory, tmp_path / "study")


def volume_nodes(scene) -> list:
    return [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]


def test_reading_in_mrml_shows_the_arm_with_exact_geometry(study):
    scene = slicer.vtkMRMLScene()
    clock = Clock()
    logic = ReadingLogic(scene, clock=clock)
    progress = logic.open(str(study), "r1")
    assert progress["total"] == 8 and progress["done"] == 0
    protocol = json.loads((study / "study.json").read_text())
    case_ids = [json.loads((study / "truth" / f"{k}.json").read_text())["case"] for k in protocol["cases"]]
    seen_arms = set()
    while (nodes := logic.show_next()) is not None:
        info = logic.case_info()
        assert not {"truth", "case", "id"} & set(info) and info["reading_id"] == nodes.reading_id
        assert len(volume_nodes(scene)) == len(nodes.all())  # the previous case is gone
        for node in volume_nodes(scene):
            assert node.GetName().startswith(nodes.reading_id)  # named by the reading id only
            assert node.GetAttribute(READING_ATTRIBUTE) == nodes.reading_id
            assert not any(cid in node.GetName() for cid in case_ids)
        image_node = nodes.images[0]
        path = logic.reading.images[0]
        reference = read_image(path)  # SimpleITK, independent of MRML's reader
        m = vtk.vtkMatrix4x4()
        image_node.GetIJKToRASMatrix(m)
        matrix = np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])
        assert np.allclose(matrix, reference.ijk_to_ras, atol=1e-9)
        pixels = vtk_to_numpy(image_node.GetImageData().GetPointData().GetScalars())
        assert np.array_equal(pixels.reshape(reference.array.shape[1:]), reference.array[0])
        assert bool(nodes.maps) == info["shows_ai"] == ("ai" in info)
        for node in nodes.maps.values():
            display = node.GetDisplayNode()
            assert display.GetColorNodeID() == HEAT_COLOR_NODE_ID and display.GetApplyThreshold()
        seen_arms.add(info["shows_ai"])
        point = logic.location_node()
        point.AddControlPoint(vtk.vtkVector3d(12.5, -3.0, 0.0))
        clock.now += 7.0
        logic.pause()
        clock.now += 100.0
        logic.resume()
        clock.now += 1.0
        record = logic.submit(65.0, 1, 4, 2 if info["shows_ai"] else None, "seen")
        assert record["seconds"] == pytest.approx(8.0) and record["click_ras"] == [12.5, -3.0, 0.0]
        assert record["client"] == "slicer"
        assert logic.location_node().GetNumberOfControlPoints() == 1  # cleared when the next case comes
    assert seen_arms == {True, False}
    assert logic.case_info()["finished"] and not volume_nodes(scene)
    logic.close()
    records = read_records(study / "reads" / "r1.jsonl").records
    assert len(records) == 8 and len({r["reading_id"] for r in records}) == 8


def _node_strings(scene) -> list[str]:
    """Every name, attribute value, description and file name the scene's nodes hold (what the Data module, a save
    dialog or the Python console would show)."""
    out = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        out += [node.GetName() or "", node.GetDescription() or ""]
        out += [node.GetAttribute(a) or "" for a in node.GetAttributeNames() or ()]
        if node.IsA("vtkMRMLStorageNode"):
            out += [node.GetFileName() or ""] + [node.GetNthFileName(k) for k in range(node.GetNumberOfFileNames())]
    return out


def test_the_reading_process_holds_no_case_name_key_or_truth(study):
    """Blinding inside Slicer: the scene names no case key (the same in every arm, so it would link the readings
    of one case), no manifest id and no file; the protocol the reading loop loads holds no truth and no case name."""
    truth = {k: json.loads(p.read_text()) for p in (study / "truth").glob("*.json") for k in [p.stem]}
    scene = slicer.vtkMRMLScene()
    logic = ReadingLogic(scene, clock=Clock())
    logic.open(str(study), "r1")
    protocol = logic.session.study.protocol
    assert set(truth) == set(protocol["cases"])
    for case in protocol["cases"].values():
        assert not {"truth", "id", "case"} & set(case)
    text = json.dumps(protocol)
    assert not any(t["case"] in text for t in truth.values())
    while logic.show_next() is not None:
        strings = " ".join(_node_strings(scene))
        assert not any(key in strings or t["case"] in strings for key, t in truth.items()), strings
        assert "cases/" not in strings and str(study) not in strings
        info = logic.case_info()
        logic.submit(50.0, 1, 3, 3 if info["shows_ai"] else None)
    logic.close()


def test_a_reader_cannot_read_twice_at_once_and_unknown_readers_are_refused(study):
    first, second = ReadingLogic(slicer.vtkMRMLScene()), ReadingLogic(slicer.vtkMRMLScene())
    first.open(str(study), "r1")
    with pytest.raises(InputError, match="open in another program"):
        second.open(str(study), "r1")
    second.open(str(study), "r2")  # another reader in the same folder
    with pytest.raises(InputError, match="unknown reader"):
        ReadingLogic(slicer.vtkMRMLScene()).open(str(study), "nobody")
    first.close()
    second.close()


CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {module!r}]
    import slicer, vtk
    from ReaderStudyLib.reading import ReadingLogic
    logic = ReadingLogic(slicer.vtkMRMLScene())
    logic.open({study!r}, "r1")
    while logic.show_next() is not None:
        info = logic.case_info()
        logic.location_node().AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0))
        record = logic.submit(60.0, 1, 3, 3 if info["shows_ai"] else None, "x" * 500)
        print(record["reading_id"], flush=True)
    print("finished", flush=True)
""")


def test_a_killed_process_loses_no_submitted_read(study, tmp_path):
    """SIGKILL the reading loop (a Slicer process on real MRML) in the middle of its work; every read it reported as
    submitted is on disk, the lock died with the process, and reading resumes at the next case."""
    script = tmp_path / "reader.py"
    script.write_text(CHILD.format(root=str(ROOT), module=str(MODULE_DIR), study=str(study)))
    reported: list[str] = []
    for kill_after in (3,):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        got = []
        while len(got) < kill_after:
            line = proc.stdout.readline().strip()
            assert line and line != "finished", "the reader finished before it could be killed"
            got.append(line)
        proc.send_signal(signal.SIGKILL)  # no clean-up, no flush, no lock release by the program
        proc.wait(timeout=30)
        rest = proc.stdout.read().split()
        reported += got + [r for r in rest if r != "finished"]
        on_disk = [r["reading_id"] for r in read_records(study / "reads" / "r1.jsonl").records]
        assert set(reported) <= set(on_disk), "a read reported as submitted was lost"
        assert len(on_disk) == len(set(on_disk))
    logic = ReadingLogic(slicer.vtkMRMLScene())  # the lock died with the process: reading resumes
    progress = logic.open(str(study), "r1")
    on_disk = read_records(study / "reads" / "r1.jsonl").records
    assert progress["done"] == len(on_disk) >= 3
    nodes = logic.show_next()
    assert nodes.reading_id not in {r["reading_id"] for r in on_disk}
    logic.close()


# ---- static checks of the panel (it runs only inside Slicer) ---------------------------------------------------------
@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(PANEL.read_text(), filename=str(PANEL))


@pytest.fixture(scope="module")
def ui() -> ET.Element:
    return ET.parse(UI).getroot()


def _fields(tree: ast.Module) -> dict[str, ast.expr]:
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAIReaderStudyParameterNode")
    assert [ast.unparse(d) for d in cls.decorator_list] == ["parameterNodeWrapper"]
    return {s.target.id: s.annotation for s in cls.body if isinstance(s, ast.AnnAssign)}


def test_panel_compiles_for_slicer_python_and_imports_nothing_third_party(tree):
    ast.parse(PANEL.read_text(), feature_version=(3, 9))
    stdlib = set(sys.stdlib_module_names) | {"slicer", "vtk", "qt", "ctk"}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert all(n.split(".")[0] in stdlib for n in names), f"line {node.lineno}: third-party import"
        elif isinstance(node, ast.Assign):
            ast.literal_eval(node.value)  # constants only: nothing runs on import
        else:
            assert isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Expr)), f"line {node.lineno} runs on import"
    for node in ast.walk(tree):  # `X | Y` annotations of a def are evaluated at definition time (3.9)
        if isinstance(node, ast.FunctionDef):
            for a in node.args.args + ([node.returns] if node.returns else []):
                ann = getattr(a, "annotation", a)
                assert ann is None or not any(isinstance(n, ast.BinOp) for n in ast.walk(ann)), node.name
    classes = {n.name: [ast.unparse(b) for b in n.bases] for n in tree.body if isinstance(n, ast.ClassDef)}
    assert classes["MedXAIReaderStudy"] == ["ScriptedLoadableModule"]
    assert classes["MedXAIReaderStudyWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert classes["MedXAIReaderStudyLogic"] == ["ScriptedLoadableModuleLogic"]
    assert classes["MedXAIReaderStudyTest"] == ["ScriptedLoadableModuleTest"]


def test_handlers_show_errors(tree):
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedXAIReaderStudyWidget")
    handlers = [f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name.startswith("on")
                and f.name.endswith("Button")]
    assert len(handlers) == 4
    for f in handlers:
        assert "slicer.util.tryWithErrorDisplay(_(" in ast.unparse(f), f.name


#: every slicer.util function the panel calls, each checked in Slicer's Base/Python/slicer/util.py (main, 2026-08)
SLICER_UTIL_USED = {"loadUI", "childWidgetVariables", "tryWithErrorDisplay", "infoDisplay", "setToolbarsVisible",
                    "setMenuBarsVisible", "setModulePanelTitleVisible", "setModuleHelpSectionVisible",
                    "setSliceViewerLayers", "errorDisplay"}


def test_slicer_api_used_is_the_checked_one(tree):
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and ast.unparse(n.value) == "slicer.util"}
    assert used == SLICER_UTIL_USED
    text = PANEL.read_text()
    for name in ("SlicerLayoutSideBySideView", "SlicerLayoutOneUpRedSliceView"):
        assert hasattr(slicer.vtkMRMLLayoutNode, name), name  # real MRML constants
    assert "sys.executable" not in text and "slicer.mrmlScene.Clear" not in text.split("class MedXAIReaderStudyTest")[0]


def test_ui_binds_every_parameter_to_a_widget_that_can_show_it(tree, ui):
    assert ui.find("class").text == "MedXAIReaderStudy" and ui.find("widget").get("class") == "qMRMLWidget"
    names = [w.get("name") for w in ui.iter("widget")]
    assert len(names) == len(set(names))
    fields = _fields(tree)
    bound = bindings(ui)
    code_set = ast.literal_eval(next(n.value for n in tree.body if isinstance(n, ast.Assign)
                                     and ast.unparse(n.targets[0]) == "CODE_SET_PARAMETERS"))
    assert set(bound) == set(fields) - set(code_set)
    ok = {"float": {"ctkSliderWidget", "QDoubleSpinBox"}, "int": {"QSpinBox"}, "bool": {"QCheckBox"},
          "str": {"QLineEdit", "QComboBox"}, "pathlib.Path": {"ctkDirectoryButton"}}
    for name, (_, cls) in bound.items():
        text = ast.unparse(fields[name])
        base = ast.unparse(fields[name].slice.elts[0]) if text.startswith("Annotated[") else text
        assert cls in ok[base], f"{name}: {cls} cannot show {text}"
        if cls == "ctkSliderWidget":
            assert "WithinRange" in text
        if cls == "QComboBox":
            assert "Choice(" in text
    classes = widgets(ui)
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and ast.unparse(n.value) == "self.ui"}
    assert used <= set(classes), f"self.ui.X not in the .ui: {sorted(used - set(classes))}"
    assert classes["locationPlaceWidget"] == "qSlicerMarkupsPlaceWidget"
    connected = {c.find("receiver").text for c in ui.iter("connection")}
    assert "locationPlaceWidget" in connected  # MRML widgets get the scene
    declared = {c.find("class").text for c in ui.iter("customwidget")}
    assert {cls for cls in classes.values() if not cls.startswith("Q")} <= declared


def test_packaging_lists_every_file():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    listed = [s.replace("${MODULE_NAME}", "MedXAIReaderStudy") for s in cmake_list(text, "MODULE_PYTHON_SCRIPTS")]
    expected = sorted(Path(f).relative_to("MedXAIReaderStudy").as_posix() for f in shipped_files(MODULE_DIR)
                      if f.endswith(".py") and "/Testing/" not in f)
    assert sorted(listed) == expected
    resources = [s.replace("${MODULE_NAME}", "MedXAIReaderStudy") for s in cmake_list(text, "MODULE_PYTHON_RESOURCES")]
    assert all((MODULE_DIR / r).is_file() for r in resources) and "Resources/UI/MedXAIReaderStudy.ui" in resources
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert "add_subdirectory(MedXAIReaderStudy)" in (ROOT / "CMakeLists.txt").read_text()
