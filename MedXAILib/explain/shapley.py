"""KernelSHAP and LIME over supervoxels: our own batched implementations, and a captum reference for comparison.

Both methods explain a target score ``f`` (see :mod:`MedXAILib.targets`) through M interpretable features — the
supervoxels of :mod:`MedXAILib.explain.supervoxels` (optionally × input channels). A *coalition* ``z ∈ {0, 1}^M``
keeps the features with ``z_i = 1`` and replaces the others by a baseline ``b``::

    x(z) = b + z[labels] ⊙ (x − b)          (one gather of z over the label array, then one fused multiply-add)

so a whole batch of masked inputs is built with one ``index_select`` and one ``addcmul``, and scored in one batched
forward pass under ``torch.inference_mode()``.

**KernelSHAP** (Lundberg & Lee, NeurIPS 2017). The Shapley values are the solution of a weighted least-squares problem
over coalitions with the Shapley kernel ``π(z) = (M − 1) / (C(M, |z|) · |z| · (M − |z|))``, subject to
``Σ φ_i = f(x) − f(b)`` (efficiency). Coalitions:

- when ``2^M − 2 ≤ n_samples`` every coalition is enumerated with its exact kernel weight, and the solution *is* the
  exact Shapley value vector;
- otherwise coalition sizes are visited in pairs ``(s, M − s)`` from the smallest: a pair whose expected share of the
  remaining samples covers all its subsets is enumerated outright (weight: its exact kernel mass); the rest is
  sampled by stratum — a multinomial count per size pair ∝ its kernel mass ``(M − 1) / (s (M − s))``, that many
  *distinct* uniform subsets of size ``s`` and (paired / antithetic sampling, Covert & Lee 2021) their complements,
  each subset carrying its size's mass divided by the number drawn of that size. Drawing distinct subsets matters
  when ``n_samples`` is a small multiple of M: sampling with replacement (as captum does) repeats the many likely
  singletons, and the regression becomes rank-deficient.

The constraint is enforced exactly by eliminating the last feature, ``φ_M = Δ − Σ_{i<M} φ_i``, and solving the
remaining unconstrained weighted least squares (float64); the attributions therefore sum to ``f(x) − f(b)`` up to
rounding. Under the constraint a coalition and its complement give the same regressor row, so with paired sampling
``n_samples ≈ 2M`` leaves the system nearly singular; a small Tikhonov term (``ridge``, relative to the normal
matrix's mean diagonal; default 0.01, never applied to an exact enumeration) fixes that. Measured on a 64-feature
synthetic function against a 40 000-sample reference (Spearman, 4 seeds): at 128 samples 0.19 → 0.72 with the
ridge (captum's KernelShap: 0.39); at 512 samples 0.93 either way (captum: 0.67).

**LIME** (Ribeiro et al., KDD 2016). ``n_samples`` coalitions — the original (all ones) and uniform random ones — are
weighted by the exponential kernel ``exp(−d² / (2 w²))`` of their cosine (or Hamming) distance ``d`` to the all-ones
vector in the interpretable space (``w`` = ``kernel_width``), and a ridge regression ``f(z) ≈ β₀ + β·z`` (intercept
not penalised, closed form) is fitted; ``β`` are the attributions and the weighted R² of the surrogate is reported.

Maps: every voxel gets its feature's attribution (not divided by the supervoxel's size), so the map is ``(1, *grid)``
— or ``(C, *grid)`` per channel with ``per_channel_groups=true``, where each supervoxel of each input channel is its
own feature and the engine reports each sequence's share of |relevance|.

Coarser scoring (``score_scale < 1``, default 1 = exact): the masked inputs are built on the model grid and scored on
a grid ``score_scale`` times it per axis (:class:`~MedXAILib.explain.coarse.CoarseScorer`; 1/8 of the cost per pass in
3D at 0.5). The attributions then explain that coarse function — KernelSHAP's sum is its ``f(x) − f(b)`` — and
``details["score_scale_error"]`` reports how far it is from the full-grid one: the baseline, ``x`` and
``scale_error_samples`` random coalitions are scored on both grids and their score differences compared
(:func:`score_scale_error`; ``scale_error_samples = 0`` skips the estimate and its passes). The benchmark times it
beside the exact path and judges it by its agreement with a high-sample *full-grid* reference, so the approximation's
error counts against it.

Baselines (``baseline``): ``mean`` — each channel's mean over the grid; ``zero`` — zeros (the normalised intensity
0); ``blur`` — the input smoothed by a Gaussian of ``blur_mm`` millimetres (σ, per physical axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import MethodError
from ..models import Model, PreparedInput
from .base import ExplainContext, Method, MethodResult, register
from .coarse import CoarseScorer, check_scale, rescore_error
from .supervoxels import supervoxels
from .window_cache import ContextScorer

BASELINES = ("mean", "zero", "blur")
ScoreFn = Callable[[torch.Tensor], torch.Tensor]

# ---------------------------------------------------------------------------------------------------------------
# features, baselines and the masked scorer


def make_baseline(x: torch.Tensor, kind: str, spacing: Sequence[float] = (), blur_mm: float = 8.0) -> torch.Tensor:
    """The reference input ``b`` for a ``(1, C, *grid)`` input (same shape); ``spacing`` in mm per grid axis."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        dims = tuple(range(2, x.ndim))
        return x.mean(dim=dims, keepdim=True).expand_as(x).contiguous()
    if kind == "blur":
        from scipy.ndimage import gaussian_filter

        if not spacing:
            spacing = (1.0,) * (x.ndim - 2)
        sigma = [0.0] + [blur_mm / float(s) for s in spacing]
        arr = x[0].detach().cpu().numpy().astype(np.float32)
        return torch.from_numpy(gaussian_filter(arr, sigma=sigma, mode="nearest"))[None].to(x.device, x.dtype)
    raise MethodError(f"unknown baseline {kind!r}; use one of {', '.join(BASELINES)}")


def feature_index(labels: np.ndarray, n_channels: int, per_channel: bool, device: torch.device) -> torch.Tensor:
    """Per-voxel feature ids, ``(1, G)`` (features = supervoxels) or ``(C, G)`` (supervoxels × channels), int64.

    ``G`` is the number of grid voxels; with ``per_channel`` the feature of channel ``c`` is ``c · M + label``.
    """
    flat = torch.from_numpy(np.ascontiguousarray(labels.reshape(-1), dtype=np.int64)).to(device)
    if not per_channel:
        return flat[None]
    m = int(labels.max()) + 1
    return torch.stack([flat + c * m for c in range(n_channels)])


class MaskedScorer:
    """Scores coalitions: ``f(b + z[labels] ⊙ (x − b))`` for a batch of coalitions ``z``.

    Args:
        score_fn: ``(B, C, *grid)`` batch → ``(B,)`` target scores.
        x, baseline: ``(1, C, *grid)`` input and baseline.
        index: ``(1, G)`` or ``(C, G)`` feature id of every voxel (see :func:`feature_index`).
        batch_size: coalitions per forward pass.
    """

    def __init__(
        self, score_fn: ScoreFn, x: torch.Tensor, baseline: torch.Tensor, index: torch.Tensor, batch_size: int = 8
    ) -> None:
        if batch_size < 1:
            raise MethodError(f"batch_size must be at least 1 (got {batch_size})")
        self.score_fn = score_fn
        self.base = baseline
        self.delta = x - baseline
        self.index = index
        self.flat_index = index.reshape(-1)
        self.grid = tuple(x.shape[2:])
        self.batch_size = int(batch_size)
        self.n_evaluated = 0

    def masked_inputs(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, M)`` 0/1 float coalitions → ``(B, C, *grid)`` masked inputs."""
        masks = z.index_select(1, self.flat_index).view((z.shape[0], self.index.shape[0]) + self.grid)
        return torch.addcmul(self.base, masks, self.delta)

    def __call__(self, z: np.ndarray, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Scores ``(S,)`` float64 of coalitions ``z`` ``(S, M)``, in batches of ``batch_size``."""
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.delta.device, dtype=self.delta.dtype)
        out = np.empty(zt.shape[0], dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, zt.shape[0], self.batch_size):
                chunk = zt[start : start + self.batch_size]
                inputs = self.masked_inputs(chunk)
                scores = (self.score_fn(inputs, coalitions=chunk) if getattr(self.score_fn, "takes_coalitions", False)
                          else self.score_fn(inputs))
                out[start : start + chunk.shape[0]] = scores.double().cpu().numpy()
                if progress is not None:
                    progress(min(1.0, (start + chunk.shape[0]) / zt.shape[0]))
        self.n_evaluated += int(zt.shape[0])
        return out


# ---------------------------------------------------------------------------------------------------------------
# KernelSHAP


def shapley_kernel(m: int, size: np.ndarray | int) -> np.ndarray:
    """Shapley kernel weight ``(M − 1) / (C(M, s) s (M − s))`` of one coalition of size ``s`` (0 < s < M)."""
    s = np.asarray(size, dtype=np.int64)
    comb = np.array([float(math.comb(m, v)) for v in range(m + 1)])
    sf = s.astype(np.float64)
    return (m - 1) / (comb[s] * sf * (m - sf))


def _subsets_of_size(m: int, s: int) -> np.ndarray:
    from itertools import combinations

    out = np.zeros((math.comb(m, s), m), dtype=bool)
    for row, idx in enumerate(combinations(range(m), s)):
        out[row, list(idx)] = True
    return out


def _merge_duplicates(z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    packed = np.packbits(z, axis=1)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    weights = np.bincount(inverse.reshape(-1), weights=w, minlength=first.size)
    order = np.argsort(first)
    return z[first[order]], weights[order]


def _distinct_subsets(m: int, s: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct uniform subsets of size ``s`` (all of them when ``count ≥ C(m, s)``), ``(count, m)`` bool."""
    total = math.comb(m, s)
    if count <= 0:
        return np.zeros((0, m), dtype=bool)
    if count >= total:
        return _subsets_of_size(m, s)
    seen: dict[bytes, np.ndarray] = {}
    for _ in range(50):
        keys = rng.random((2 * (count - len(seen)) + 4, m))
        ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
        for row in ranks < s:  # a uniform subset of size s per row
            seen.setdefault(np.packbits(row).tobytes(), row)
            if len(seen) == count:
                return np.stack(list(seen.values()))
    return np.stack(list(seen.values()))


def _stratified_draw(
    m: int, sizes: np.ndarray, mass: np.ndarray, n_draw: int, total_mass: float, rng: np.random.Generator,
    paired: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample the open sizes: a multinomial count per size pair ∝ its kernel mass, distinct subsets within each size
    (their complements with them when ``paired``), each subset weighted by its size's mass / its count."""
    pairs = sorted({(int(min(v, m - v)), int(max(v, m - v))) for v in sizes})
    pair_mass = np.array([mass[a - 1] + (mass[b - 1] if b != a else 0.0) for a, b in pairs])
    counts = rng.multinomial(max(1, n_draw // 2 if paired else n_draw), pair_mass / pair_mass.sum())
    rows: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for (a, b), k in zip(pairs, counts):
        if k == 0:
            continue
        if paired or a == b:
            sub = _distinct_subsets(m, a, int(k), rng)
            groups = [sub] if a == b else [sub, ~sub]
        else:
            n_a = int(rng.binomial(k, 0.5))
            groups = [g for g in (_distinct_subsets(m, a, n_a, rng), _distinct_subsets(m, b, int(k) - n_a, rng))
                      if len(g)]
        for g in groups:
            size = int(g[0].sum())
            rows.append(g)
            weights.append(np.full(len(g), mass[size - 1] / len(g)))
    z = np.concatenate(rows)
    w = np.concatenate(weights)
    return z, w * (total_mass / w.sum())  # sizes never drawn carry no weight; the total mass is kept


def kernel_shap_coalitions(
    m: int, n_samples: int, rng: np.random.Generator, paired: bool = True
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Coalitions and regression weights for KernelSHAP (see the module docstring).

    Returns:
        ``z`` ``(S, M)`` bool (no empty or full coalition, no duplicates), ``w`` ``(S,)`` float64 weights summing to
        the kernel's total mass over proper coalitions, and whether the enumeration was exact.
    """
    if m < 2:
        return np.zeros((0, m), dtype=bool), np.zeros(0), True
    sizes = np.arange(1, m)
    mass = (m - 1) / (sizes * (m - sizes)).astype(np.float64)  # kernel mass of each size (all its subsets)
    if m <= 30 and 2**m - 2 <= n_samples:
        z = np.concatenate([_subsets_of_size(m, s) for s in sizes])
        return z, shapley_kernel(m, z.sum(1)), True
    rows: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    budget = float(n_samples)
    remaining_mass = float(mass.sum())
    open_sizes = list(sizes)
    for s in range(1, m // 2 + 1):
        pair = [s] if s == m - s else [s, m - s]
        n_sub = sum(math.comb(m, v) for v in pair)
        pair_mass = float(sum(mass[v - 1] for v in pair))
        if budget * pair_mass / remaining_mass < n_sub - 1e-9 or n_sub > budget:
            break
        for v in pair:
            sub = _subsets_of_size(m, v)
            rows.append(sub)
            weights.append(np.full(len(sub), mass[v - 1] / len(sub)))
            open_sizes.remove(v)
        budget -= n_sub
        remaining_mass -= pair_mass
    n_draw = int(budget)
    if n_draw > 0 and open_sizes:
        z, w = _stratified_draw(m, np.asarray(open_sizes), mass, n_draw, remaining_mass, rng, paired)
        rows.append(z)
        weights.append(w)
    z_all = np.concatenate(rows) if rows else np.zeros((0, m), dtype=bool)
    w_all = np.concatenate(weights) if weights else np.zeros(0)
    z_all, w_all = _merge_duplicates(z_all, w_all)
    return z_all, w_all, False


def constrained_wls(
    z: np.ndarray, y: np.ndarray, w: np.ndarray, f0: float, f1: float, ridge: float = 0.0
) -> np.ndarray:
    """Minimise ``Σ w (y − f0 − z·φ)²`` subject to ``Σ φ = f1 − f0`` (exactly, by eliminating the last φ).

    Args:
        z: ``(S, M)`` 0/1 coalitions; y: ``(S,)`` their scores; w: ``(S,)`` weights; f0, f1: f(baseline), f(x).
        ridge: Tikhonov term, relative to the mean diagonal of the reduced normal matrix (0 = plain least squares).
            It shrinks the M − 1 free values only; the constraint still holds exactly.

    Returns:
        ``(M,)`` float64 attributions.
    """
    m = z.shape[1]
    delta = f1 - f0
    if m == 1:
        return np.array([delta])
    zf = z.astype(np.float64)
    last = zf[:, -1:]
    a = zf[:, :-1] - last
    b = y - f0 - last[:, 0] * delta
    sw = np.sqrt(np.maximum(w, 0.0))[:, None]
    if ridge > 0:
        aw = a * sw
        gram = aw.T @ aw
        gram += ridge * float(np.trace(gram)) / gram.shape[0] * np.eye(gram.shape[0])
        head = np.linalg.solve(gram, aw.T @ (b * sw[:, 0]))
    else:
        head, *_ = np.linalg.lstsq(a * sw, b * sw[:, 0], rcond=None)
    return np.append(head, delta - head.sum())


def kernel_shap(
    scorer: MaskedScorer,
    n_features: int,
    n_samples: int,
    seed: int = 0,
    paired: bool = True,
    progress: Callable[[float], None] | None = None,
    ridge: float = 0.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """KernelSHAP attributions ``(M,)`` of the features, with diagnostics (see the module docstring)."""
    rng = np.random.default_rng(seed)
    z, w, exact = kernel_shap_coalitions(n_features, n_samples, rng, paired)
    ends = np.stack([np.ones(n_features, dtype=bool), np.zeros(n_features, dtype=bool)])
    y = scorer(np.concatenate([ends, z]), progress)
    f1, f0 = float(y[0]), float(y[1])
    phi = constrained_wls(z, y[2:], w, f0, f1, 0.0 if exact else ridge)
    gap = abs(float(phi.sum()) - (f1 - f0))
    details = {
        "n_samples": int(n_samples),
        "n_coalitions_evaluated": int(len(z) + 2),
        "exact_enumeration": bool(exact),
        "n_features": int(n_features),
        "f_x": f1,
        "f_baseline": f0,
        "sum_attributions": float(phi.sum()),
        "efficiency_gap": gap,
        "efficiency_gap_relative": gap / max(abs(f1 - f0), 1e-12),
    }
    return phi, details


# ---------------------------------------------------------------------------------------------------------------
# LIME


def lime_weights(z: np.ndarray, distance: str, kernel_width: float) -> np.ndarray:
    """Exponential kernel ``exp(−d² / (2 w²))`` of each coalition's distance to the all-ones vector."""
    m = z.shape[1]
    on = z.sum(1).astype(np.float64)
    if distance == "cosine":
        d = 1.0 - np.sqrt(on / m)  # cos(z, 1) = |z| / sqrt(|z| · M)
    elif distance == "hamming":
        d = (m - on) / m
    else:
        raise MethodError(f"unknown LIME distance {distance!r}; use cosine or hamming")
    if kernel_width <= 0:
        raise MethodError(f"kernel_width must be positive (got {kernel_width})")
    return np.exp(-(d**2) / (2.0 * kernel_width**2))


def weighted_ridge(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, float, float]:
    """Closed-form weighted ridge ``y ≈ β₀ + z·β`` (β₀ not penalised).

    Returns:
        ``β`` ``(M,)``, ``β₀`` and the weighted R² of the fit.
    """
    zf = z.astype(np.float64)
    wsum = float(w.sum())
    zm = (w[:, None] * zf).sum(0) / wsum
    ym = float((w * y).sum() / wsum)
    zc = zf - zm
    yc = y - ym
    gram = (zc * w[:, None]).T @ zc + alpha * np.eye(z.shape[1])
    beta = np.linalg.lstsq(gram, (zc * w[:, None]).T @ yc, rcond=None)[0]
    intercept = ym - float(zm @ beta)
    resid = yc - zc @ beta
    ss_tot = float((w * yc**2).sum())
    r2 = 1.0 - float((w * resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return beta, intercept, r2


def lime(
    scorer: MaskedScorer,
    n_features: int,
    n_samples: int,
    seed: int = 0,
    kernel_width: float = 0.25,
    distance: str = "cosine",
    alpha: float = 1.0,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """LIME attributions ``(M,)`` of the features, with diagnostics (see the module docstring)."""
    if n_samples < 2:
        raise MethodError(f"lime needs at least 2 samples (got {n_samples})")
    rng = np.random.default_rng(seed)
    z = np.concatenate([np.ones((1, n_features), dtype=bool), rng.random((n_samples - 1, n_features)) < 0.5])
    z, counts = _merge_duplicates(z, np.ones(len(z)))  # the all-ones row stays first
    y = scorer(z, progress)
    beta, intercept, r2 = weighted_ridge(z, y, lime_weights(z, distance, kernel_width) * counts, alpha)
    details = {
        "n_samples": int(n_samples),
        "n_coalitions_evaluated": int(len(z)),
        "n_features": int(n_features),
        "surrogate_r2": r2,
        "intercept": intercept,
        "f_x": float(y[0]),
        "kernel_width": float(kernel_width),
        "distance": distance,
        "alpha": float(alpha),
    }
    return beta, details


# ---------------------------------------------------------------------------------------------------------------
# the registered methods


@dataclass
class Features:
    """The interpretable features of one run: labels ``(*grid)``, the per-voxel index and the feature count."""

    labels: np.ndarray
    index: torch.Tensor
    n_features: int
    n_supervoxels: int
    spacing: tuple[float, ...]


def build_features(ctx: ExplainContext, params: dict[str, Any]) -> Features:
    """Supervoxels of the context's model-grid input, and their feature index (see :func:`feature_index`)."""
    x = ctx.x
    spacing = tuple(float(s) for s in ctx.prepared.model_spacing)
    labels = supervoxels(
        x[0].detach().cpu().numpy(),
        spacing,
        segmentation=str(params["segmentation"]),
        n_segments=int(params["n_segments"]),
        compactness=float(params["compactness"]),
        size_mm=float(params["supervoxel_mm"]),
    )
    m = int(labels.max()) + 1
    per_channel = bool(params.get("per_channel_groups", False))
    index = feature_index(labels, x.shape[1], per_channel, x.device)
    return Features(labels, index, m * (x.shape[1] if per_channel else 1), m, spacing)


def paint(values: np.ndarray, index: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Feature values ``(M,)`` → maps ``(Cg, *grid)`` (each voxel gets its feature's value)."""
    v = torch.as_tensor(values, dtype=torch.float32, device=index.device)
    return v[index].view((index.shape[0],) + tuple(grid))


class _SupervoxelMethod(Method):
    needs_gradients = False
    display = "signed"
    tasks = ("classification", "segmentation")
    target_kinds = ("class", "region", "voxel")
    common_params: dict[str, Any] = {
        "n_samples": 256,
        "batch_size": 8,
        "segmentation": "slic",
        "n_segments": 64,
        "compactness": 0.1,
        "supervoxel_mm": 16.0,
        "baseline": "mean",
        "blur_mm": 8.0,
        "per_channel_groups": False,
        "seed": 0,
        "score_scale": 1.0,
        "scale_error_samples": 2,
    }

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        p = {**self.params, **params}
        if p["baseline"] not in BASELINES:
            raise MethodError(f"{self.name}: unknown baseline {p['baseline']!r}; use one of {', '.join(BASELINES)}")
        if p["segmentation"] not in ("slic", "grid"):
            raise MethodError(f"{self.name}: unknown segmentation {p['segmentation']!r}; use slic or grid")
        if int(p["n_samples"]) < 2:
            raise MethodError(f"{self.name}: n_samples must be at least 2 (got {p['n_samples']})")
        if int(p["batch_size"]) < 1:
            raise MethodError(f"{self.name}: batch_size must be at least 1 (got {p['batch_size']})")
        check_scale(self.name, "score_scale", float(p["score_scale"]))
        if int(p["scale_error_samples"]) < 0:
            raise MethodError(f"{self.name}: scale_error_samples must be ≥ 0 (got {p['scale_error_samples']})")

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        return (int(params["n_samples"]) + 2 + self.scale_error_passes(params), 0)

    @staticmethod
    def scale_error_passes(params: dict[str, Any]) -> int:
        """Passes :func:`score_scale_error` adds (on both grids) when ``score_scale < 1``."""
        n = int(params.get("scale_error_samples", 2))
        if float(params.get("score_scale", 1.0)) >= 1.0 or n <= 0:
            return 0
        return 2 * (n + 2)

    def attribute(self, scorer: MaskedScorer, features: Features, params: dict[str, Any], ctx: ExplainContext
                  ) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        ctx.progress(0.0, f"{self.name}: supervoxels")
        feats = build_features(ctx, params)
        base = make_baseline(ctx.x, str(params["baseline"]), feats.spacing, float(params["blur_mm"]))
        coarse = CoarseScorer(ctx, float(params["score_scale"]))
        # exact scoring reuses the windows a coalition leaves equal to the input's or the baseline's (window_cache)
        cached = ContextScorer(ctx, [ctx.x, base], int(params["batch_size"])) if coarse.low is None else None
        if cached is not None:  # a window's input is fixed by the coalition on the supervoxels it overlaps
            cached.use_features(feats.index)
        score_fn = cached if cached is not None else coarse
        scorer = MaskedScorer(score_fn, ctx.x, base, feats.index, int(params["batch_size"]))
        phi, details = self.attribute(scorer, feats, params, ctx)
        grid = tuple(ctx.x.shape[2:])
        maps = paint(phi, feats.index, grid)
        details = {**details, "n_supervoxels": feats.n_supervoxels, "segmentation": params["segmentation"],
                   "baseline": params["baseline"], "per_channel_groups": bool(params["per_channel_groups"]),
                   "score_grid": coarse.describe(), "feature_values": [float(v) for v in phi]}
        if cached is not None:
            details["window_cache"] = cached.describe()
        if coarse.low is not None and int(params["scale_error_samples"]) > 0:
            details["score_scale_error"] = score_scale_error(
                ctx, scorer, feats.n_features, int(params["scale_error_samples"]), int(params["seed"]) + 1)
        elif coarse.low is not None:
            details["score_scale_error"] = {"method": "not estimated (scale_error_samples = 0)"}
        return MethodResult(maps, per_channel=bool(params["per_channel_groups"]), details=details)


def score_scale_error(
    ctx: ExplainContext, coarse: MaskedScorer, n_features: int, n_random: int, seed: int
) -> dict[str, Any]:
    """How far coarse-grid scores are from full-grid ones, on the coalitions that matter most plus random ones.

    The all-ones coalition (``x``) and ``n_random`` uniform random coalitions are scored on both grids; their score
    differences to the all-zeros coalition (the baseline) are compared with
    :func:`~MedXAILib.explain.coarse.rescore_error`. It costs ``n_random + 2`` passes on each grid.
    """
    if n_random < 0:
        raise MethodError(f"scale_error_samples must be ≥ 0 (got {n_random})")
    rng = np.random.default_rng(seed)
    z = np.concatenate([np.zeros((1, n_features), bool), np.ones((1, n_features), bool),
                        rng.random((n_random, n_features)) < 0.5])
    full = MaskedScorer(ctx.score, ctx.x, coarse.base, coarse.index, coarse.batch_size)
    low_s, full_s = torch.from_numpy(coarse(z)), torch.from_numpy(full(z))
    return rescore_error(low_s[1:] - low_s[0], full_s[1:] - full_s[0],
                         "score differences to the baseline (x and random coalitions)")


@register
class KernelSHAP(_SupervoxelMethod):
    name = "kernelshap"
    title = "KernelSHAP (supervoxels)"
    reference = "Lundberg & Lee, NeurIPS 2017"
    params = {**_SupervoxelMethod.common_params, "paired": True, "ridge": 0.01}
    cost_model = "n_samples + 2 masked forward passes (batched), no backward; exact when 2^M − 2 ≤ n_samples"

    def attribute(self, scorer: MaskedScorer, features: Features, params: dict[str, Any], ctx: ExplainContext
                  ) -> tuple[np.ndarray, dict[str, Any]]:
        return kernel_shap(
            scorer, features.n_features, int(params["n_samples"]), int(params["seed"]), bool(params["paired"]),
            progress=lambda f: ctx.progress(0.05 + 0.9 * f, "kernelshap: masked forward passes"),
            ridge=float(params["ridge"]),
        )


@register
class LIME(_SupervoxelMethod):
    name = "lime"
    title = "LIME (supervoxels)"
    reference = "Ribeiro et al., KDD 2016"
    params = {**_SupervoxelMethod.common_params, "kernel_width": 0.25, "distance": "cosine", "alpha": 1.0}
    cost_model = "n_samples masked forward passes (batched), no backward"

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        p = {**self.params, **params}
        if p["distance"] not in ("cosine", "hamming"):
            raise MethodError(f"lime: unknown distance {p['distance']!r}; use cosine or hamming")
        if float(p["kernel_width"]) <= 0:
            raise MethodError(f"lime: kernel_width must be positive (got {p['kernel_width']})")

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        return (int(params["n_samples"]) + self.scale_error_passes(params), 0)

    def attribute(self, scorer: MaskedScorer, features: Features, params: dict[str, Any], ctx: ExplainContext
                  ) -> tuple[np.ndarray, dict[str, Any]]:
        return lime(
            scorer, features.n_features, int(params["n_samples"]), int(params["seed"]),
            float(params["kernel_width"]), str(params["distance"]), float(params["alpha"]),
            progress=lambda f: ctx.progress(0.05 + 0.9 * f, "lime: masked forward passes"),
        )


# ---------------------------------------------------------------------------------------------------------------
# captum, for benchmarks


def captum_reference(
    method: str,
    model: Model | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    target_fn: Callable[[torch.Tensor], torch.Tensor],
    feature_mask: np.ndarray | torch.Tensor,
    n_samples: int,
    baseline: str | torch.Tensor = "mean",
    perturbations_per_eval: int = 1,
    seed: int = 0,
    spacing: Sequence[float] = (),
    kernel_width: float = 0.25,
    alpha: float = 1.0,
) -> torch.Tensor:
    """captum's ``KernelShap`` or ``Lime`` on the same features, samples and baseline as ours — for benchmarks.

    Args:
        method: ``kernelshap`` or ``lime``.
        model: a :class:`Model` (its ``forward`` over the whole grid, no sliding window, as our methods run it) or any
            callable ``(B, C, *grid) → logits``.
        x: ``(1, C, *grid)`` model-grid input.
        target_fn: logits → ``(B,)`` target scores (e.g. ``ExplainContext.score_of_logits``).
        feature_mask: ``(*grid)`` int supervoxel labels ``0 … M−1`` (ours, from :func:`supervoxels`).
        n_samples: captum's ``n_samples``.
        baseline: ``mean`` / ``zero`` / ``blur`` (built as ours) or a ``(1, C, *grid)`` tensor.
        perturbations_per_eval: captum's batch size (its default is 1; pass our ``batch_size`` for a like-for-like
            batched comparison).
        seed: torch's seed for captum's sampling.
        spacing: mm per grid axis (for the ``blur`` baseline).
        kernel_width, alpha: LIME only: captum is configured with the same surrogate as ours — a ridge of ``alpha``
            and the exponential kernel of the cosine distance to the all-ones vector in the interpretable space.
            (captum's own defaults, a Lasso and an input-space distance, would estimate something else.)

    Returns:
        ``(1, *grid)`` float32 map, each voxel carrying its supervoxel's attribution (as our maps).
    """
    from captum.attr import KernelShap, Lime  # lazily: captum is heavy

    def forward_func(batch: torch.Tensor) -> torch.Tensor:
        # a Model runs once over the whole grid, as our methods run it (ExplainContext.logits)
        logits = model.forward(batch, sliding_window=False) if isinstance(model, Model) else model(batch)
        return target_fn(logits)

    base = baseline if isinstance(baseline, torch.Tensor) else make_baseline(x, baseline, spacing)
    fm = torch.as_tensor(np.asarray(feature_mask), dtype=torch.long, device=x.device)[None, None]
    fm = fm.expand_as(x)
    torch.manual_seed(seed)
    with torch.inference_mode():
        if method == "kernelshap":
            attr = KernelShap(forward_func).attribute(
                x, baselines=base, feature_mask=fm, n_samples=int(n_samples),
                perturbations_per_eval=int(perturbations_per_eval), return_input_shape=False,
            )
        elif method == "lime":
            from captum._utils.models.linear_model import SkLearnRidge

            def similarity(_orig: Any, _pert: Any, interp: torch.Tensor, **_: Any) -> float:
                z = interp.detach().double().reshape(-1).cpu().numpy()
                return float(lime_weights(z[None] > 0.5, "cosine", kernel_width)[0])

            explainer = Lime(forward_func, interpretable_model=SkLearnRidge(alpha=alpha), similarity_func=similarity)
            attr = explainer.attribute(
                x, baselines=base, feature_mask=fm, n_samples=int(n_samples),
                perturbations_per_eval=int(perturbations_per_eval), return_input_shape=False,
            )
        else:
            raise MethodError(f"captum_reference: unknown method {method!r}; use kernelshap or lime")
    phi = attr.detach().reshape(-1).double().cpu().numpy()
    labels = torch.as_tensor(np.asarray(feature_mask), dtype=torch.long, device=x.device)
    return paint(phi, labels.reshape(1, -1), tuple(x.shape[2:]))
