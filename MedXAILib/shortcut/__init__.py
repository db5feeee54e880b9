"""Does an explanation show what the model really relies on? Planted truth, measured by intervention.

- :mod:`.artifacts` — the artifacts (``tag``, ``patch``, ``intensity``) in 2D and 3D, seeded per case, with masks;
- :mod:`.confound` — a dataset whose cases carry the artifact confounded with the label (or swapped, added, removed);
- :mod:`.intervention` — reliance measured on held-out cases: AUC (or Dice) clean and swapped, per-case effects;
- :mod:`.scoring` — per method: artifact relevance mass, top-k IoU, detection AUC, effect rank correlation;
- :mod:`.runner` — ``shortcut``: a clean and a confounded model trained alike (through ``train``), both explained;
- :mod:`.tradeoff` — ``tradeoff``: one model per right-for-the-right-reasons weight, accuracy against explanation;
- :mod:`.report` — ``report.html`` and the figures.

Importing this package imports nothing heavy; the modules are imported where they are used.
"""

from .artifacts import ARTIFACT_KINDS, ArtifactSpec

__all__ = ["ARTIFACT_KINDS", "ArtifactSpec"]
