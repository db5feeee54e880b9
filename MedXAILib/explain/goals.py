"""What a counterfactual must reach, and how one is judged: shared by ``counterfactual`` and ``sedc``.

**Goal.** A counterfactual changes the input until the model decides otherwise about the target
(:mod:`MedXAILib.targets`). The target's classes form a *positive set* ``P``: the explained class, or every
foreground class for the default segmentation target (so a voxel that turns from oedema to necrosis is still tumour).

- classification: the quantity ``q`` is the class probability (sigmoid, or softmax over the classes);
- segmentation (region or voxel targets): ``q`` is the fraction of the region's voxels still predicted in ``P``
  (softmax: the best logit of ``P`` beats every other class; sigmoid: some class of ``P`` has probability ≥ 0.5).

``goal`` is one of:

- ``flip`` (default): sigmoid classification → ``q < threshold`` (or ``q > threshold`` when the class is not
  predicted: then the flip makes it appear); softmax classification → the top class loses the top rank;
  segmentation → ``q ≤ tolerance`` (default 0.02: at most 2 % of the region's voxels still predicted);
- ``below:P`` / ``above:P``: ``q < P`` / ``q > P`` (``above`` makes a finding appear; for segmentation it needs a region
  given with an explicit class, where the model does not yet predict it).

The differentiable goal loss is a hinge on logits with a ``margin`` (logit units), averaged over the region's voxels
for segmentation, so voxels already flipped stop pulling: for ``flip`` on softmax, ``relu(max_P z − max_¬P z + m)``;
on sigmoid, ``relu(max_P z − logit(threshold) + m)``; for ``below:P`` / ``above:P`` the same with ``logit(P)`` (softmax
classification: ``log softmax − log P``).

**Margin.** :meth:`Goal.margin_of` says how far past the decision boundary a result is, in the hinge's units
(positive once the goal is reached): classification, the logit's distance beyond the threshold (softmax ``flip``:
``max_¬P z − max_P z``; softmax ``below``/``above``: the log-probability's distance from ``log P``); segmentation,
the per-voxel margin (``max_¬P z − max_P z``, or ``−max_P z`` for sigmoid, sign reversed for ``above``) of the voxel
at the goal's fraction — for ``flip`` with tolerance ``t`` the ``⌊t·n⌋+1``-th smallest over the region's ``n`` voxels,
so every voxel but the ``⌊t·n⌋`` the goal lets remain is past the boundary by at least that much. A result *meets*
the goal (:meth:`Goal.met`) when it reaches it with at least the requested ``margin``.

**Judging it** (:func:`report`), all in the input's geometry and units, after mapping the change made on the model
grid back (:class:`InputSpace`):

- validity: the target score and ``q`` before and after, measured by re-running the model's own function on the
  counterfactual *input* (what ``classify`` / ``segment`` would say about the written file), and whether the goal
  is reached there;
- proximity: L1 and L2 norms of the change (input units; summed over channels and voxels), mean and max |change|;
- sparsity: the fraction of voxels where any channel changed (exactly, and by more than 1 % of its observed range);
- plausibility: filled in by the caller (autoencoder reconstruction error) or marked unavailable with the reason.

**Where the change lives.** The change ``δ`` lives on the *input* grid (:class:`InputSpace`), in units of each
channel's normalisation scale (:func:`MedXAILib.preprocessing.intensity_affine`); the model sees it through its own
normalisation re-computed on the changed input and the same linear resampling :meth:`Model.prepare` applies, so a
change the optimiser finds is one the written file carries (a change made on a finer model grid could be lost when
brought back, and a large change moves the z-score statistics). The result is clipped to each channel's observed
[min, max]. For ``zscore_foreground`` models the background (voxels where
every channel is 0) is never changed: the model's normalisation defines the foreground by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import MethodError
from ..models import Model, Prediction
from ..preprocessing import foreground_of, intensity_affine, resize
from ..targets import FOREGROUND
from ..volume import Volume
from .base import ExplainContext


@dataclass
class Goal:
    """A parsed goal (see the module docstring).

    Attributes:
        kind: ``flip``, ``below`` or ``above``. level: the ``P`` of below/above, or the flip level.
        positive: ``(N,)`` bool, the target's positive classes. region: ``(*grid)`` bool on the model grid, or None
        (classification). softmax: output kind. margin: the hinge margin the descent uses (logit units; raised when
        a result fails its verification). required: the margin the user asked for, which a result must meet.
    """

    kind: str
    level: float
    positive: torch.Tensor
    region: torch.Tensor | None
    softmax: bool
    margin: float
    text: str
    required: float = 0.0

    # ---- per-voxel (or per-sample) logits ----------------------------------------------------------------------
    def _split(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Best positive and best other logit, ``(B, *grid)`` (``(B,)`` for classification)."""
        view = (1, -1) + (1,) * (logits.ndim - 2)
        pos = self.positive.to(logits.device).reshape(view)
        neg_inf = torch.finfo(logits.dtype).min
        best_pos = torch.where(pos, logits, neg_inf).amax(1)
        best_other = torch.where(~pos, logits, neg_inf).amax(1) if bool((~self.positive).any()) else None
        if best_other is None:
            best_other = torch.full_like(best_pos, neg_inf)
        return best_pos, best_other

    def quantity(self, logits: torch.Tensor) -> torch.Tensor:
        """``q`` per sample ``(B,)``: the class probability, or the region's fraction still predicted in ``P``."""
        if self.region is None:
            p = torch.softmax(logits.float(), 1) if self.softmax else torch.sigmoid(logits.float())
            return (p * self.positive.to(p.device)).sum(1)
        return self.predicted(logits).float().flatten(1)[:, self.region.reshape(-1)].mean(1)

    def predicted(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, *grid)`` bool: voxels predicted in ``P`` (segmentation)."""
        best_pos, best_other = self._split(logits)
        return best_pos >= best_other if self.softmax else best_pos >= 0

    def reached(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: whether each sample reaches the goal."""
        q = self.quantity(logits)
        if self.kind == "flip" and self.region is None:
            if self.softmax:
                best_pos, best_other = self._split(logits)
                return best_pos < best_other
            return q < self.level
        if self.kind == "flip":
            return q <= self.level
        return q < self.level if self.kind == "below" else q > self.level

    def margin_of(self, logits: torch.Tensor) -> torch.Tensor:
        """How far past the decision boundary each sample is, ``(B,)`` in logit units (see the module docstring)."""
        logits = logits.float()
        if self.region is None:
            if self.softmax and self.kind != "flip":
                logp = torch.log_softmax(logits, 1)
                value = torch.logsumexp(torch.where(self.positive.to(logits.device)[None], logp, -math.inf), 1)
                diff = value - math.log(self.level)
                return diff if self.kind == "above" else -diff
            best_pos, best_other = self._split(logits)
            if self.softmax:
                return best_other - best_pos
            thr = _logit(self.level)
            return best_pos - thr if self.kind == "above" else thr - best_pos
        best_pos, best_other = self._split(logits)
        z = best_pos - best_other if self.softmax else best_pos  # ≥ 0 where the voxel is predicted in P
        inside = z.flatten(1)[:, self.region.reshape(-1).to(z.device)]
        n = int(inside.shape[1])
        if self.kind == "above":  # more than level·n voxels predicted: the r-th largest z, r = ⌊level·n⌋ + 1
            r = min(int(math.floor(self.level * n)) + 1, n)
            return inside.sort(dim=1, descending=True).values[:, r - 1]
        allowed = int(math.floor(self.level * n)) if self.kind == "flip" else int(math.ceil(self.level * n)) - 1
        return (-inside).sort(dim=1).values[:, min(max(allowed, 0), n - 1)]

    def met(self, logits: torch.Tensor, margin: float | None = None) -> torch.Tensor:
        """``(B,)`` bool: the goal is reached with at least ``margin`` (default: the descent's margin)."""
        m = self.margin if margin is None else margin
        return self.reached(logits) & (self.margin_of(logits) >= m)

    def loss(self, logits: torch.Tensor, margin: float | None = None) -> torch.Tensor:
        """Differentiable hinge per sample ``(B,)``; 0 once every voxel is past the goal by ``margin``."""
        m = self.margin if margin is None else margin
        sign = -1.0 if self.kind == "above" else 1.0
        if self.region is None and self.softmax and self.kind != "flip":
            logp = torch.log_softmax(logits.float(), 1)
            value = torch.logsumexp(torch.where(self.positive.to(logits.device)[None], logp, -math.inf), 1)
            return torch.relu(sign * (value - math.log(self.level)) + m)
        best_pos, best_other = self._split(logits.float())
        if self.softmax:
            gap = best_pos - best_other
            if self.kind == "above":
                return _mean_region(torch.relu(-gap + m), self.region)
            return _mean_region(torch.relu(gap + m), self.region)
        level = self.level if self.region is None else 0.5
        if self.region is not None and self.kind == "above":
            return _mean_region(torch.relu(-best_pos + m), self.region)
        thr = _logit(level)
        return _mean_region(torch.relu(sign * (best_pos - thr) + m), self.region)


def _mean_region(values: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    if region is None:
        return values
    return values.flatten(1)[:, region.reshape(-1)].mean(1)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def parse_goal(ctx: ExplainContext, text: str, threshold: float, tolerance: float, margin: float) -> Goal:
    """Build the :class:`Goal` for ``ctx``'s target from ``goal=`` (``flip``, ``below:P``, ``above:P``)."""
    d = ctx.model.description
    text = str(text).strip().lower()
    if text == "flip":
        kind, level = "flip", (threshold if d.task == "classification" else tolerance)
    elif ":" in text and text.split(":", 1)[0] in ("below", "above"):
        kind, raw = text.split(":", 1)
        try:
            level = float(raw)
        except ValueError:
            raise MethodError(f"goal {text!r}: the level after ':' must be a number in (0, 1)") from None
        if not 0.0 < level < 1.0:
            raise MethodError(f"goal {text!r}: the level must lie strictly between 0 and 1")
    else:
        raise MethodError(f"goal must be flip, below:P or above:P (P in (0, 1)); got {text!r}")
    if not 0.0 < threshold < 1.0:
        raise MethodError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    n = d.n_classes
    target = ctx.target
    positive = torch.zeros(n, dtype=torch.bool)
    if target.class_index == FOREGROUND:
        positive[:] = True
        if d.output == "softmax" or d.class_names[0].lower() == "background":
            positive[0] = False
    else:
        positive[target.class_index] = True
    if bool(positive.all()) and d.output == "softmax":
        raise MethodError("the target covers every class, so no decision can flip; explain one class with --target")
    if kind == "flip" and d.task == "classification":
        with torch.no_grad():
            logits = ctx.logits(ctx.x)[0].float()
        if d.output == "softmax" and int(logits.argmax()) != target.class_index:
            raise MethodError(
                f"{target.class_name!r} is not the top class, so goal=flip has no decision to flip; "
                "use goal=above:P to make it likely, or explain the top class"
            )
        if d.output != "softmax" and float(torch.sigmoid(logits[target.class_index])) < threshold:
            kind, text = "above", f"flip (rise above {threshold}: the class is not predicted)"
    region = None
    if d.task == "segmentation":
        region = (ctx.weights.abs().sum(1)[0] > 0).cpu()
        if not bool(region.any()):
            raise MethodError("the target region is empty on the model grid")
    return Goal(kind, float(level), positive, region, d.output == "softmax", float(margin), text, float(margin))


# ---- the input as the change acts on it --------------------------------------------------------------------
@dataclass
class InputSpace:
    """The change ``δ`` lives on the **input** grid, in units of each channel's normalisation scale (so a step of 0.1
    means a tenth of a standard deviation for a z-scored channel): the counterfactual input is
    ``x' = clip(x + scale·E·δ)`` (input units) and the model sees ``resize(normalize(x'))`` — the model's
    normalisation re-computed on ``x'`` (:func:`torch_normalize`, differentiable) and its linear resampling onto the
    model grid, as :meth:`Model.prepare` does with the written file.

    Attributes:
        raw: ``(1, C, *input spatial)`` input in input units (2D: ``(1, C, J, I)``).
        scale: ``(C,)`` input units per normalised unit. lo, hi: ``(C,)`` observed range of each channel (input units).
        editable: ``(1, 1, *input spatial)`` float 0/1, voxels the counterfactual may change.
        spec: the model's preprocessing. foreground: ``zscore_foreground``'s foreground (fixed: the background is
            never edited). model_shape: the model grid.
    """

    raw: torch.Tensor
    scale: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    editable: torch.Tensor
    spec: dict[str, Any]
    foreground: torch.Tensor | None
    model_shape: tuple[int, ...]

    def _t(self, values: np.ndarray) -> torch.Tensor:
        shape = (1, -1) + (1,) * (self.raw.ndim - 2)
        return torch.as_tensor(values, dtype=self.raw.dtype, device=self.raw.device).reshape(shape)

    def changed(self, delta: torch.Tensor) -> torch.Tensor:
        """The counterfactual in input units ``(B, C, *spatial)`` for changes ``δ`` ``(B, C, *spatial)``."""
        x = self.raw + delta * self.editable * self._t(self.scale)
        return torch.maximum(torch.minimum(x, self._t(self.hi)), self._t(self.lo))

    def clip(self, delta: torch.Tensor) -> torch.Tensor:
        """``δ`` restricted to the editable voxels and to changes that keep every channel inside its range."""
        return (self.changed(delta) - self.raw) / self._t(self.scale)

    def to_model(self, delta: torch.Tensor) -> torch.Tensor:
        """The model-grid input ``(B, C, *grid)`` for changes ``(B, C, *input spatial)`` (differentiable)."""
        return resize(torch_normalize(self.changed(delta), self.spec, self.foreground), self.model_shape, "linear")

    def counterfactual(self, vol: Volume, delta: torch.Tensor) -> Volume:
        """The counterfactual input ``(C, K, J, I)`` in input units and geometry for a change ``(1, C, *spatial)``."""
        with torch.no_grad():
            x = self.changed(delta.detach())[0].float().cpu().numpy()
        if x.ndim == 3:  # 2D: (C, J, I) → (C, 1, J, I)
            x = x[:, None]
        return vol.with_array(x.astype(np.float32), channel_names=list(vol.channel_names))


def torch_normalize(x: torch.Tensor, spec: dict[str, Any], foreground: torch.Tensor | None) -> torch.Tensor:
    """:func:`MedXAILib.preprocessing.normalize` for a ``(B, C, *spatial)`` tensor, differentiable in ``x``.

    The statistics (mean and std, percentiles, min and max) are re-computed on ``x`` as the model's preprocessing does
    on a file, then held constant for the gradient (``detach``): each step sees exactly the function the written
    file will meet, while the step direction ignores the statistics' own drift (the gradient through a percentile
    lands on the one or two pixels at it and would swamp every other). ``foreground`` (``(*spatial)`` bool) fixes
    ``zscore_foreground``'s foreground. Every number the sidecar reports comes from the model's own preprocessing of
    the counterfactual input; a test checks that this function agrees with it.
    """
    mode = spec.get("normalize", "none")
    flat = x.flatten(2)
    view = flat.shape[:2] + (1,) * (x.ndim - 2)
    if mode in ("zscore_foreground", "zscore"):
        vals = flat[:, :, foreground.reshape(-1)] if mode == "zscore_foreground" and foreground is not None else flat
        mean = vals.mean(2).detach()
        std = vals.std(2, unbiased=False).detach()
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        out = (x - mean.reshape(view)) / std.reshape(view)
        if mode == "zscore_foreground" and foreground is not None:
            out = out * foreground.to(out.dtype)
        return out
    if mode in ("percentile", "hu_window", "minmax"):
        if mode == "percentile":
            q = torch.tensor([p / 100.0 for p in spec.get("percentiles", [0.5, 99.5])], dtype=x.dtype, device=x.device)
            lo, hi = _quantiles(flat, q)
        elif mode == "hu_window":
            w = spec.get("hu_window", [-1000.0, 1000.0])
            lo, hi = torch.full(flat.shape[:2], float(w[0]), device=x.device), torch.full(
                flat.shape[:2], float(w[1]), device=x.device)
        else:
            lo, hi = flat.amin(2), flat.amax(2)
        lo, hi = lo.detach(), hi.detach()
        scale = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        lo, scale = lo.reshape(view), scale.reshape(view)
        return (torch.minimum(torch.maximum(x, lo), lo + scale) - lo) / scale
    return x


def _quantiles(flat: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (sample, channel) quantiles ``q`` (two) of ``(B, C, N)`` with numpy's linear interpolation."""
    n = flat.shape[2]
    srt = flat.sort(dim=2).values
    pos = q * (n - 1)
    lo_i, frac = pos.floor().long(), pos - pos.floor()
    hi_i = torch.clamp(lo_i + 1, max=n - 1)
    vals = srt[:, :, lo_i] * (1 - frac) + srt[:, :, hi_i] * frac
    return vals[:, :, 0], vals[:, :, 1]


def input_space(ctx: ExplainContext, restrict: str = "none", margin_mm: float = 10.0) -> InputSpace:
    """Set up :class:`InputSpace` for ``ctx``; ``restrict=target`` allows changes only within ``margin_mm`` of the
    target region (segmentation targets)."""
    model, prepared = ctx.model, ctx.prepared
    vol = prepared.volume
    arr = vol.array.astype(np.float32, copy=False)
    spec = dict(model.description.preprocessing or {})
    _, scale = intensity_affine(arr, spec)
    flat = arr.reshape(arr.shape[0], -1)
    lo, hi = flat.min(1).astype(np.float64), flat.max(1).astype(np.float64)
    editable = np.ones(vol.shape, dtype=bool)
    fg = None
    if spec.get("normalize") == "zscore_foreground":
        fg = foreground_of(arr)
        editable &= fg
    if restrict == "target":
        region = input_region(ctx.target, vol.shape)
        if region is None:
            raise MethodError("restrict=target needs a region or voxel target (segmentation); use restrict=none")
        editable &= _dilate_mm(region, vol.spacing_kji, margin_mm)
    elif restrict != "none":
        raise MethodError(f"restrict must be none or target, got {restrict!r}")
    if not editable.any():
        raise MethodError("no voxel may be changed (the input is empty where the change is allowed)")
    raw = arr
    if model.spatial_dims == 2:
        raw, editable = raw[:, 0], editable[0]
        fg = fg[0] if fg is not None else None
    dev, dtype = ctx.x.device, ctx.x.dtype
    return InputSpace(
        raw=torch.from_numpy(np.ascontiguousarray(raw))[None].to(dev, dtype),
        scale=scale, lo=lo, hi=hi,
        editable=torch.from_numpy(editable.astype(np.float32))[None, None].to(dev, dtype),
        spec=spec,
        foreground=torch.from_numpy(fg).to(dev) if fg is not None else None,
        model_shape=tuple(prepared.grid.model_shape),
    )


def input_region(target: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The target's ``(K, J, I)`` bool region on the input grid (a voxel target: that voxel), None for a class."""
    if target.region is not None:
        return target.region
    if target.voxel is not None:
        mask = np.zeros(shape, dtype=bool)
        i, j, k = target.voxel
        mask[k, j, i] = True
        return mask
    return None


def _dilate_mm(mask: np.ndarray, spacing_kji: np.ndarray, margin_mm: float) -> np.ndarray:
    from scipy.ndimage import distance_transform_edt

    if margin_mm <= 0:
        return mask.copy()
    dist = distance_transform_edt(~mask, sampling=[max(float(s), 1e-6) for s in spacing_kji])
    return dist <= margin_mm


def input_spacing(model: Model, vol: Volume) -> tuple[float, ...]:
    """Voxel size (mm) along the input tensor's spatial axes (``(K, J, I)``, or ``(J, I)`` for a 2D model)."""
    sp = tuple(float(s) for s in vol.spacing_kji)
    return sp[1:] if model.spatial_dims == 2 else sp


# ---- judging ----------------------------------------------------------------------------------------------------
def quantity_in_input(model: Model, goal: Goal, ctx: ExplainContext, pred: Prediction) -> dict[str, Any]:
    """The target as the model's prediction on an input says it: probability, or predicted voxels in the region."""
    if model.task == "classification":
        assert pred.class_probabilities is not None
        probs = pred.class_probabilities
        q = float(probs[goal.positive.numpy()].sum())
        top = int(np.argmax(probs))
        return {"probability": q, "top_class": model.description.class_names[top], "top_is_target": bool(
            goal.positive[top])}
    assert pred.probabilities is not None
    probs = pred.probabilities.array
    pos = goal.positive.numpy()
    if goal.softmax:
        predicted = pos[probs.argmax(0)]
    else:
        predicted = (probs[pos] >= 0.5).any(0)
    region = input_region(ctx.target, probs.shape[1:])
    assert region is not None
    n = int((predicted & region).sum())
    ml = pred.probabilities.voxel_volume_ml
    return {"region_voxels": int(region.sum()), "predicted_voxels": n, "predicted_ml": n * ml,
            "fraction": n / max(int(region.sum()), 1), "predicted_voxels_whole_image": int(predicted.sum())}


def reached_in_input(goal: Goal, q: dict[str, Any]) -> bool:
    """Whether a :func:`quantity_in_input` result reaches ``goal``."""
    if "probability" in q:
        if goal.kind == "flip":
            return (not q["top_is_target"]) if goal.softmax else q["probability"] < goal.level
        return q["probability"] < goal.level if goal.kind == "below" else q["probability"] > goal.level
    f = q["fraction"]
    if goal.kind == "flip":
        return f <= goal.level
    return f < goal.level if goal.kind == "below" else f > goal.level


def verify(ctx: ExplainContext, goal: Goal, cf: Volume) -> tuple[dict[str, Any], bool, float, float]:
    """Run the model's own function on an input Volume (one forward pass, counted), as ``classify`` / ``segment`` do.

    Returns:
        the target quantity there (:func:`quantity_in_input`), whether it reaches ``goal``, the target score
        (weighted logit sum on the model grid) and the margin past the boundary (:meth:`Goal.margin_of`).
    """
    model = ctx.model
    ctx.forward_passes += 1
    prepared = model.prepare(cf)
    with torch.no_grad():
        logits = model.infer(prepared.tensor)
    pred = model.prediction_from_logits(logits, prepared)
    q = quantity_in_input(model, goal, ctx, pred)
    return q, reached_in_input(goal, q), float(ctx.score_of_logits(logits)[0]), float(goal.margin_of(logits)[0])


def report(
    ctx: ExplainContext, goal: Goal, cf: Volume, before: dict[str, Any], after: dict[str, Any], reached: bool,
    score_before: float, score_after: float, margin_after: float = float("nan"),
) -> dict[str, Any]:
    """Validity, proximity and sparsity of a counterfactual (see the module docstring)."""
    x = ctx.prepared.volume.array.astype(np.float64)
    d = cf.array.astype(np.float64) - x
    ad = np.abs(d)
    changed = (ad > 0).any(0)
    ranges = (x.reshape(x.shape[0], -1).max(1) - x.reshape(x.shape[0], -1).min(1)).reshape(-1, 1, 1, 1)
    changed_1pct = (ad > 0.01 * np.maximum(ranges, 1e-12)).any(0)
    validity: dict[str, Any] = {
        "goal": goal.text,
        "goal_level": goal.level,
        "reached": bool(reached),
        "before": before,
        "after": after,
        "target_score_before": score_before,
        "target_score_after": score_after,
        "margin": margin_after,
        "margin_required": goal.required,
        "margin_met": bool(reached and margin_after >= goal.required),
    }
    if "predicted_voxels" in before and before["predicted_voxels"] > 0:
        validity["region_volume_reduction"] = 1.0 - after["predicted_voxels"] / before["predicted_voxels"]
    names = list(cf.channel_names)
    return {
        "validity": validity,
        "proximity": {
            "l1": float(ad.sum()),
            "l2": float(np.sqrt((d * d).sum())),
            "mean_abs_change_in_changed_voxels": float(ad.sum(0)[changed].mean()) if changed.any() else 0.0,
            "max_abs_change": float(ad.max()),
            "l1_per_channel": {n: float(v) for n, v in zip(names, ad.reshape(ad.shape[0], -1).sum(1))},
            "units": "input intensity units (summed over channels and voxels)",
        },
        "sparsity": {
            "changed_fraction": float(changed.mean()),
            "changed_voxels": int(changed.sum()),
            "changed_fraction_over_1pct_of_range": float(changed_1pct.mean()),
            "voxels": int(changed.size),
        },
    }
