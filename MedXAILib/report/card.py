"""The model card shown on a case report.

Where each field comes from, first found wins:

- version: the description's ``version`` (if the description has one), ``training.version``, a MONAI bundle's
  ``metadata.json`` ``version``, else a fingerprint of the weights (``weights sha256:<12 hex>``);
- training data: ``training.data``, the bundle's ``data_source``, else "not stated";
- intended use: ``training.intended_use``, the bundle's ``intended_use``; built-in demo models say they were trained
  on synthetic phantoms only;
- diagnostic use: "Not for diagnostic use" unless the metadata states ``diagnostic_use: true`` (``training`` or the
  bundle's metadata); the statement is then quoted from ``regulatory`` / ``intended_use``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOT_DIAGNOSTIC = "Not for diagnostic use: research and education only."


def _bundle_metadata(source: str | None) -> dict[str, Any]:
    if not source:
        return {}
    folder = Path(source)
    path = folder / "configs" / "metadata.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def model_card(model: Any) -> dict[str, Any]:
    """``{name, version, task, classes, inputs, training_data, intended_use, diagnostic_use, statement}``."""
    from ..dicom.output import model_identity
    from ..models.loading import BUILTIN_DIR

    desc = model.description
    training = dict(getattr(desc, "training", None) or {})
    meta = _bundle_metadata(getattr(desc, "source", None))
    builtin = bool(getattr(desc, "source", None)) and Path(str(desc.source)).parent == BUILTIN_DIR
    version = (getattr(desc, "version", None) or training.get("version") or meta.get("version")
               or model_identity(model).model_version)
    intended = training.get("intended_use") or meta.get("intended_use")
    if not intended and builtin:
        intended = ("demonstration of MedXAI's explanations; trained on synthetic phantoms only, never on patient "
                    "images")
    diagnostic = bool(training.get("diagnostic_use") is True or meta.get("diagnostic_use") is True)
    statement = NOT_DIAGNOSTIC
    if diagnostic:
        statement = str(training.get("regulatory") or meta.get("regulatory") or intended or "")
        statement = f"Diagnostic use stated by the model's metadata: {statement}".strip()
    return {
        "name": str(desc.name),
        "version": str(version),
        "task": f"{desc.task} ({desc.spatial_dims}D, {desc.output})",
        "classes": list(desc.class_names),
        "inputs": list(desc.channel_names),
        "training_data": str(training.get("data") or meta.get("data_source") or "not stated"),
        "intended_use": str(intended or "not stated by the model's metadata"),
        "diagnostic_use": diagnostic,
        "statement": statement,
    }
