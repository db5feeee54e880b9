"""Score-CAM (Wang et al., CVPR-W 2020): weigh each activation channel by the score of the input masked by it.

For a layer with activations ``A`` (``(1, K, *layer grid)``, captured by :func:`~MedXAILib.explain.cam.layer_capture`
in one forward pass):

1. each channel ``A_k`` is upsampled to the model grid (bilinear in 2D, trilinear in 3D, align_corners=False; see
   :func:`~MedXAILib.explain.cam.upsample_to_grid`) and min-max normalised to ``H_k ∈ [0, 1]``
   (a constant channel gives ``H_k = 0``);
2. ``s_k = f(x ⊙ H_k)`` — the target score of the input masked by ``H_k`` (the same mask on every input channel);
3. channel weights, by ``weighting``:

   - ``softmax``: ``w = softmax_k(s_k)`` — the paper's rule (softmax over channels). It is shift-invariant, so the
     paper's baseline term ``f(x_b)`` cancels and costs no pass. Right for one logit (a class, a voxel).
   - ``increase``: ``w_k = (s_k − s_b) / Σ_j |s_j − s_b|`` with ``s_b = f(x ⊙ 0)`` — the score increase over the
     all-masked baseline, normalised to unit ℓ1. A region score is a sum of many logits (thousands), on which a
     softmax would be one-hot (``exp`` of differences of hundreds), so region targets use this rule.
   - ``probability``: ``w_k = p(x ⊙ H_k) / Σ_j p(x ⊙ H_j)`` — the authors' rule (their code weighs each mask by
     the softmax class probability of the masked input): ``p`` is the model's output activation (softmax or
     sigmoid) of the target class — for a region or voxel target, its mean over the target's weights,
     ``Σ W ⊙ p / Σ W``. The ℓ1 normalisation only rescales the map.
   - ``auto`` (default): ``increase`` for region targets, ``softmax`` for class and voxel targets. ``softmax`` is
     pytorch-grad-cam's rule (a softmax over channels of the target logit), not the paper's class probability.

4. map = ``Σ_k w_k A_k`` (no ReLU; the display view shows the positive part), computed on the layer grid and upsampled
   once — the same as ``Σ_k w_k up(A_k)`` because the interpolation is linear.

Pruning (``top_k > 0``): only the ``top_k`` channels ranked by a gradient-free criterion (``prune_by``: ``std``, the
default, or ``mean`` of the activation over the layer grid) are scored; the weights are normalised over them and the
map sums them only. ``std`` is the default because a channel that varies little over space adds a near-constant
offset to the map, which changes neither its ranks (Spearman) nor its shape; measured on a random-weight MONAI UNet
(channels 16–128, 4×48³, layer with 32 channels, region target): top 16 by ``std`` kept Spearman 0.96 to the full map,
top 8 by ``mean`` only 0.86.

The error pruning causes is estimated without scoring every channel: ``error_samples`` of the dropped channels are
drawn at random (seeded) and scored; ``Σ_dropped r_k A_k`` and the normaliser ``Σ_dropped |r_k|`` are estimated as
``n_dropped / m`` × the sample's sums (unbiased, and exact when every dropped channel is sampled), where ``r_k`` is
the un-normalised weight (``exp(s_k − c)`` or ``s_k − s_b``). ``details["pruning_error"]`` gives the relative ℓ2
distance and the Spearman correlation between the pruned map and that estimate of the full map (on the model grid,
over at most 200 000 evenly strided voxels). With ``error_samples = 0`` only the share of activation mass (Σ|A|) that
was dropped is reported.

Coarser masked passes (``mask_scale < 1``): the masked inputs are scored on a grid ``mask_scale`` times the model
grid per axis (see :class:`_Scorer`), ``mask_scale^dims`` the cost per pass; the map still uses the full-resolution
activations. The error is reported in ``details["mask_scale_error"]`` by re-scoring ``max(error_samples, 2)`` scored
channels on the full grid (with ``error_samples = 0``: not estimated). How well it holds depends on the network, so
it is an option, not a default: on the trained demo U-Net (``demo-brain-tumour``, brain phantom 4×128³, region
target) ``mask_scale = 0.5`` kept Spearman 0.998 to the plain loop at 6.7× its speed (the benchmark's fast Score-CAM
setting), while on the random-weight UNet above it gave a score error of 90 % and Spearman 0.47 — and the report
said so.

Through a sliding window (the model function, ``exact``, MONAI's sliding window): ``A`` is the function's activation
at the layer — each window's activation upsampled to its window and blended with the inferer's weights, exactly as
the function blends its logits — so ``A_k`` lies on the model grid; ``s_k`` is the function's score of ``x ⊙ H_k``,
scored with :class:`~MedXAILib.explain.window_cache.WindowCache` (windows holding none of the target are never run).
A model that runs its own sliding window (nnU-Net) is refused: pass ``exact=false``.

Speed: masked passes run batched (``batch_size`` masked inputs per forward, the batch buffer reused), under
``torch.inference_mode``, with masks upsampled per batch (memory ``batch_size × C × grid``, never ``K × grid``).
:func:`scorecam_reference` is the plain one-channel-at-a-time loop, kept as the reference for tests and the benchmark.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import MethodError
from ..models import Model, PreparedInput
from .base import ExplainContext, Method, MethodResult, register
from .cam import layer_capture, upsample_to_grid
from .coarse import CoarseScorer, check_scale, rescore_error
from .window_cache import WindowCache

WEIGHTINGS = ("auto", "softmax", "increase", "probability")
PRUNE_BY = ("mean", "std")


def capture_activations(ctx: ExplainContext, layer: str | None) -> torch.Tensor:
    """Activations at ``layer``: ``(1, K, *layer grid)`` from one forward pass (counted) on the whole grid, or —
    when the model function is a sliding window (``ctx.exact``) — ``(1, K, *model grid)``, the windows' activations
    each upsampled to its window and blended with the inferer's weights, as the function blends its logits."""
    model = ctx.model
    if getattr(ctx, "exact", False):
        from .function_gradients import sliding_window_function

        plan = sliding_window_function(model, tuple(ctx.x.shape[2:]))
        if plan is not None:
            return _blended_activations(ctx, layer, plan)
        if model.window_plan(tuple(ctx.x.shape[2:])) is not None:
            raise MethodError(
                f"{model.name!r} runs its own sliding window over this input; Score-CAM through it is not "
                "implemented exactly. Pass --param exact=false to explain one whole-grid pass (its deviation is "
                "reported)")
    with torch.no_grad(), layer_capture(model, layer, leaf=False) as captured:
        model.network_pass(ctx.x)
        ctx.forward_passes += 1
    if len(captured) != 1:
        raise MethodError(
            f"layer {layer or model.description.cam_layer!r} ran {len(captured)} times in one forward pass; "
            "choose a layer that runs once"
        )
    return captured[0].detach()


def _blended_activations(ctx: ExplainContext, layer: str | None, plan: Any) -> torch.Tensor:
    from ..models.function import pad_for_plan

    model = ctx.model
    xp = pad_for_plan(ctx.x.detach().as_subclass(torch.Tensor), plan)
    g = plan.importance.to(xp.device, torch.float32)
    acc: torch.Tensor | None = None
    norm = torch.zeros(plan.padded, device=xp.device)
    for sl in plan.slices:
        with torch.no_grad(), layer_capture(model, layer, leaf=False) as captured:
            model.network(xp[(slice(None), slice(None)) + sl])
        if len(captured) != 1:
            raise MethodError(f"layer {layer or model.description.cam_layer!r} ran {len(captured)} times in one "
                              "network pass; choose a layer that runs once")
        up = upsample_to_grid(captured[0].detach()[0].float(), model, tuple(plan.roi))
        if acc is None:
            acc = torch.zeros((up.shape[0],) + plan.padded, device=xp.device)
        acc[(slice(None),) + sl] += up * g
        norm[sl] += g
    ctx.forward_passes += 1  # one evaluation of the function
    assert acc is not None
    crop = tuple(slice(a, a + n) for n, (a, _) in zip(plan.grid, plan.pad))
    return (acc[(slice(None),) + crop] / norm[crop].clamp_min(1e-12))[None]


def on_grid(acts: torch.Tensor, model: Model, grid: tuple[int, ...]) -> torch.Tensor:
    """``(b, *spatial)`` activations on the model grid: already there (blended windows), else upsampled."""
    if tuple(acts.shape[1:]) == tuple(grid):
        return acts
    return upsample_to_grid(acts, model, grid)


def channel_masks(acts: torch.Tensor, model: Model, grid: tuple[int, ...]) -> torch.Tensor:
    """``(1, b, *layer grid)`` activations → ``(b, 1, *grid)`` masks, upsampled and min-max normalised to [0, 1]."""
    up = on_grid(acts[0], model, grid)  # (b, *grid)
    flat = up.reshape(up.shape[0], -1)
    lo = flat.min(dim=1).values
    span = flat.max(dim=1).values - lo
    shape = (-1,) + (1,) * len(grid)
    ok = (span > 0).reshape(shape)
    masks = torch.where(ok, (up - lo.reshape(shape)) / torch.where(ok, span.reshape(shape), 1.0), 0.0)
    return masks[:, None]


def resolve_weighting(weighting: str, target_kind: str) -> str:
    if weighting not in WEIGHTINGS:
        raise MethodError(f"scorecam: weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    if weighting == "auto":
        return "increase" if target_kind == "region" else "softmax"
    return weighting


def raw_weights(scores: torch.Tensor, weighting: str, baseline: float, shift: float) -> torch.Tensor:
    """Un-normalised weights ``r_k``: ``exp(s_k − shift)`` (softmax), ``s_k − s_b`` (increase) or the probability
    ``s_k`` itself (probability); float64."""
    s = scores.double()
    if weighting == "probability":
        return s
    return torch.exp(s - shift) if weighting == "softmax" else s - baseline


def normalise(r: torch.Tensor) -> torch.Tensor:
    z = r.abs().sum()
    return r / z if float(z) > 0 else torch.zeros_like(r)


class _Scorer(CoarseScorer):
    """Scores masked inputs on the model grid, or on a coarser grid (``mask_scale < 1``; see
    :class:`~MedXAILib.explain.coarse.CoarseScorer`); the masks are resampled with the input."""

    def __init__(self, ctx: ExplainContext, mask_scale: float = 1.0, probability: bool = False) -> None:
        super().__init__(ctx, mask_scale)
        self.x = self.to_grid(ctx.x.detach())
        self.probability = probability
        self.cache: WindowCache | None = None
        if self.low is None and getattr(ctx, "exact", False):  # the model function, window by window
            self.cache = WindowCache(ctx.model, ctx.weights, [], "probability" if probability else "logit", True)

    def score(self, batch: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            self.ctx.forward_passes += int(batch.shape[0])
            return self.cache(batch)
        if not self.probability:
            return self.score_on_grid(batch)
        p = self.ctx.model.activation(self.ctx.logits(batch).float())
        w = self.weights
        return (p * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-12)

    def masks(self, acts: torch.Tensor) -> torch.Tensor:
        model = self.ctx.model
        div = model.divisor() if model.task == "segmentation" else 1
        if self.low is not None and all(g % div == 0 for g in self.grid) and tuple(acts.shape[2:]) != self.grid:
            # the layer covers exactly the model grid (no divisor padding), so the masks can be upsampled straight
            # onto the scoring grid, without a full-size intermediate per channel
            return channel_masks(acts, model, self.low)
        return self.to_grid(channel_masks(acts, model, self.grid))


def masked_scores(
    ctx: ExplainContext,
    acts: torch.Tensor,
    channels: list[int],
    batch_size: int,
    stage: str = "scorecam",
    mask_scale: float = 1.0,
    probability: bool = False,
) -> torch.Tensor:
    """Scores ``(len(channels),)`` float64 of the input masked by each listed channel, ``batch_size`` per pass
    (target probabilities instead of target logit sums with ``probability``)."""
    scorer = _Scorer(ctx, mask_scale, probability)
    x = scorer.x
    out = torch.empty(len(channels), dtype=torch.float64)
    bs = max(1, min(batch_size, len(channels) or 1))
    buf = torch.empty((bs,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    with torch.inference_mode():
        for start in range(0, len(channels), bs):
            idx = channels[start : start + bs]
            batch = buf[: len(idx)]
            torch.mul(x, scorer.masks(acts[:, idx]), out=batch)
            out[start : start + len(idx)] = scorer.score(batch).double().cpu()
            ctx.progress((start + len(idx)) / max(len(channels), 1), f"{stage}: masked passes")
    return out


def baseline_score(ctx: ExplainContext, mask_scale: float = 1.0) -> float:
    """``f(x ⊙ 0)``: the score of the fully masked input (one counted pass), on the grid the masks use."""
    scorer = _Scorer(ctx, mask_scale)
    with torch.inference_mode():
        return float(scorer.score(torch.zeros_like(scorer.x)).double()[0])


def _spearman(a: torch.Tensor, b: torch.Tensor, max_voxels: int = 200_000) -> float:
    from scipy.stats import spearmanr

    fa, fb = a.reshape(-1), b.reshape(-1)
    step = max(1, fa.numel() // max_voxels)
    va, vb = fa[::step].double().cpu().numpy(), fb[::step].double().cpu().numpy()
    if np.ptp(va) == 0 or np.ptp(vb) == 0:
        return 1.0 if np.allclose(va, vb) else 0.0
    return float(spearmanr(va, vb).statistic)


def scorecam_reference(
    ctx: ExplainContext, layer: str | None = None, weighting: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain Score-CAM loop: one channel, one masked forward pass at a time, no batching and no pruning.

    Returns:
        ``(1, *model grid)`` map ``Σ_k w_k up(A_k)`` and the ``(K,)`` weights — the reference the fast path
        (:class:`ScoreCAM` with ``top_k = 0``) must equal.
    """
    rule = resolve_weighting(weighting, ctx.target.kind)
    acts = capture_activations(ctx, layer)
    grid = tuple(ctx.x.shape[2:])
    x = ctx.x.detach()
    scores = []
    with torch.no_grad():
        for k in range(acts.shape[1]):
            up = on_grid(acts[0, k : k + 1], ctx.model, grid)[0]
            lo, hi = up.min(), up.max()
            mask = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
            if rule == "probability":  # the target class's probability of the masked input, plainly
                p = ctx.model.activation(ctx.logits(x * mask).float())
                scores.append(float((p * ctx.weights).sum() / ctx.weights.sum()))
            else:
                scores.append(float(ctx.score(x * mask)[0]))
        s = torch.tensor(scores, dtype=torch.float64)
        if rule == "softmax":
            w = torch.softmax(s, dim=0)
        elif rule == "probability":
            w = s / s.abs().sum()
        else:
            d = s - baseline_score(ctx)
            w = d / d.abs().sum() if float(d.abs().sum()) > 0 else torch.zeros_like(d)
        cam = torch.zeros(grid, dtype=torch.float64)
        for k in range(acts.shape[1]):
            cam += w[k] * on_grid(acts[0, k : k + 1], ctx.model, grid)[0].double()
    return cam[None].float(), w


def layer_channels(model: Model, prepared: PreparedInput, layer: str | None) -> int:
    """The layer's channel count: its own ``out_channels`` / ``num_features`` if it has one, else one forward pass.

    (The last convolution inside a block is not trusted: a dense block concatenates, so its output has more channels.)
    """
    module = model.layer(layer)
    for attr in ("out_channels", "num_features"):
        n = getattr(module, attr, None)
        if isinstance(n, int) and n > 0:
            return n
    with torch.inference_mode(), layer_capture(model, layer, leaf=False) as captured:
        model.network_pass(prepared.tensor)
    return int(captured[0].shape[1])


@register
class ScoreCAM(Method):
    """Score-CAM with batched masked passes and optional top-k pruning; see the module docstring."""

    name = "scorecam"
    title = "Score-CAM"
    reference = "Wang et al., CVPR Workshops 2020"
    dims = (2, 3)
    tasks = ("classification", "segmentation")
    target_kinds = ("class", "region", "voxel")
    needs_gradients = False
    display = "positive"
    params = {
        "layer": "",
        "batch_size": 4,
        "weighting": "auto",
        "top_k": 0,
        "prune_by": "std",
        "error_samples": 2,
        "seed": 0,
        "mask_scale": 1.0,
    }
    cost_model = (
        "1 forward (activations) + K masked forwards (top_k if pruned, + error_samples), + 1 baseline forward for "
        "'increase' weighting; batched, no backward"
    )

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        resolve_weighting(str(params.get("weighting", "auto")), target.kind)
        if params.get("prune_by", "mean") not in PRUNE_BY:
            raise MethodError(f"scorecam: prune_by must be one of {', '.join(PRUNE_BY)}, got {params['prune_by']!r}")
        if int(params.get("batch_size", 1)) < 1:
            raise MethodError("scorecam: batch_size must be at least 1")
        if int(params.get("top_k", 0)) < 0 or int(params.get("error_samples", 0)) < 0:
            raise MethodError("scorecam: top_k and error_samples must be ≥ 0")
        check_scale("scorecam", "mask_scale", float(params.get("mask_scale", 1.0)))

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        k = layer_channels(model, prepared, params.get("layer") or None)
        top_k = int(params.get("top_k", 0))
        n = 1
        if 0 < top_k < k:
            n += top_k + min(int(params.get("error_samples", 0)), k - top_k)
        else:
            n += k
        if params.get("weighting") in ("auto", "increase"):
            n += 1  # the baseline pass (only made for 'increase', which 'auto' uses for region targets)
        return (n, 0)

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        layer = params.get("layer") or None
        rule = resolve_weighting(str(params["weighting"]), ctx.target.kind)
        batch_size = int(params["batch_size"])
        ctx.progress(0.02, "scorecam: activations")
        acts = capture_activations(ctx, layer)
        n_ch = int(acts.shape[1])
        top_k = int(params["top_k"])
        pruned = 0 < top_k < n_ch
        if pruned:
            flat = acts[0].reshape(n_ch, -1).double()
            crit = flat.mean(1) if params["prune_by"] == "mean" else flat.std(1)
            kept = sorted(torch.argsort(crit, descending=True)[:top_k].tolist())
        else:
            kept = list(range(n_ch))
        dropped = [k for k in range(n_ch) if k not in set(kept)]
        scale = float(params["mask_scale"])
        s_b = baseline_score(ctx, scale) if rule == "increase" else 0.0
        scores = masked_scores(ctx, acts, kept, batch_size, mask_scale=scale, probability=rule == "probability")
        shift = float(scores.max()) if rule == "softmax" else 0.0
        r_kept = raw_weights(scores, rule, s_b, shift)
        w_kept = normalise(r_kept)
        grid = tuple(ctx.x.shape[2:])
        a_kept = acts[0, kept].double()
        cam = (w_kept.reshape((-1,) + (1,) * (acts.ndim - 2)).to(a_kept.device) * a_kept).sum(0, keepdim=True)
        maps = on_grid(cam.float(), ctx.model, grid)
        details: dict[str, Any] = {
            "layer": layer or ctx.model.description.cam_layer,
            "layer_shape": list(acts.shape[1:]),
            "weighting": rule,
            "channels_scored": len(kept),
            "weights": {int(k): round(float(w), 6) for k, w in zip(kept, w_kept)},
        }
        if rule == "increase":
            details["baseline_score"] = s_b
        if pruned:
            details["pruning_error"] = self._pruning_error(ctx, acts, kept, dropped, r_kept, rule, s_b, shift, params)
        if scale < 1.0:
            details["mask_scale_error"] = self._scale_error(ctx, acts, kept, scores, rule, s_b, params)
        return MethodResult(maps, details=details)

    def _scale_error(
        self,
        ctx: ExplainContext,
        acts: torch.Tensor,
        kept: list[int],
        scores: torch.Tensor,
        rule: str,
        s_b: float,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        """Re-score a few channels on the full grid and compare the weight-relevant score differences."""
        m = min(max(int(params["error_samples"]), 2), len(kept)) if int(params["error_samples"]) > 0 else 0
        grid = list(_Scorer(ctx, float(params["mask_scale"])).low or ctx.x.shape[2:])
        if m == 0:
            return {"mask_grid": grid, "method": "not estimated (error_samples = 0)"}
        rng = np.random.default_rng(int(params["seed"]) + 1)
        pick = sorted(int(i) for i in rng.choice(len(kept), size=m, replace=False))
        full = masked_scores(ctx, acts, [kept[i] for i in pick], int(params["batch_size"]), "scorecam: scale error",
                             probability=rule == "probability")
        low = scores[pick]
        if rule == "increase":
            d_full, d_low = full - baseline_score(ctx), low - s_b
        elif rule == "probability":
            d_full, d_low = full, low
        else:  # softmax is shift-invariant: compare the scores' deviations from their mean
            d_full, d_low = full - full.mean(), low - low.mean()
        what = {"increase": "score increases over the all-masked input", "probability": "target probabilities"}.get(
            rule, "scores minus their mean")
        return {"mask_grid": grid, "channels_rescored": m, **rescore_error(d_low, d_full, what)}

    def _pruning_error(
        self,
        ctx: ExplainContext,
        acts: torch.Tensor,
        kept: list[int],
        dropped: list[int],
        r_kept: torch.Tensor,
        rule: str,
        s_b: float,
        shift: float,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        mass = acts[0].abs().reshape(acts.shape[1], -1).double().sum(1)
        out: dict[str, Any] = {
            "top_k": len(kept),
            "prune_by": params["prune_by"],
            "dropped_channels": len(dropped),
            "dropped_activation_mass": round(float(mass[dropped].sum() / mass.sum().clamp_min(1e-30)), 6),
        }
        m = min(int(params["error_samples"]), len(dropped))
        if m == 0:
            out["method"] = "not estimated (error_samples = 0); dropped_activation_mass is the share of Σ|A| dropped"
            return out
        rng = np.random.default_rng(int(params["seed"]))
        sample = sorted(int(i) for i in rng.choice(dropped, size=m, replace=False))
        s_sample = masked_scores(
            ctx, acts, sample, int(params["batch_size"]), "scorecam: pruning error", float(params["mask_scale"]),
            probability=rule == "probability",
        )
        r_sample = raw_weights(s_sample, rule, s_b, shift)
        scale = len(dropped) / m
        view = (-1,) + (1,) * (acts.ndim - 2)
        dev = acts.device
        u_kept = (r_kept.reshape(view).to(dev) * acts[0, kept].double()).sum(0, keepdim=True)
        u_drop = scale * (r_sample.reshape(view).to(dev) * acts[0, sample].double()).sum(0, keepdim=True)
        z_kept = float(r_kept.abs().sum())
        z_full = z_kept + scale * float(r_sample.abs().sum())
        grid = tuple(ctx.x.shape[2:])
        pruned_map = on_grid((u_kept / max(z_kept, 1e-300)).float(), ctx.model, grid).double()
        full_map = on_grid(((u_kept + u_drop) / max(z_full, 1e-300)).float(), ctx.model, grid).double()
        rel = float((pruned_map - full_map).norm() / full_map.norm().clamp_min(1e-30))
        out.update(
            {
                "method": (
                    f"{m} of {len(dropped)} dropped channels scored at random (seed {int(params['seed'])}); the "
                    "dropped sum estimated as n_dropped/m × the sample's; exact when m = n_dropped"
                ),
                "channels_sampled": m,
                "relative_l2": round(rel, 6),
                "spearman": round(_spearman(pruned_map, full_map), 6),
            }
        )
        return out
