"""Qt-free helpers behind the MedXAI Slicer module.

- :mod:`.bridge` turns MRML nodes into :class:`MedXAILib.volume.Volume` objects and results back into nodes (heat
  maps, relevance overlays, segmentations, tables, subject hierarchy placement, 3D display).
- :mod:`.counterfactual` turns a counterfactual result into nodes: the counterfactual volume(s), the difference
  map, and the progressive series as a sequence with a browser (a slider over the steps).
- :mod:`.grids` checks that inputs share one world grid and resamples them onto the first one.
- :mod:`.terminology` gives predicted segments standard DICOM terminology.
- :mod:`.catalog` reads the models and method parameters the CLI offers.
- :mod:`.jobs` runs ``python -m MedXAILib`` in a background process, parses its ``--progress json`` lines and can
  cancel the whole process tree.
- :mod:`.workflow` ties them together: inputs are written to a temporary folder, the CLI runs, and its outputs become
  nodes; :mod:`.results` formats the CLI's JSON for tables.

Nothing here imports ``qt``, ``ctk`` or any widget, so all of it is tested with the ``slicer-core`` wheel.

Where the core library lives: Slicer puts only a scripted module's own folder on ``sys.path``. The built extension
installs ``MedXAILib`` into that same folder; a developer's checkout has it one level up, beside ``MedXAI/``.
:func:`ensure_core_importable` (run when this package is imported, before any submodule imports the core) adds the
checkout's root to ``sys.path`` in the second case only.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def ensure_core_importable() -> str | None:
    """Make ``import MedXAILib`` work in both layouts; return the folder added to ``sys.path`` (None if none was).

    The packaged layout (``MedXAILib`` importable already) is left alone. In a source checkout
    (``<root>/MedXAI/MedXAILogicLib`` and ``<root>/MedXAILib``) ``<root>`` is appended to ``sys.path``.
    """
    if importlib.util.find_spec("MedXAILib") is not None:
        return None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isfile(os.path.join(root, "MedXAILib", "__init__.py")) and root not in sys.path:
        sys.path.append(root)
        importlib.invalidate_caches()
        return root
    return None


ensure_core_importable()
