"""The Slicer modules of this extension, as the top-level ``CMakeLists.txt`` lists them (``add_subdirectory``).

Shared by the static, API-name and packaging tests, so each covers every module folder the extension builds (the
panel ``MedXAI/`` and any other scripted module added beside it).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_folders() -> list[Path]:
    """Every module folder the top-level ``CMakeLists.txt`` adds (in its order)."""
    text = (ROOT / "CMakeLists.txt").read_text()
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    names = re.findall(r"add_subdirectory\(\s*([\w.-]+)\s*\)", body)
    assert names, "the top-level CMakeLists.txt adds no module"
    return [ROOT / name for name in names]


def python_files(folder: Path) -> list[Path]:
    """The module's Python files that Slicer runs (its ``Testing/`` folder and caches left out)."""
    return sorted(p for p in folder.rglob("*.py")
                  if "__pycache__" not in p.parts and "Testing" not in p.relative_to(folder).parts)


def ui_files(folder: Path) -> list[Path]:
    return sorted((folder / "Resources" / "UI").glob("*.ui"))


def packages(folder: Path) -> list[str]:
    """The module's own packages (folders with an ``__init__.py`` beside the module file)."""
    return sorted(p.parent.name for p in folder.glob("*/__init__.py"))
