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

    class _Described:
        def wait(self, *args, **kwargs):
            return {"value": catalog.ModelEntry("grade-classifier.ts", "file", "classification", 3, ["t1", "flair"],
                                                ["benign", "malign"])}

    def describe(self, path):
        described.append(path)
        return _Described()

    from MedXAILogicLib import workflow

    monkeypatch.setattr("MedXAILogicLib.logic.model._CACHE", [])
    monkeypatch.setattr(workflow.Workflow, "start_describe", describe)
    assert logic.isClassificationModel("/models/grade-classifier.ts")  # a user's file: read, not guessed by name
    assert logic.modelEntry("/models/grade-classifier.ts").channels == ["t1", "flair"]
    assert described == ["/models/grade-classifier.ts"]  # described once, then remembered
    assert logic.methodNames() == list(module.METHOD_CHOICES)  # before the core listed its methods


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


class _TorchLogic:
    installed_version = "2.6.0+cpu"
    installs: list = []

    def torchInstalled(self) -> bool:
        return self.installed_version is not None

    @property
    def torch(self):
        return types.SimpleNamespace(__version__=self.installed_version)

    def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                     torchvisionVersionRequirement=None):
        _TorchLogic.installs.append(torchVersionRequirement)
        return types.SimpleNamespace(__version__="2.7.0")


def _fake_torch_and_packaging(monkeypatch, pip_ensure, torch_version="2.6.0+cpu"):
    torch_utils = types.ModuleType("PyTorchUtils")
    _TorchLogic.installed_version = torch_version
    _TorchLogic.installs = []
    torch_utils.PyTorchUtilsLogic = _TorchLogic
    monkeypatch.setitem(sys.modules, "PyTorchUtils", torch_utils)
    packaging = types.ModuleType("slicer.packaging")
    packaging.load_requirements = lambda path: Path(path).read_text().split()
    packaging.pip_ensure = pip_ensure
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)


def _all_missing(monkeypatch) -> None:
    from MedXAILogicLib.logic import dependencies

    monkeypatch.setattr(dependencies, "missing_requirements", lambda path: ["monai>=1.4", "captum>=0.7"])


def test_testing_mode_installs_nothing_and_a_user_is_asked(env, monkeypatch):
    """ctest on the extension build machines: nothing is installed (the self-test skips); a user is asked first."""
    module, _scene, app = env
    calls = []

    def pip_ensure(requirements, **kwargs):
        calls.append(kwargs)
        if kwargs.get("prompt_install"):
            raise RuntimeError("User declined package installation")

    _fake_torch_and_packaging(monkeypatch, pip_ensure, torch_version=None)
    _all_missing(monkeypatch)
    monkeypatch.delenv("MEDXAI_SELFTEST_INSTALL", raising=False)
    app.testing = True
    assert module.MedXAILogic().ensureDependencies(askConfirmation=False) is False
    assert calls == [] and _TorchLogic.installs == []  # neither torch nor MONAI on a build machine
    monkeypatch.setenv("MEDXAI_SELFTEST_INSTALL", "1")  # a developer's opt-in: installed without questions
    assert module.MedXAILogic().ensureDependencies(askConfirmation=True)
    assert _TorchLogic.installs == [">=2.5"]
    assert calls[-1]["skip_in_testing"] is False and calls[-1]["prompt_install"] is False
    assert calls[-1]["prompt_restart"] is False
    app.testing = False  # a user who declines: False, not an exception
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda *a, **k: True, raising=False)
    assert module.MedXAILogic().ensureDependencies(askConfirmation=True) is False

    def failing(requirements, **kwargs):
        raise RuntimeError("pip failed: no network")

    _fake_torch_and_packaging(monkeypatch, failing)
    with pytest.raises(RuntimeError, match="no network"):
        module.MedXAILogic().ensureDependencies(askConfirmation=False)


def test_minimum_torch_version_goes_to_pytorchutils(env, monkeypatch):
    module, _scene, _app = env
    from MedXAILogicLib.logic.dependencies import MINIMUM_TORCH_VERSION

    _fake_torch_and_packaging(monkeypatch, lambda *a, **k: None, torch_version="2.4.1")
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda *a, **k: True, raising=False)
    with pytest.raises(RuntimeError, match=r"PyTorch >=2\.5.*2\.4\.1"):
        module.MedXAILogic().ensureDependencies()
    _fake_torch_and_packaging(monkeypatch, lambda *a, **k: None, torch_version=None)
    module.MedXAILogic().ensureDependencies()
    assert _TorchLogic.installs == [f">={MINIMUM_TORCH_VERSION}"]
    # the core's oldest need: torch.serialization.safe_globals, which torch 2.5 added
    assert "safe_globals" in (ROOT / "MedXAILib" / "models" / "nnunet_folder.py").read_text()


def test_optional_packages_are_installed_on_first_use_after_asking(env, monkeypatch, tmp_path):
    module, _scene, app = env
    from MedXAILogicLib.logic import dependencies

    ensured, asked, pip = [], [], []
    _fake_torch_and_packaging(monkeypatch, lambda requirements, **kwargs: ensured.append((requirements, kwargs)))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda message, *a, **k: asked.append(message) or True,
                        raising=False)
    monkeypatch.setattr(slicer.util, "pip_install", lambda text: pip.append(text), raising=False)
    builtin = catalog.builtin_entries()[0]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("nnunetv2", "shap") else
                        real_find_spec(name, *a))
    monkeypatch.setenv("MEDXAI_SHAP_SLICER_DIR", str(tmp_path / "shap-slicer"))
    logic = module.MedXAILogic()
    total = catalog.ModelEntry("totalsegmentator:total", "totalsegmentator", "segmentation", 3, ["CT"], ["bg", "liver"])
    assert dependencies.optional_packages_for(total, "partitionshap") == ["nnunetv2", "shap"]
    assert dependencies.optional_packages_for(builtin, "gradcam", shap_plot=True) == ["shap"]
    assert logic.ensureOptionalPackages(["nnunetv2", "shap"])
    assert len(asked) == 1 and "nnunetv2>=2.8" in asked[0] and "shap>=0.45" in asked[0]
    by_requirement = {tuple(r): k for r, k in ensured}
    assert by_requirement[("shap>=0.45",)]["skip_packages"] == ["slicer"]  # never PyPI's `slicer` beside Slicer's
    assert by_requirement[("nnunetv2>=2.8",)]["skip_packages"] is None
    # ... and PyPI's `slicer` goes into the core's folder for it, where the CLI child imports shap with it
    assert pip == [f'--no-deps --target "{tmp_path / "shap-slicer"}" "slicer>=0.0.7"']
    # an older Slicer (no pip_ensure): shap without its dependencies, then the ones it imports, but not `slicer`
    monkeypatch.setitem(sys.modules, "slicer.packaging", types.ModuleType("slicer.packaging"))
    monkeypatch.setattr(slicer, "packaging", sys.modules["slicer.packaging"], raising=False)
    assert logic.ensureOptionalPackages(["shap"])
    assert pip[1].startswith("--no-deps --target") and pip[2] == '--no-deps "shap>=0.45"'
    assert "slicer" not in pip[3] and "numba" in pip[3]
    # declined: False, nothing installed; testing mode: nothing installed, no question
    asked.clear()
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda *a, **k: False, raising=False)
    assert logic.ensureOptionalPackages(["nnunetv2"]) is False and len(pip) == 4
    app.testing = True
    monkeypatch.delenv("MEDXAI_SELFTEST_INSTALL", raising=False)
    assert logic.ensureOptionalPackages(["nnunetv2"]) is False and len(pip) == 4


def test_self_test_skips_on_a_build_machine_without_installing(env, monkeypatch):
    """Testing mode without torch: Reload and Test (runTest) and ctest (each method after setUp) skip, and nothing
    is installed."""
    module, _scene, app = env
    installs = []
    _fake_torch_and_packaging(monkeypatch, lambda *a, **k: installs.append(a), torch_version=None)
    _all_missing(monkeypatch)
    monkeypatch.delenv("MEDXAI_SELFTEST_INSTALL", raising=False)
    app.testing = True
    shown = []
    case = module.MedXAITest("test_MedXAI_model_list")
    monkeypatch.setattr(case, "delayDisplay", lambda message, msec=None: shown.append(message), raising=False)
    case.runTest()
    assert shown and shown[0].startswith("Skipped") and installs == [] and _TorchLogic.installs == []
    result = unittest.TestResult()
    module.MedXAITest("test_MedXAI_phantom_flow").run(result)
    assert len(result.skipped) == 1 and not result.errors and not result.failures
