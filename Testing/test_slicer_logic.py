"""``MedXAILogic`` (in ``MedXAI/MedXAI.py``) on real MRML, with the application-only modules stood in for.

The module file imports ``qt``, ``slicer.i18n``, ``slicer.parameterNodeWrapper`` and ``slicer.ScriptedLoadableModule``,
which exist only inside the Slicer application. This test gives it minimal stand-ins for those (no widget is made),
sets ``slicer.mrmlScene`` to a real ``vtkMRMLScene`` from the ``slicer-core`` wheel and runs the logic the panel and
the self-test use: sample data, the task read from the model description, input checks, resampling, thresholding,
terminology and the dependency installer's testing-mode and decline paths. The panel's widgets are not exercised
here (see ``test_slicer_static.py`` and docs/slicer.md for what has and has not run in Slicer).
"""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "MedXAI"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import slicer  # noqa: E402
from MedXAILogicLib import bridge, catalog  # noqa: E402

from MedXAILib.volume import Volume, make_ijk_to_ras  # noqa: E402


class _App:
    def __init__(self) -> None:
        self.testing = False

    def testingEnabled(self) -> bool:
        return self.testing

    def processEvents(self) -> None:
        pass

    def layoutManager(self):
        return None

    def connect(self, *args) -> None:
        pass


def _stub_modules(monkeypatch) -> None:
    qt = types.ModuleType("qt")
    monkeypatch.setitem(sys.modules, "qt", qt)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    monkeypatch.setitem(sys.modules, "slicer.i18n", i18n)
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")

    class _Annotation:
        def __init__(self, *args) -> None:
            self.args = args

    wrapper.Choice = wrapper.WithinRange = _Annotation
    wrapper.parameterNodeWrapper = lambda cls: cls
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")

    class _Base:
        def __init__(self, *args, **kwargs) -> None:
            pass

    class _Test(unittest.TestCase):
        def delayDisplay(self, message, msec=None) -> None:
            pass

    scripted.ScriptedLoadableModule = scripted.ScriptedLoadableModuleWidget = _Base
    scripted.ScriptedLoadableModuleLogic = _Base
    scripted.ScriptedLoadableModuleTest = _Test
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)


@pytest.fixture
def env(monkeypatch):
    """(the loaded MedXAI module, the scene, the app stand-in)."""
    _stub_modules(monkeypatch)
    scene = slicer.vtkMRMLScene()
    app = _App()
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kwargs: None, raising=False)
    spec = importlib.util.spec_from_file_location("MedXAI_under_test", ROOT / "MedXAI" / "MedXAI.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, scene, app


def test_sample_data_for_every_builtin_model(env, monkeypatch):
    module, scene, _app = env
    logic = module.MedXAILogic()
    brain = logic.loadPhantomCase()
    assert [v.GetName() for v in brain["volumes"]] == [f"MedXAIPhantom_{n}" for n in ("t1", "t1ce", "t2", "flair")]
    truth = brain["reference"].GetSegmentation()
    names = [truth.GetNthSegment(i).GetName() for i in range(truth.GetNumberOfSegments())]
    assert names == ["necrotic core", "oedema", "enhancing rim"]
    assert "SCT^79654002^Edema" in bridge.segment_terminology(truth.GetNthSegment(1))
    xray = logic.loadChestXrayCase()
    (image,) = xray["volumes"]
    dims = image.GetImageData().GetDimensions()
    assert dims[2] == 1 and dims[0] == dims[1] == 256  # a 2D radiograph
    findings = xray["reference"].GetSegmentation()
    assert {findings.GetNthSegment(i).GetName() for i in range(findings.GetNumberOfSegments())} == {
        "nodule", "cardiomegaly"}
    assert int(bridge.segmentation_to_labelmap(xray["reference"], image).array.astype(bool).sum()) > 0
    # Sample Data's callbacks return every node they made (dependencies checked first)
    monkeypatch.setattr(module.MedXAILogic, "ensureDependencies", lambda self, askConfirmation=True: True)
    assert len(module.loadChestXraySample()) == 2 and len(module.loadPhantomSample()) == 5


def test_task_comes_from_the_model_description(env, monkeypatch):
    module, _scene, _app = env
    logic = module.MedXAILogic()
    assert logic.isClassificationModel("demo-chest-xray")  # the built-in list, no child process
    assert not logic.isClassificationModel("demo-brain-tumour")
    described = []

    def describe(self, path, idle=None, timeout=300.0):
        described.append(path)
        return catalog.ModelEntry(Path(path).name, "file", "classification", 3, ["t1", "flair"], ["benign", "malign"])

    from MedXAILogicLib import workflow

    monkeypatch.setattr(workflow.Workflow, "describe_model", describe)
    assert logic.isClassificationModel("/models/grade-classifier.ts")  # a user's file: read, not guessed by name
    assert logic.modelEntry("/models/grade-classifier.ts").channels == ["t1", "flair"]
    assert described == ["/models/grade-classifier.ts"]  # described once, then remembered
    assert logic.methodNames() == module.METHOD_CHOICES  # before the core listed its methods


def test_inputs_are_checked_against_the_model(env):
    module, scene, _app = env
    logic = module.MedXAILogic()
    five = catalog.ModelEntry("five", "file", "segmentation", 3, ["t1", "t1ce", "t2", "flair", "dwi"], ["bg", "x"])
    nodes = [bridge.add_volume_node(scene, Volume(np.zeros((1, 2, 3, 4), np.float32)), f"v{i}", channel=None)
             for i in range(5)]
    assert logic.checkInputs(nodes, five) == nodes
    with pytest.raises(ValueError, match="five takes 5 volume"):
        logic.checkInputs(nodes[:4] + [None], five)
    with pytest.raises(ValueError, match="Select the input"):
        logic.checkInputs([None], five)


def test_inputs_on_other_grids_are_resampled_onto_the_first(env):
    module, scene, _app = env
    logic = module.MedXAILogic()
    grid = make_ijk_to_ras(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0))
    first = bridge.add_volume_node(scene, Volume(np.ones((1, 4, 5, 6), np.float32), grid), "t1", channel=None)
    coarse = make_ijk_to_ras(spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0))
    other = bridge.add_volume_node(scene, Volume(np.full((1, 4, 3, 3), 3.0, np.float32), coarse), "t2", channel=None)
    same = bridge.add_volume_node(scene, Volume(np.ones((1, 4, 5, 6), np.float32), grid), "flair", channel=None)
    assert [n for n, _ in logic.gridMismatches([first, other, same])] == [other]
    resampled = logic.resampleInputs([first, other, same])
    assert resampled[0] is first and resampled[2] is same and resampled[1] is not other
    assert logic.gridMismatches(resampled) == []


def test_threshold_goes_into_its_own_segmentation(env):
    module, scene, _app = env
    logic = module.MedXAILogic()
    anatomy = bridge.add_volume_node(scene, Volume(np.zeros((1, 4, 4, 4), np.float32)), "t1", channel=None)
    heat = np.zeros((1, 4, 4, 4), np.float32)
    heat[0, 1:3, 1:3, 1:3] = 1.0
    heat_node = bridge.add_heatmap_node(scene, Volume(heat), anatomy)
    prediction = bridge.labelmap_to_segmentation(scene, Volume((heat > 0).astype(np.int16)), anatomy, {1: "x"})
    prediction.SetAttribute("MedXAI.Role", "prediction")
    with pytest.raises(Exception, match="prediction"):
        logic.thresholdHeatmap(heat_node, 0.5, prediction)
    node = logic.thresholdHeatmap(heat_node, 0.5)
    assert node is not prediction and node.GetAttribute("MedXAI.Role") == "heatmap-threshold"
    assert logic.thresholdHeatmap(heat_node, 0.9, node) is node
    assert node.GetSegmentation().GetNumberOfSegments() == 2


def _fake_torch_and_packaging(monkeypatch, pip_ensure):
    torch_utils = types.ModuleType("PyTorchUtils")

    class PyTorchUtilsLogic:
        def torchInstalled(self) -> bool:
            return True

    torch_utils.PyTorchUtilsLogic = PyTorchUtilsLogic
    monkeypatch.setitem(sys.modules, "PyTorchUtils", torch_utils)
    packaging = types.ModuleType("slicer.packaging")
    packaging.load_requirements = lambda path: Path(path).read_text().split()
    packaging.pip_ensure = pip_ensure
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)


def test_dependencies_in_testing_mode_and_when_declined(env, monkeypatch):
    module, _scene, app = env
    calls = []

    def pip_ensure(requirements, **kwargs):
        calls.append(kwargs)
        if kwargs.get("prompt_install"):
            raise RuntimeError("User declined package installation")

    _fake_torch_and_packaging(monkeypatch, pip_ensure)
    app.testing = True  # under ctest: install without asking, and do not let pip_ensure skip it
    assert module.MedXAILogic().ensureDependencies(askConfirmation=True)
    assert calls[-1]["skip_in_testing"] is False and calls[-1]["prompt_install"] is False
    assert calls[-1]["prompt_restart"] is False  # no dialog may wait for a click under ctest
    app.testing = False  # a user who declines: False, not an exception
    assert module.MedXAILogic().ensureDependencies(askConfirmation=True) is False

    def failing(requirements, **kwargs):
        raise RuntimeError("pip failed: no network")

    _fake_torch_and_packaging(monkeypatch, failing)
    with pytest.raises(RuntimeError, match="no network"):
        module.MedXAILogic().ensureDependencies(askConfirmation=False)
