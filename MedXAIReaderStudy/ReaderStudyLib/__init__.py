"""Qt-free logic of the MedXAI Reader Study module: the study folder, the reader's session and the MRML nodes.

- :mod:`.scene` loads what a reading shows into an MRML scene (the images, each map as a heat-coloured foreground,
  the counterfactual), names every node by the reading's random id only, removes them when the reader moves on,
  and keeps the one markup point where the reader locates the finding;
- :mod:`.reading` ties a :class:`MedXAILib.study.session.ReaderSession` to the scene: show the next case, pause,
  submit (the record is on disk before :meth:`~.reading.ReadingLogic.submit` returns), progress.

Every read is written by the core's reading loop (:mod:`MedXAILib.study.session`), the same code ``study simulate``
drives. Nothing here imports ``qt``, ``ctk`` or a widget, so all of it is tested with the ``slicer-core`` wheel.

Where the core library lives: Slicer puts only a scripted module's own folder on ``sys.path``. The built extension
installs ``MedXAILib`` into the same scripted-modules folder; a developer's checkout has it one level up, beside
``MedXAIReaderStudy/``. :func:`ensure_core_importable` (run when this package is imported) adds the checkout's root
to ``sys.path`` in the second case only.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys


def ensure_core_importable() -> str | None:
    """Make ``import MedXAILib`` work in the packaged and the checkout layout; return the folder added, if any."""
    if importlib.util.find_spec("MedXAILib") is not None:
        return None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isfile(os.path.join(root, "MedXAILib", "__init__.py")) and root not in sys.path:
        sys.path.append(root)
        importlib.invalidate_caches()
        return root
    return None


ensure_core_importable()
