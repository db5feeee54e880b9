"""Where shap's dependency named ``slicer`` (a PyPI package) is kept apart from 3D Slicer's own ``slicer`` module.

Light on purpose (standard library only): the Slicer module's installer imports it to know where to put the package,
and :mod:`MedXAILib.explain.shap_import` to find it; both read the same rule.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the folder that holds the PyPI ``slicer`` package for shap (``DIR/slicer/``).
SHAP_SLICER_DIR_VARIABLE = "MEDXAI_SHAP_SLICER_DIR"


def shap_slicer_dir() -> Path:
    """The folder ``pip install --no-deps --target`` fills with shap's ``slicer`` dependency:
    ``$MEDXAI_SHAP_SLICER_DIR``, else ``~/.cache/medxai/shap-slicer``."""
    configured = os.environ.get(SHAP_SLICER_DIR_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "medxai" / "shap-slicer"
