"""The shap library, imported on first use, with one clear error when it is not installed."""

from __future__ import annotations

from types import ModuleType

from ..errors import MethodError


def import_shap() -> ModuleType:
    """``import shap`` (slow: about 10 s the first time), or a MethodError saying how to install it."""
    try:
        import shap
    except ImportError as exc:
        raise MethodError(f"partitionshap and the shap plots need the shap library ({exc}); install it with "
                          "`pip install shap` (it is in requirements.txt)") from None
    return shap
