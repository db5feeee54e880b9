"""Stability: does the map stay the same when the input changes in clinically plausible, output-preserving ways?

Perturbations (each seeded, each stated in the result):

- **noise** at a signal-to-noise ratio in dB: zero-mean Gaussian noise of σ_c = rms_c / 10^(SNR/20) is added to
  each channel c, with rms_c the root-mean-square intensity of the channel over the object (voxels where any
  channel is non-zero; all voxels when none is zero). Noise is added inside the object only, so images that are
  exactly 0 outside the head stay so (the foreground normalisations rely on it);
- **rotation** by an angle in degrees (up to ±5°) about the volume's centre *in physical space*, about one of the
  grid's axes (``k`` by default: an in-plane rotation of each slice; 2D images always turn in their plane). The
  rotated image is resampled (trilinear, edges clamped) on the original voxel grid with its exact geometry, so
  anisotropic voxels rotate as the patient would. Its map is then resampled back onto the original grid by the
  inverse rotation before comparing; voxels whose rotated position falls outside the grid are excluded;
- **intensity scaling** of all channels by a factor (e.g. 0.9, 1.1). A model whose preprocessing rescales each
  channel (z-score, z-score over the foreground, percentile or min–max normalisation) sees exactly the same network
  input after a positive scaling, so its map cannot change (SSIM 1.000000 on the demo model): counting that
  perturbation would inflate the means. ``scaling="auto"`` (default) therefore skips it for such models and says so in
  ``stability_skipped``; ``always`` keeps it, ``never`` drops it for every model (:func:`scale_invariance`).

For each perturbed input x′ the explanation Φ(x′) is recomputed with the same method, parameters and class (the
target region is re-resolved on x′ when it is the model's predicted foreground) and compared with Φ(x):

- SSIM (Wang et al. 2004; :func:`MedXAILib.metrics.similarity.ssim`, each map min–max normalised);
- Spearman rank correlation of the voxel values (:func:`MedXAILib.metrics.similarity.spearman`);
- max-sensitivity (Yeh et al., "On the (in)fidelity and sensitivity of explanations", NeurIPS 2019), by
  ``sensitivity`` (the normalisation is named, because the tools disagree on it):

  - ``fixed`` (default): ``max_{x′} ‖Φ(x′) − Φ(x)‖₂ / ‖Φ(x)‖₂`` over the perturbations above, raw signed maps —
    MedXAI's relative change, divided by the *explanation's* norm (a unit-free number);
  - ``quantus``: Quantus' ``MaxSensitivity`` with its defaults — ``samples = 200`` draws ``u_n`` of i.i.d. uniform
    noise in ``[−r, r]`` per voxel (an ℓ∞ ball, ``radius`` r = 0.2), each map divided by its ``max |Φ|``
    (``normalise_by_max``, giving ``Φ̂``), then ``max_n ‖Φ̂(x + u_n) − Φ̂(x)‖_F / ‖x‖_F``: divided by the *input's*
    norm (the Frobenius norm of the input volume as given, all channels, in its intensity units — so the number
    depends on those units, as Quantus' does on its input's);
  - ``yeh``: Yeh et al.'s definition, ``max_{‖u‖ ≤ r} ‖Φ(x + u) − Φ(x)‖``, on the same draws: raw maps, **no
    denominator** (in the map's units).

  Our inputs are raw scanner intensities, not Quantus' normalised images, so r is in units of each channel's
  standard deviation over the object (r = 0.2 is Quantus' radius on a z-scored input), and the noise is added inside
  the object only (as for ``noise`` above). Both sampled conventions come from the same draws and are both reported
  (``max_sensitivity_quantus``, ``max_sensitivity_yeh``); ``max_sensitivity`` is the chosen one and the
  fixed-perturbation value stays beside it as ``max_sensitivity_fixed``. Cost: ``samples`` more explanations.

``stability_ssim`` and ``stability_spearman`` are means over the perturbations. Array layout: maps ``(K, J, I)``.
"""

from __future__ import annotations

import time
import zlib
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..metrics.similarity import spearman, ssim
from ..models import Model
from ..targets import FOREGROUND, Target
from ..volume import Volume

ExplainFn = Callable[[Volume], np.ndarray]
"""``volume -> (K, J, I)`` map on that volume's grid."""

DEFAULT_SNR_DB = (20.0, 30.0)
DEFAULT_ROTATIONS_DEG = (-5.0, 5.0)
DEFAULT_SCALES = (0.9, 1.1)
MAX_ROTATION_DEG = 5.0
SCALING_MODES = ("auto", "always", "never")
SENSITIVITY_MODES = ("fixed", "quantus", "yeh")
SENSITIVITY_SAMPLES = 200  # Quantus MaxSensitivity's nr_samples
SENSITIVITY_RADIUS = 0.2  # Quantus MaxSensitivity's uniform-noise bound (lower_bound)
#: Per-channel normalisations after which a positive intensity scaling leaves the network input unchanged.
SCALE_INVARIANT_NORMALIZERS = ("zscore", "zscore_foreground", "percentile", "minmax")


def scale_invariance(model: Model) -> str | None:
    """Why ``model`` is invariant to a positive intensity scaling of its input, or None when it is not (known).

    True for the per-channel normalisations in :data:`SCALE_INVARIANT_NORMALIZERS` of a model description (each
    divides out a global factor). Fixed windows (``hu_window``), ``none`` and formats whose preprocessing MedXAI does
    not describe are treated as not invariant, so the perturbation is kept.
    """
    prep = getattr(model.description, "preprocessing", None) or {}
    mode = prep.get("normalize") if isinstance(prep, dict) else None
    if mode in SCALE_INVARIANT_NORMALIZERS:
        return (f"the model normalises each channel ({mode}), so a positive intensity scaling gives the network the "
                "same input and the map cannot change")
    return None


# ---- explaining (shared with the sanity check) ------------------------------------------------------------------
def random_map(volume: Volume, seed: int = 0) -> np.ndarray:
    """A model-independent control map: uniform [0, 1) noise on the input grid.

    Seeded by ``seed`` and a checksum (CRC-32) of the image, so the same image always gets the same map whatever
    the model (the control must fail the randomisation check) while different images get unrelated maps.
    """
    digest = zlib.crc32(np.ascontiguousarray(volume.array).tobytes())
    return np.random.default_rng([int(seed), int(digest)]).random(volume.shape)


def explain_map(
    model: Model,
    volume: Volume,
    method: str,
    target: Target | None = None,
    params: dict[str, Any] | None = None,
    label: str | int | None = None,
) -> np.ndarray:
    """The ``(K, J, I)`` float64 heat map of ``method`` on ``volume`` (through :func:`MedXAILib.explain.explain`).

    ``random`` falls back to :func:`random_map` (seeded with ``params["seed"]``) when no ``random`` method is
    registered, so the control is always available.
    """
    from ..explain import available_methods, explain

    if method == "random" and "random" not in available_methods():
        return random_map(volume, int((params or {}).get("seed", 0)))
    e = explain(model, volume, method, target=target, label=label, params=dict(params or {}))
    return e.heatmap.array[0].astype(np.float64)


def method_explainer(
    model: Model, method: str, target: Target | None = None, params: dict[str, Any] | None = None
) -> ExplainFn:
    """An :data:`ExplainFn` for perturbed inputs: same method, parameters and class as ``target``.

    Class and voxel targets are reused as they are; a region target keeps its class and is re-resolved on the
    perturbed input (predicted foreground, or the predicted region of the class), because a region drawn on the
    original grid would not follow a rotated anatomy.
    """
    label: int | None = None
    fixed: Target | None = None
    if target is not None:
        if target.kind in ("class", "voxel"):
            fixed = target
        elif target.class_index != FOREGROUND:
            label = target.class_index

    def fn(volume: Volume) -> np.ndarray:
        return explain_map(model, volume, method, target=fixed, params=params, label=label)

    return fn


# ---- perturbations -----------------------------------------------------------------------------------------------
def _object_mask(arr: np.ndarray) -> np.ndarray:
    """``(K, J, I)`` bool: voxels where any channel of ``(C, K, J, I)`` is non-zero; every voxel when none (or all)
    of them is zero."""
    obj = np.any(arr != 0, axis=0)
    return obj if obj.any() and not obj.all() else np.ones(arr.shape[1:], dtype=bool)


def add_noise(volume: Volume, snr_db: float, seed: int = 0) -> Volume:
    """The volume with Gaussian noise at ``snr_db`` added inside the object (see the module docstring)."""
    arr = volume.array.astype(np.float64)
    obj = _object_mask(arr)
    rng = np.random.default_rng(seed)
    out = arr.copy()
    for c in range(arr.shape[0]):
        rms = float(np.sqrt(np.mean(arr[c][obj] ** 2)))
        sigma = rms / 10.0 ** (float(snr_db) / 20.0)
        out[c][obj] += rng.normal(0.0, sigma, size=int(obj.sum()))
    return volume.with_array(out.astype(np.float32))


def uniform_ball_noise(volume: Volume, radius: float, seed: int) -> Volume:
    """The volume plus i.i.d. uniform noise in ``[−r σ_c, r σ_c]`` per voxel of the object (Yeh / Quantus draws).

    ``σ_c`` is channel c's standard deviation over the object (voxels where any channel is non-zero; all voxels when
    none is zero); voxels outside the object are left as they are. Seeded by ``seed``.
    """
    arr = volume.array.astype(np.float64)
    obj = _object_mask(arr)
    rng = np.random.default_rng(seed)
    out = arr.copy()
    for c in range(arr.shape[0]):
        sd = float(arr[c][obj].std())
        out[c][obj] += rng.uniform(-radius * sd, radius * sd, size=int(obj.sum()))
    return volume.with_array(out.astype(np.float32))


def max_normalised(a: np.ndarray) -> np.ndarray:
    """``a / max |a|`` (Quantus' ``normalise_by_max``); an all-zero map stays zero."""
    a = np.asarray(a, dtype=np.float64)
    peak = float(np.abs(a).max()) if a.size else 0.0
    return a / peak if peak > 0 else a


def sampled_max_sensitivity(
    volume: Volume, explain_fn: ExplainFn, base: np.ndarray, n_samples: int = SENSITIVITY_SAMPLES,
    radius: float = SENSITIVITY_RADIUS, seed: int = 0,
) -> dict[str, Any]:
    """Max-sensitivity over uniform draws in an r-ball, in Quantus' and in Yeh et al.'s normalisation (see the module
    docstring); draw n uses ``seed + n``.

    Args:
        volume: the input ``(C, K, J, I)``. base: its map ``(K, J, I)``. radius: r in units of each channel's SD.

    Returns:
        ``max_sensitivity_quantus`` (``max_n ‖Φ̂_n − Φ̂‖_F / ‖x‖_F``, Φ̂ = Φ / max|Φ|), ``max_sensitivity_yeh``
        (``max_n ‖Φ_n − Φ‖_F``), their means over the draws, ``input_norm`` (‖x‖_F), ``samples`` and ``radius``.
    """
    if n_samples < 1 or radius <= 0:
        raise InputError(f"max-sensitivity needs samples ≥ 1 and radius > 0; got {n_samples}, {radius}")
    x_norm = float(np.linalg.norm(volume.array.astype(np.float64)))
    ref = np.asarray(base, dtype=np.float64)
    ref_hat = max_normalised(ref)
    quantus: list[float] = []
    yeh: list[float] = []
    for n in range(int(n_samples)):
        other = _map(explain_fn(uniform_ball_noise(volume, radius, seed + n)))
        yeh.append(float(np.linalg.norm(other - ref)))
        if x_norm > 0:
            quantus.append(float(np.linalg.norm(max_normalised(other) - ref_hat)) / x_norm)
    return {
        "max_sensitivity_quantus": max(quantus) if quantus else None,
        "mean_sensitivity_quantus": float(np.mean(quantus)) if quantus else None,
        "max_sensitivity_yeh": max(yeh),
        "mean_sensitivity_yeh": float(np.mean(yeh)),
        "input_norm": x_norm,
        "samples": int(n_samples),
        "radius": float(radius),
    }


def rotation_matrix(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """3×3 rotation by ``angle_deg`` about the unit vector ``axis`` (right-hand rule, Rodrigues' formula)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    t = np.deg2rad(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def _rotation_axis(volume: Volume, axis: str) -> np.ndarray:
    names = {"i": 0, "j": 1, "k": 2}
    if axis not in names:
        raise InputError(f"rotation axis must be i, j or k; got {axis!r}")
    if volume.is_2d:
        return volume.direction[:, 2]  # a 2D image turns in its own plane
    return volume.direction[:, names[axis]]


def _resample_rotated(
    volume: Volume, arr: np.ndarray, rot: np.ndarray, order: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``arr`` ``(C, K, J, I)`` at ``R⁻¹ (p − c) + c`` for each voxel centre p of the grid (c = grid centre).

    Returns the resampled array and the ``(K, J, I)`` mask of voxels whose source lies inside the grid.
    """
    m = volume.ijk_to_ras
    lin, off = m[:3, :3], m[:3, 3]
    shape_kji = np.asarray(volume.shape)
    centre = lin @ ((shape_kji[::-1] - 1) / 2.0) + off
    k, j, i = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape_kji], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()])
    p = lin @ ijk + off[:, None]
    q = rot.T @ (p - centre[:, None]) + centre[:, None]
    src = np.linalg.solve(lin, q - off[:, None])  # (i, j, k) source indices
    coords = src[::-1]  # (k, j, i)
    tol = 1e-6
    inside = np.all((coords >= -tol) & (coords <= (shape_kji[:, None] - 1) + tol), axis=0).reshape(volume.shape)
    out = np.empty(arr.shape, dtype=np.float64)
    for c in range(arr.shape[0]):
        out[c] = ndimage.map_coordinates(arr[c].astype(np.float64), coords, order=order, mode="nearest").reshape(
            volume.shape
        )
    return out, inside


def rotate(volume: Volume, angle_deg: float, axis: str = "k") -> tuple[Volume, np.ndarray]:
    """The volume's content rotated by ``angle_deg`` about its physical centre, on the same grid.

    Returns ``(rotated volume, (K, J, I) mask of voxels that came from inside the original grid)``.
    """
    rot = rotation_matrix(_rotation_axis(volume, axis), angle_deg)
    arr, inside = _resample_rotated(volume, volume.array, rot)
    return volume.with_array(arr.astype(np.float32)), inside


def rotate_back(
    volume: Volume, heatmap: np.ndarray, angle_deg: float, axis: str = "k"
) -> tuple[np.ndarray, np.ndarray]:
    """A map of the rotated input brought back onto the original anatomy (rotation by ``−angle_deg``)."""
    rot = rotation_matrix(_rotation_axis(volume, axis), -angle_deg)
    arr, inside = _resample_rotated(volume, np.asarray(heatmap, dtype=np.float64)[None], rot)
    return arr[0], inside


# ---- the metric --------------------------------------------------------------------------------------------------
def relative_change(reference: np.ndarray, other: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """``‖other − reference‖₂ / ‖reference‖₂`` over ``mask`` (None when the reference map is all zero)."""
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    den = float(np.linalg.norm(a))
    return None if den <= 0 else float(np.linalg.norm(b - a)) / den


def _masked_pair(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outside ``mask`` both maps take the reference's value, so excluded voxels neither help nor hurt much."""
    if mask.all():
        return a, b
    b2 = b.copy()
    b2[~mask] = a[~mask]
    return a, b2


def stability(
    volume: Volume,
    explain_fn: ExplainFn,
    original_map: np.ndarray | None = None,
    *,
    snr_db: Sequence[float] = DEFAULT_SNR_DB,
    rotations_deg: Sequence[float] = DEFAULT_ROTATIONS_DEG,
    rotation_axis: str = "k",
    scales: Sequence[float] = DEFAULT_SCALES,
    seed: int = 0,
    ssim_sigma_mm: float | None = None,
    scaling: str = "auto",
    invariant_reason: str | None = None,
    sensitivity: str = "fixed",
    samples: int = SENSITIVITY_SAMPLES,
    radius: float = SENSITIVITY_RADIUS,
) -> dict[str, Any]:
    """Stability of an explanation under noise, small rotations and intensity scaling (see the module docstring).

    Args:
        volume: the explained input ``(C, K, J, I)``.
        explain_fn: ``volume -> (K, J, I)`` map (e.g. :func:`method_explainer`).
        original_map: Φ(x) if already computed (else computed with ``explain_fn``).
        snr_db: noise levels in dB. rotations_deg: angles in degrees, |angle| ≤ 5. rotation_axis: ``i``, ``j``, ``k``.
        scales: intensity factors. seed: noise seed (level n uses ``seed + n``).
        ssim_sigma_mm: SSIM window σ in mm (default: 1.5 voxels, as Wang et al.).
        scaling: ``auto`` (skip the intensity scalings when ``invariant_reason`` is given), ``always`` or ``never``.
        invariant_reason: why the model is scale-invariant (:func:`scale_invariance`), or None.
        sensitivity: ``fixed``, ``quantus`` or ``yeh`` (see the module docstring); samples, radius: the uniform
            draws of ``quantus`` and ``yeh`` and their r.

    Returns:
        ``stability_ssim``, ``stability_spearman`` (means), ``max_sensitivity`` (by ``sensitivity``), the same per
        perturbation family (``stability_ssim_noise`` …), ``stability_perturbations`` (one record per perturbation),
        ``stability_skipped`` (perturbations left out and why) and ``stability_settings``.
    """
    if scaling not in SCALING_MODES:
        raise InputError(f"unknown stability scaling mode {scaling!r}; use one of {', '.join(SCALING_MODES)}")
    if sensitivity not in SENSITIVITY_MODES:
        raise InputError(f"unknown max-sensitivity convention {sensitivity!r}; use one of "
                         f"{', '.join(SENSITIVITY_MODES)}")
    skipped: dict[str, str] = {}
    if scales and scaling == "never":
        skipped["intensity_scale"] = "scaling='never'"
        scales = ()
    elif scales and scaling == "auto" and invariant_reason:
        skipped["intensity_scale"] = invariant_reason
        scales = ()
    start = time.perf_counter()
    for a in rotations_deg:
        if abs(float(a)) > MAX_ROTATION_DEG + 1e-9:
            raise InputError(f"stability rotations are limited to ±{MAX_ROTATION_DEG:g}°; got {a}°")
    for s in scales:
        if float(s) <= 0:
            raise InputError(f"intensity scale factors must be positive; got {s}")
    base = np.asarray(original_map if original_map is not None else explain_fn(volume), dtype=np.float64)
    if base.ndim == 4:
        base = base[0]
    spacing = volume.spacing_kji
    records: list[dict[str, Any]] = []

    def compare(kind: str, value: float, perturbed_map: np.ndarray, mask: np.ndarray) -> None:
        a, b = _masked_pair(base, perturbed_map, mask)
        s = ssim(a, b, sigma_mm=ssim_sigma_mm, spacing_kji=spacing if ssim_sigma_mm else None)
        records.append({
            "kind": kind,
            "value": float(value),
            "ssim": s,
            "spearman": spearman(base[mask].reshape(1, 1, -1), perturbed_map[mask].reshape(1, 1, -1))
            if mask.sum() > 1 else None,
            "sensitivity": relative_change(base, perturbed_map, mask),
            "voxels_compared": int(mask.sum()),
        })

    full = np.ones(volume.shape, dtype=bool)
    for n, level in enumerate(snr_db):
        compare("noise_snr_db", level, _map(explain_fn(add_noise(volume, level, seed + n))), full)
    for angle in rotations_deg:
        rotated, inside = rotate(volume, float(angle), rotation_axis)
        back, inside_back = rotate_back(volume, _map(explain_fn(rotated)), float(angle), rotation_axis)
        came_from_grid = rotate_back(volume, inside.astype(np.float64), float(angle), rotation_axis)[0] > 0.5
        compare("rotation_deg", angle, back, inside_back & came_from_grid)
    for factor in scales:
        compare("intensity_scale", factor, _map(explain_fn(volume.with_array(volume.array * np.float32(factor)))), full)

    out: dict[str, Any] = {}
    families = {"": records, "_noise": [], "_rotation": [], "_scaling": []}
    for r in records:
        fam = {"noise_snr_db": "_noise", "rotation_deg": "_rotation", "intensity_scale": "_scaling"}[r["kind"]]
        families[fam].append(r)
    for suffix, recs in families.items():
        if not recs:
            continue
        out[f"stability_ssim{suffix}"] = _mean([r["ssim"] for r in recs])
        out[f"stability_spearman{suffix}"] = _mean([r["spearman"] for r in recs])
    sens = [r["sensitivity"] for r in records if r["sensitivity"] is not None]
    out["max_sensitivity"] = max(sens) if sens else None
    if sensitivity != "fixed":
        out["max_sensitivity_fixed"] = out["max_sensitivity"]
        out.update(sampled_max_sensitivity(volume, explain_fn, base, samples, radius, seed + 1000))
        out["max_sensitivity"] = out[f"max_sensitivity_{sensitivity}"]
    out["max_sensitivity_convention"] = sensitivity
    out["stability_perturbations"] = records
    out["stability_skipped"] = skipped
    out["stability_settings"] = {
        "snr_db": [float(v) for v in snr_db],
        "rotations_deg": [float(v) for v in rotations_deg],
        "rotation_axis": rotation_axis,
        "scales": [float(v) for v in scales],
        "seed": int(seed),
        "ssim_sigma_mm": ssim_sigma_mm,
        "scaling": scaling,
        "sensitivity": sensitivity,
        "seconds": round(time.perf_counter() - start, 4),
    }
    return out


def _map(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    return a[0] if a.ndim == 4 else a


def _mean(values: list[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


__all__ = [
    "add_noise",
    "explain_map",
    "method_explainer",
    "random_map",
    "relative_change",
    "rotate",
    "rotate_back",
    "rotation_matrix",
    "sampled_max_sensitivity",
    "scale_invariance",
    "stability",
    "uniform_ball_noise",
]
