"""*Reload* for the module's own packages: Slicer's reload re-reads ``MedXAI.py`` only.

``slicer.util.reloadScriptedModule`` executes the module file again, but packages it imported (``MedXAILogicLib``,
``MedXAIPanelLib``) stay in ``sys.modules``, so an edit to them needs a restart. :func:`reload_packages` forgets
them (and all their submodules) so that the module file's next import reads them from disk again. Qt-free.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence


def reload_packages(names: Sequence[str]) -> list[str]:
    """Forget the packages ``names`` and their submodules, then import each package again from disk.

    Submodules are imported again by whoever imports them next (the module file at file scope, the panel's sections
    inside their functions). Returns the module names that were forgotten, sorted.
    """
    forgotten = sorted(m for m in list(sys.modules) if any(m == n or m.startswith(n + ".") for n in names))
    for module in forgotten:
        del sys.modules[module]
    importlib.invalidate_caches()
    for name in names:
        importlib.import_module(name)
    return forgotten
