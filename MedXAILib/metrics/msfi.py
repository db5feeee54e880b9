"""Modality-specific feature importance (MSFI; Jin, Li & Hamarneh, AAAI 2022 and Medical Image Analysis 2023).

Clinicians read certain sequences for certain findings (enhancing tumour on T1ce, oedema on FLAIR). MSFI asks
whether a multi-modal explanation puts its relevance on the right sequence *and* the right place. With ``S_m`` the
attribution map of modality (input channel) ``m``, ``S_m⁺ = max(S_m, 0)`` its positive part, ``L_m`` the feature
mask of that modality and ``I_m ≥ 0`` the clinician-assigned importance of the modality:

    portion_m = Σ_x 1[L_m(x) > 0] · S_m⁺(x) / Σ_x S_m⁺(x)
    MSFI      = Σ_m I_m · portion_m / Σ_m I_m

It lies in [0, 1]; 1 means every important modality's positive relevance is inside the feature mask. This is the
definition of the paper and of its authors' code (``compute_mfsi`` and ``get_modality_feature_hm_value`` in
``weinajin/multimodal_explanation``), where the per-modality portion is computed from the positive heat map.
Two choices are stated here because the paper leaves them to the implementation:

- a modality whose map has no positive relevance has an undefined portion; it counts as 0 (none of its relevance is
  on the feature), and is listed in ``msfi_undefined``;
- a method without per-channel maps (Grad-CAM and the other CAMs, occlusion) gives one map for every modality, as
  the authors did for Grad-CAM: MSFI then equals the relevance mass of that map in the mask (``msfi_maps: shared``).

The authors' BraTS pipeline also post-processed every map before scoring (``postprocess_heatmaps``: upsampled to
the image, Gaussian-smoothed in-plane with σ = 1 voxel, divided by the 99th percentile of |relevance| over all
modalities and clipped to [−1, 1]) and dilated the tumour mask by a 20-voxel square in each axial slice. None of that
is part of the metric's definition and none of it is applied here: the map and the mask are scored as given (smooth,
clip or dilate them first to reproduce that protocol; the clipping changes the portions, the common scaling does
not).

Layouts: channel maps ``(M, K, J, I)`` (or ``(M, J, I)``) in the order of ``channel_names``; masks ``(K, J, I)``,
one for all modalities or one per modality name.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError

#: Tolerance on the sum of the modality importances.
SUM_TOLERANCE = 1e-3


def parse_importance(text: str) -> dict[str, float]:
    """``"t1ce:0.5,flair:0.3,t2:0.2,t1:0"`` → ``{"t1ce": 0.5, …}``; names unique, values ≥ 0, summing to 1.

    Raises:
        InputError: a malformed item, a repeated name, a negative or non-finite value, or a sum other than 1.
    """
    out: dict[str, float] = {}
    for item in [p.strip() for p in str(text).split(",") if p.strip()]:
        name, sep, value = item.partition(":")
        name = name.strip().lower()
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if not sep or not name or not np.isfinite(v):
            raise InputError(f"--msfi: write MODALITY:WEIGHT pairs such as t1ce:0.5,flair:0.3,t2:0.2,t1:0; "
                             f"got {item!r}")
        if v < 0:
            raise InputError(f"--msfi: the importance of {name} must be ≥ 0; got {v:g}")
        if name in out:
            raise InputError(f"--msfi names {name} twice")
        out[name] = v
    if not out:
        raise InputError("--msfi needs at least one MODALITY:WEIGHT pair")
    total = sum(out.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise InputError(f"--msfi: the modality importances must sum to 1; they sum to {total:g}")
    return out


def _portion(positive: np.ndarray, mask: np.ndarray) -> float | None:
    total = float(positive.sum())
    if total <= 0.0:
        return None
    return float(positive[mask].sum()) / total


def msfi(
    channel_maps: np.ndarray,
    channel_names: Sequence[str],
    importance: Mapping[str, float],
    masks: np.ndarray | Mapping[str, np.ndarray],
) -> dict[str, object]:
    """MSFI of one multi-modal explanation (see the module docstring).

    Args:
        channel_maps: ``(M, K, J, I)`` signed relevance per input channel, or ``(1, K, J, I)`` for one map shared by
            every modality.
        channel_names: the ``M`` channel names (any case), or the modality names when the map is shared.
        importance: modality → importance ``I_m`` (≥ 0; its keys must be channel names; a modality with importance 0
            that the input lacks is ignored).
        masks: one ``(K, J, I)`` feature mask for all modalities, or modality → mask.

    Returns:
        ``msfi``, ``msfi_portions`` (modality → portion or None), ``msfi_importance`` (the weights used),
        ``msfi_undefined`` (modalities without positive relevance) and ``msfi_maps`` (``per-channel`` or ``shared``).

    Raises:
        InputError: a weighted modality is not a channel, a channel has no weight, shapes differ, or every
            importance is 0.
    """
    maps = np.asarray(channel_maps, dtype=np.float64)
    if maps.ndim == 3:
        maps = maps[:, None]
    if maps.ndim != 4:
        raise InputError(f"channel maps must be (M, K, J, I); got shape {maps.shape}")
    names = [str(n).lower() for n in channel_names]
    shared = maps.shape[0] == 1 and len(names) != 1
    weights = {k.lower(): float(v) for k, v in importance.items()}
    if not shared:
        if len(names) != maps.shape[0]:
            raise InputError(f"{maps.shape[0]} channel maps but {len(names)} channel names")
        missing = [m for m, v in weights.items() if m not in names and v > 0]
        if missing:
            raise InputError(f"--msfi weights {', '.join(missing)}, but the map's channels are {', '.join(names)}")
        unweighted = [n for n in names if n not in weights]
        if unweighted:
            raise InputError(f"--msfi gives no importance for channel(s) {', '.join(unweighted)}; give each channel "
                             "a weight (0 to leave it out)")
        weights = {m: v for m, v in weights.items() if m in names}
    if sum(weights.values()) <= 0:
        raise InputError("--msfi: every modality the map has is weighted 0; MSFI is undefined")
    portions: dict[str, float | None] = {}
    for m in weights:
        mask = masks[m] if isinstance(masks, Mapping) else masks
        mask = np.asarray(mask, dtype=bool)
        mask = mask[None] if mask.ndim == 2 else mask
        s = maps[0] if shared else maps[names.index(m)]
        if mask.shape != s.shape:
            raise InputError(f"the feature mask has shape {mask.shape}, the map {s.shape} (K, J, I)")
        portions[m] = _portion(np.clip(s, 0.0, None), mask)
    total = sum(weights.values())
    value = sum(weights[m] * (portions[m] or 0.0) for m in weights) / total
    return {
        "msfi": float(value),
        "msfi_portions": portions,
        "msfi_importance": weights,
        "msfi_undefined": [m for m, p in portions.items() if p is None],
        "msfi_maps": "shared" if shared else "per-channel",
    }


__all__ = ["SUM_TOLERANCE", "msfi", "parse_importance"]
