"""shap imports inside 3D Slicer, where the module named ``slicer`` is Slicer's own and not the PyPI package shap
needs: MedXAI imports shap with that package kept in a folder of its own, and Slicer's module stays in place.

The situation is rebuilt in a child process: a stand-in for Slicer's ``slicer`` module comes first on ``sys.path``
(as Slicer's ``bin/Python`` does), and the PyPI ``slicer`` package sits in ``$MEDXAI_SHAP_SLICER_DIR``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import slicer
    assert slicer.APPLICATION == "3D Slicer"
    try:
        import shap  # noqa: F401
    except ImportError as exc:
        print("plain import fails:", exc)
    else:
        raise SystemExit("the stand-in for Slicer's module did not shadow shap's dependency")
    from MedXAILib.errors import MethodError
    from MedXAILib.explain.shap_import import import_shap
    try:
        shap = import_shap()
    except MethodError as exc:
        print("error:", exc)
        raise SystemExit(3)
    import slicer as after
    assert after.APPLICATION == "3D Slicer", "Slicer's own module must be back in place"
    import numpy as np
    explanation = shap.Explanation(np.array([[1.0, 2.0]]), base_values=np.array([0.5]))
    print("ok", type(explanation).__name__, explanation.values.shape)
""")


def _pypi_slicer_package(target: Path) -> Path:
    """A copy of the PyPI ``slicer`` package (its modules as installed; slicer-core's meta-package ``__init__`` is
    replaced by the PyPI package's one-line export of the three classes shap uses)."""
    import slicer.slicer as pypi_module

    source = Path(pypi_module.__file__).parent
    package = target / "slicer"
    package.mkdir(parents=True)
    for name in ("slicer.py", "slicer_internal.py", "utils_testing.py"):
        if (source / name).is_file():
            shutil.copy(source / name, package / name)
    (package / "__init__.py").write_text("from .slicer import Alias, Obj, Slicer\n")
    return target


def _run(tmp_path: Path, shap_slicer_dir: Path) -> subprocess.CompletedProcess:
    app = tmp_path / "slicer-app"
    (app / "slicer").mkdir(parents=True)
    (app / "slicer" / "__init__.py").write_text('APPLICATION = "3D Slicer"\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(app), str(REPO)]),
               MEDXAI_SHAP_SLICER_DIR=str(shap_slicer_dir))
    return subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_shap_imports_beside_slicers_own_module(tmp_path):
    pytest.importorskip("shap")
    result = _run(tmp_path, _pypi_slicer_package(tmp_path / "apart"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "plain import fails" in result.stdout and "ok Explanation (1, 2)" in result.stdout


def test_without_the_package_apart_the_error_says_how_to_install_it(tmp_path):
    pytest.importorskip("shap")
    result = _run(tmp_path, tmp_path / "empty")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "pip install --no-deps --target" in result.stdout and "MEDXAI_SHAP_SLICER_DIR" in result.stdout
