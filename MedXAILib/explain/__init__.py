"""Explainers. ``explain(model, volume, method=...)`` is the entry point; methods register themselves by name.

Each method module below is imported on first use of the registry; a module not present is simply not offered.
"""

from __future__ import annotations

import importlib

from .base import Cost, Explanation, Method, MethodResult, available_methods, get_method, register
from .engine import explain

# Modules that define methods (imported lazily so `import MedXAILib` stays light).
METHOD_MODULES = (
    "cam",
    "scorecam",
    "gradients",
    "perturbation",
    "shapley",
    "partition",
    "lrp",
    "baselines",
    "counterfactual",
    "sedc",
)

_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for name in METHOD_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    _loaded = True


__all__ = ["Cost", "Explanation", "Method", "MethodResult", "available_methods", "explain", "get_method", "register"]
