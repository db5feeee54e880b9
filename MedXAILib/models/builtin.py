"""The demo models shipped with MedXAILib: where they live and their names (the lowest layer of the model package)."""

from __future__ import annotations

from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "builtin_models"


def builtin_model_names() -> list[str]:
    """Names of the demo models shipped with MedXAILib (``<name>.json`` descriptions in :data:`BUILTIN_DIR`)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))
