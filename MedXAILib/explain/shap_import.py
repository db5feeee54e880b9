"""The shap library, imported on first use, with one clear error when it is not installed.

shap imports three classes from a small PyPI package that is also called ``slicer`` (``from slicer import Alias,
Obj, Slicer``). Inside 3D Slicer that name is Slicer's own Python module, which comes first on ``sys.path``, so a
plain ``import shap`` fails there, and installing the PyPI package beside Slicer's module would shadow one with the
other. MedXAI's Slicer module therefore installs shap without that dependency and puts the PyPI ``slicer`` in a
folder of its own (:func:`shap_slicer_dir`); :func:`import_shap` then imports shap with that package standing in
for ``slicer`` for the duration of the import only, and puts Slicer's module back. Outside Slicer nothing of this
happens: ``import shap`` simply works.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..errors import MethodError
from ..shap_dependency import SHAP_SLICER_DIR_VARIABLE, shap_slicer_dir

_SHAP_NEEDS = ("Alias", "Obj", "Slicer")


def import_shap() -> ModuleType:
    """``import shap`` (slow: about 10 s the first time), or a MethodError saying how to install it.

    Where the module named ``slicer`` is not the PyPI package shap needs (inside 3D Slicer), shap is imported with
    the PyPI package from :func:`shap_slicer_dir` (or the installed ``slicer`` distribution's own files) standing in
    for it, and ``sys.modules`` is restored afterwards.
    """
    if "shap" in sys.modules:
        return sys.modules["shap"]
    try:
        import shap
    except ImportError as exc:
        if getattr(exc, "name", None) != "slicer" and "slicer" not in str(exc):
            raise MethodError(f"partitionshap and the shap plots need the shap library ({exc}); install it with "
                              "`pip install shap` (it is in requirements.txt)") from None
        return _import_shap_beside_another_slicer(exc)
    return shap


def _shap_slicer_init() -> Path | None:
    """``slicer/__init__.py`` of the PyPI package shap needs, where one is found; None otherwise."""
    candidates = [shap_slicer_dir() / "slicer" / "__init__.py"]
    try:
        from importlib import metadata

        candidates.append(Path(metadata.distribution("slicer").locate_file("slicer/__init__.py")))
    except Exception:  # noqa: BLE001 - not installed, or a distribution without files: just not a candidate
        pass
    for init in candidates:
        if init.is_file() and all(name in init.read_text(encoding="utf-8", errors="replace") for name in _SHAP_NEEDS):
            return init
    return None


def _import_shap_beside_another_slicer(first_error: ImportError) -> ModuleType:
    init = _shap_slicer_init()
    if init is None:
        raise MethodError(
            f"shap cannot import its dependency 'slicer' ({first_error}): the module named 'slicer' here is not "
            f"the PyPI package shap needs (inside 3D Slicer it is Slicer's own). Install that package apart with "
            f"`pip install --no-deps --target {shap_slicer_dir()} slicer` (the MedXAI Slicer module does this when "
            f"it installs shap), or set {SHAP_SLICER_DIR_VARIABLE} to the folder that holds it") from None
    saved = {name: module for name, module in sys.modules.items() if _is_package_or_child(name, "slicer")}
    for name in list(sys.modules):  # a failed first attempt may leave parts of shap behind
        if _is_package_or_child(name, "slicer") or _is_package_or_child(name, "shap"):
            del sys.modules[name]
    spec = importlib.util.spec_from_file_location("slicer", init, submodule_search_locations=[str(init.parent)])
    stand_in = importlib.util.module_from_spec(spec)
    sys.modules["slicer"] = stand_in
    try:
        spec.loader.exec_module(stand_in)
        import shap
    except ImportError as exc:
        for name in [n for n in sys.modules if _is_package_or_child(n, "shap")]:
            del sys.modules[name]
        raise MethodError(f"partitionshap and the shap plots need the shap library ({exc})") from None
    finally:
        for name in [n for n in sys.modules if _is_package_or_child(n, "slicer")]:
            del sys.modules[name]
        sys.modules.update(saved)
    return shap


def _is_package_or_child(module_name: str, package: str) -> bool:
    return module_name == package or module_name.startswith(package + ".")
