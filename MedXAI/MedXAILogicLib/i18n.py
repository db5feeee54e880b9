"""Translatable text in the Qt-free helpers: Slicer's ``slicer.i18n.tr`` inside the application, the text itself
outside it (the ``slicer-core`` wheel has no translations)."""

from __future__ import annotations


def tr(text: str) -> str:
    """``text`` translated by Slicer when it can (``slicer.i18n.tr``), else unchanged."""
    try:
        from slicer.i18n import tr as slicer_tr
    except ImportError:
        return text
    return slicer_tr(text)
