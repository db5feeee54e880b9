"""Plausibility of a counterfactual: how far it lies from the data, by an autoencoder's reconstruction error.

Filled in by the autoencoder part of issue 13 (``train --task autoencoder``); until a model is given, the sidecar
says plausibility is unavailable and why.
"""

from __future__ import annotations

from typing import Any

import torch

from ..volume import Volume


def plausibility(autoencoder: str, volume: Volume, counterfactual: Volume, device: torch.device) -> dict[str, Any]:
    """Reconstruction errors of the input and the counterfactual, or ``{"available": False, "reason": …}``."""
    if not autoencoder:
        return {"available": False, "reason": "no autoencoder given (param autoencoder=PATH, trained by "
                                              "`train --task autoencoder` on the cohort)"}
    return {"available": False, "reason": "autoencoder plausibility is not implemented yet"}
