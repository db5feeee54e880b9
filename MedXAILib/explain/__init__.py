"""Explainers. ``explain(model, volume, method=...)`` is the entry point; methods register themselves by name.

Each method module (``base.METHOD_MODULES``) is imported on first use of the registry; a module not present is simply
not offered.
"""

from __future__ import annotations

from .base import METHOD_MODULES, Cost, Explanation, Method, MethodResult, available_methods, get_method, register
from .engine import explain

__all__ = ["METHOD_MODULES", "Cost", "Explanation", "Method", "MethodResult", "available_methods", "explain",
           "get_method", "register"]
