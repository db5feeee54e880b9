"""Plausibility of a counterfactual: how far it lies from the data, by an autoencoder's reconstruction error.

The autoencoder is trained on the cohort by ``train --task autoencoder`` (:mod:`MedXAILib.training.autoencoder`) in
the explained model's input representation. Both the input and the counterfactual are prepared by the model's own
preprocessing and reconstructed; the sidecar gives the mean squared reconstruction error (normalised units², over the
whole model grid and over the voxels the counterfactual changed) of each, and their ratio ``counterfactual / input``:
near 1, the counterfactual is as close to the cohort as the input; well above 1, it leaves the data (an adversarial
pattern rather than anatomy). Without an autoencoder the sidecar says plausibility is unavailable and why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import MethodError
from ..models import Model
from ..volume import Volume


def plausibility(autoencoder: str, model: Model, volume: Volume, counterfactual: Volume) -> dict[str, Any]:
    """Reconstruction errors of the input and the counterfactual, or ``{"available": False, "reason": …}``."""
    if not autoencoder:
        return {"available": False, "reason": "no autoencoder given (param autoencoder=DIR, trained on the cohort by "
                                              "`train --task autoencoder --model MODEL`)"}
    from ..training.autoencoder import load_autoencoder, reconstruct

    network, desc = load_autoencoder(autoencoder, model.device)
    names = list(model.description.channel_names)
    if desc.get("channel_names") != names or desc.get("preprocessing") != model.description.preprocessing:
        raise MethodError(
            f"{autoencoder}: this autoencoder was trained for model {desc.get('for_model')!r} (channels "
            f"{desc.get('channel_names')}); train one for {model.name!r} with `train --task autoencoder --model`"
        )
    changed = np.abs(counterfactual.array - volume.array).max(0) > 0
    out: dict[str, Any] = {"available": True, "autoencoder": str(autoencoder),
                           "held_out_mse": desc.get("training", {}).get("held_out_mse")}
    for name, vol in (("input", volume), ("counterfactual", counterfactual)):
        prepared = model.prepare(vol)
        with torch.no_grad():
            x = prepared.tensor
            err = ((reconstruct(network, x) - x) ** 2).mean(1, keepdim=True)  # (1, 1, *grid)
        out[f"mse_{name}"] = float(err.mean())
        mask = torch.from_numpy(changed.astype(np.float32))
        mask = mask[None, None] if model.spatial_dims == 3 else mask[0][None, None]
        from ..preprocessing import resize

        m = resize(mask, tuple(prepared.grid.model_shape), "linear").to(err.device) > 0
        out[f"mse_{name}_in_changed_voxels"] = float(err[m].mean()) if bool(m.any()) else None
    out["ratio"] = out["mse_counterfactual"] / out["mse_input"] if out["mse_input"] > 0 else None
    a, b = out["mse_input_in_changed_voxels"], out["mse_counterfactual_in_changed_voxels"]
    out["ratio_in_changed_voxels"] = b / a if a and b is not None else None
    out["units"] = "mean squared error in the model's normalised intensity units"
    return out
