"""Training networks: one package for the two uses of the same capability.

- :mod:`.crossval` — ``train``: patient-level K-fold cross-validation of a user's own U-Net or classifier
  (:func:`cross_validate`), built from :mod:`.config` (options, architecture presets, determinism, CAM layer),
  :mod:`.data` (the plan, the case cache, patch sampling) and :mod:`.fold` (one fold: fit, evaluate, save);
- :mod:`.demo_models` — the recipes that trained the built-in demo models on phantoms
  (``python -m MedXAILib.training --demo NAME``).
"""

from .config import PRESETS, TrainConfig, pick_cam_layer, resolve_architecture, set_determinism
from .crossval import CrossValResult, cross_validate, format_table, summarise
from .data import Plan, plan_training

__all__ = [
    "PRESETS",
    "CrossValResult",
    "Plan",
    "TrainConfig",
    "cross_validate",
    "format_table",
    "pick_cam_layer",
    "plan_training",
    "resolve_architecture",
    "set_determinism",
    "summarise",
]
