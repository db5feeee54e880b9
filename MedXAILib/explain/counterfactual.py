"""``counterfactual``: the smallest, smoothest change of the input that makes the model decide otherwise.

Anchors: Wachter, Mittelstadt & Russell (Harvard J. Law & Technology, 2017) — minimise a goal loss plus the distance
to the input — and the progressive "exaggeration" of Singla et al. ("Explaining the black-box smoothly", arXiv 2021;
Medical Image Analysis 2023): a series of images whose model output moves step by step from the input's to the goal.

**The problem** (model grid, normalised units; ``x`` the prepared input ``(1, C, *grid)``, ``δ`` the change)::

    minimise  goal_loss(f(clip(x + E·δ)))  +  tv · TV(δ)  +  l1 · ‖δ‖₁

``goal_loss`` is the hinge of :mod:`MedXAILib.explain.goals` (default: flip the decision on the target); ``E`` the
editable voxels (all, the foreground of a ``zscore_foreground`` model, or the target region plus ``margin_mm`` with
``restrict=target``); ``clip`` keeps every channel inside the input's observed [min, max]; ``TV(δ) = Σ_v sqrt(Σ_axes
(∂δ)² + 10⁻⁴)`` (isotropic total variation over the grid, summed over channels) keeps the change anatomically smooth.

**The solver** is proximal gradient descent (ISTA): each step moves ``δ`` against
``clip(∇goal / s, −1, 1) + tv · ∇TV`` by ``lr`` normalised units (``s`` the 99th percentile of ``|∇goal|`` over the
editable voxels, so the 1 % steepest voxels move a full step), then soft-thresholds it by ``lr · l1`` (the proximal
step of the L1 term, which keeps voxels whose goal gradient stays below ``l1`` of ``s`` exactly unchanged: the change
is sparse, not merely small). Normalising the goal gradient makes ``lr``, ``tv`` and ``l1`` mean the same on a tiny
classifier and on a 3D U-Net. One forward and one backward pass per step; it stops as soon as the goal is reached.

**The margin.** The goal counts as met only ``margin`` (logit units) past the decision boundary
(:meth:`~MedXAILib.explain.goals.Goal.margin_of`), so the written result does not sit on the boundary where rounding
in the written file could undo it: the descent goes on until the margin is reached on the model grid.

**Verified in the input.** When the goal is met on the model grid, the change is mapped back to the input's
geometry and units (:class:`~MedXAILib.explain.goals.InputSpace`) and the model's own function is run on that
counterfactual input — exactly what ``classify`` / ``segment`` will see in the written file, including the
re-computed intensity normalisation. If the goal is not met there with the requested margin, the descent's margin is
doubled and it goes on (at most ``verify_rounds`` verifications). The sidecar's validity numbers, and
``final_margin`` (the margin the written result reaches), come from this verification.

**Sparsified.** Once verified, the smallest changes are dropped while the goal is still met with the descent's
margin (:func:`sparsify`, a bisection over a magnitude quantile, ``sparsify_rounds`` forward passes) and the result
verified again; the sparser change is kept only if the model's own function confirms it meets the requested margin.

**Progressive series.** Besides the final counterfactual the method keeps ``series`` frames: the first step at which
the target quantity crossed each of ``series − 1`` levels evenly spaced between its starting value and the goal, then
the final counterfactual (the Singla et al. progression, obtained along the optimisation path).

**Plausibility.** With ``autoencoder=PATH`` (a model trained by ``train --task autoencoder``) the sidecar gives the
autoencoder's reconstruction error of the counterfactual and of the input (:mod:`MedXAILib.explain.plausibility`);
without one it says plausibility is unavailable and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..errors import MethodError
from ..models import Model, PreparedInput
from ..volume import Volume
from .base import ExplainContext, Method, MethodResult, register
from .cam import frozen_parameters
from .goals import Goal, InputSpace, input_space, parse_goal, report, verify

TV_EPS = 1e-4


@dataclass
class Frame:
    """One frame of the progressive series: the optimisation step, the target quantity there and the change ``δ``."""

    step: int
    quantity: float
    delta: torch.Tensor


@dataclass
class Optimised:
    """The descent's outcome: the change ``δ`` ``(1, C, *input spatial)`` (normalised units) and its record."""

    delta: torch.Tensor
    steps: int
    reached_on_grid: bool
    quantity_start: float
    quantity_end: float
    frames: list[Frame] = field(default_factory=list)
    verifications: int = 0
    margin_final: float = 0.0


def total_variation(delta: torch.Tensor) -> torch.Tensor:
    """Isotropic TV of ``(1, C, *spatial)``: ``Σ sqrt(Σ_axes (forward difference)² + 10⁻⁴) − sqrt(10⁻⁴)`` per voxel."""
    sq = torch.zeros_like(delta)
    for axis in range(2, delta.ndim):
        diff = torch.diff(delta, dim=axis)
        pad = [0, 0] * (delta.ndim - 1 - axis) + [0, 1]
        sq = sq + torch.nn.functional.pad(diff, pad) ** 2
    return torch.sqrt(sq + TV_EPS).sum() - float(np.sqrt(TV_EPS)) * delta.numel()


def optimise(
    ctx: ExplainContext,
    goal: Goal,
    space: InputSpace,
    steps: int = 200,
    lr: float = 0.1,
    l1: float = 0.3,
    tv: float = 0.02,
    n_series: int = 5,
    accept: Callable[[torch.Tensor], bool] | None = None,
    verify_rounds: int = 3,
) -> Optimised:
    """Proximal gradient descent toward ``goal`` (see the module docstring).

    Args:
        accept: called with the change ``δ`` when the goal is met (with the descent's margin) on the model grid;
            returning False doubles the margin and continues (at most ``verify_rounds`` calls). None accepts the
            model-grid result.

    Returns:
        the change ``δ`` on the input grid and the path's record.
    """
    delta = torch.zeros_like(space.raw)
    frames: list[Frame] = []
    levels: list[float] = []
    q_start = q = float("nan")
    reached = False
    verifications = 0
    step = 0
    for step in range(steps + 1):
        with frozen_parameters(ctx.model.network), torch.enable_grad():
            d = delta.clone().requires_grad_(True)
            logits = ctx.logits(space.to_model(d))
            q = float(goal.quantity(logits.detach())[0])
            reached = bool(goal.met(logits.detach())[0])
            if step == 0:
                q_start = q
                levels = [float(v) for v in np.linspace(q, goal.level, max(int(n_series), 1) + 1)[1:-1]]
            crossed = False
            while levels and _passed(q, levels[0], q_start):
                levels.pop(0)
                crossed = True
            if crossed and not reached:
                frames.append(Frame(step, q, delta.clone()))
            if reached:
                if accept is None or verifications >= verify_rounds:
                    break
                verifications += 1
                if accept(delta):
                    break
                goal.margin = 2 * goal.margin if goal.margin > 0 else 0.5
            if step == steps:
                break
            loss = goal.loss(logits)[0]
            if float(loss.detach()) <= 0.0:
                break
            (g,) = torch.autograd.grad(loss, d)
        ctx.count_backward()
        peak = robust_peak(g, space.editable)
        if peak <= 0:
            break
        g = torch.clamp(g / peak, -1.0, 1.0)
        if tv > 0:
            with torch.enable_grad():
                dt = delta.clone().requires_grad_(True)
                (g_tv,) = torch.autograd.grad(total_variation(dt * space.editable), dt)
            g = g + tv * g_tv
        delta = delta - lr * g
        delta = torch.sign(delta) * torch.relu(delta.abs() - lr * l1)  # proximal step of l1·‖δ‖₁
        delta = space.clip(delta)
        ctx.progress(min(1.0, (step + 1) / max(steps, 1)), "counterfactual: descending toward the goal")
    frames.append(Frame(step, q, delta))
    return Optimised(delta, step, reached, q_start, q, frames, verifications, goal.margin)


def sparsify(ctx: ExplainContext, goal: Goal, space: InputSpace, delta: torch.Tensor, rounds: int = 6
             ) -> tuple[torch.Tensor, float]:
    """Drop the smallest changes while the goal is still met with the descent's margin on the model grid: a bisection
    over the quantile ``τ`` of the per-voxel change magnitude ``max_c |δ_c|``; voxels below it are reset. ``rounds``
    forward passes.

    Returns:
        the sparsest change found that still meets the goal, and the quantile used (0 = nothing dropped).
    """
    mag = delta.abs().amax(1, keepdim=True)
    vals = mag[mag > 0]
    if vals.numel() == 0 or rounds < 1:
        return delta, 0.0
    if vals.numel() > 2**20:
        vals = vals[:: int(np.ceil(vals.numel() / 2**20))]
    lo, hi, best, best_q = 0.0, 1.0, delta, 0.0
    for _ in range(int(rounds)):
        mid = (lo + hi) / 2
        tau = float(torch.quantile(vals.float(), mid))
        cand = delta * (mag > tau)
        with torch.no_grad():
            ok = bool(goal.met(ctx.logits(space.to_model(cand)))[0])
        if ok:
            best, best_q, lo = cand, mid, mid
        else:
            hi = mid
    return best, best_q


def robust_peak(g: torch.Tensor, editable: torch.Tensor, q: float = 0.99, max_samples: int = 2**20) -> float:
    """The ``q`` quantile of ``|g|`` over editable voxels (strided subsample above ``max_samples``); max if it is 0."""
    mag = (g.abs() * editable).flatten()
    mag = mag[mag > 0]
    if mag.numel() == 0:
        return 0.0
    if mag.numel() > max_samples:
        mag = mag[:: int(np.ceil(mag.numel() / max_samples))]
    peak = float(torch.quantile(mag.float(), q))
    return peak if peak > 0 else float(mag.max())


def _passed(q: float, level: float, start: float) -> bool:
    return q <= level if level <= start else q >= level


def counterfactual_on_grid(ctx: ExplainContext, params: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict]:
    """A model-grid counterfactual ``(1, C, *grid)`` with the default goal (used as an IG / GradientSHAP baseline).

    It is the model-grid input the model sees for the counterfactual change (not verified on a written file: a
    baseline lives on the model grid); the details say whether it reached its goal there.
    """
    p = {**Counterfactual.params, **(params or {})}
    goal = parse_goal(ctx, p["goal"], float(p["threshold"]), float(p["tolerance"]), float(p["margin"]))
    space = input_space(ctx, str(p["restrict"]), float(p["margin_mm"]))
    opt = optimise(ctx, goal, space, int(p["steps"]), float(p["lr"]), float(p["l1"]), float(p["tv"]), 1)
    with torch.no_grad():
        x_cf = space.to_model(opt.delta)
    return x_cf, {"goal": goal.text, "reached_on_model_grid": opt.reached_on_grid, "steps": opt.steps,
                  "quantity_start": opt.quantity_start, "quantity_end": opt.quantity_end}


def check_goal_params(name: str, params: dict[str, Any]) -> None:
    """Refuse bad shared counterfactual parameters before running."""
    for key in ("threshold", "tolerance"):
        v = float(params.get(key, 0.5))
        if not 0.0 <= v < 1.0:
            raise MethodError(f"{name}: {key} must lie in [0, 1), got {v}")
    if float(params.get("margin", 0.0)) < 0 or float(params.get("margin_mm", 0.0)) < 0:
        raise MethodError(f"{name}: margin and margin_mm must be ≥ 0")
    if str(params.get("restrict", "none")) not in ("none", "target"):
        raise MethodError(f"{name}: restrict must be none or target, got {params['restrict']!r}")
    goal = str(params.get("goal", "flip")).lower()
    if goal != "flip" and not (goal.startswith("below:") or goal.startswith("above:")):
        raise MethodError(f"{name}: goal must be flip, below:P or above:P; got {goal!r}")


Verified = tuple[Volume, dict[str, Any], bool, float, float]


def check_change(ctx: ExplainContext, goal: Goal, space: InputSpace, delta: torch.Tensor) -> Verified:
    """The counterfactual input for ``δ`` and what the model's own function says about it (one forward pass):
    ``(input, quantity, goal reached, target score, margin past the boundary)``."""
    cf = space.counterfactual(ctx.prepared.volume, delta)
    after, reached, score, margin = verify(ctx, goal, cf)
    return cf, after, reached, score, margin


def meets(goal: Goal, checked: Verified) -> bool:
    """Whether a verified result reaches the goal with the requested margin."""
    return bool(checked[2] and checked[4] >= goal.required)


def start_record(ctx: ExplainContext, goal: Goal) -> dict[str, Any]:
    """The target before any change, as the model's own function says on the input (one forward pass)."""
    before, _, score, _ = verify(ctx, goal, ctx.prepared.volume)
    return {"_before": before, "_score_before": score}


def finish(
    ctx: ExplainContext, goal: Goal, space: InputSpace, delta: torch.Tensor, details: dict[str, Any],
    checked: Verified | None, params: dict[str, Any],
) -> MethodResult:
    """Judge a change (verifying it if not done yet) and pack the :class:`MethodResult` (difference in input units)."""
    from .plausibility import plausibility

    cf, after, reached, score_after, margin = checked or check_change(ctx, goal, space, delta)
    vol = ctx.prepared.volume
    details.update(report(ctx, goal, cf, details.pop("_before"), after, reached, details.pop("_score_before"),
                          score_after, margin))
    details["final_margin"] = margin  # the margin the written result reaches (logit units)
    details["margin_requested"] = goal.required
    details["plausibility"] = plausibility(str(params.get("autoencoder", "")), ctx.model, vol, cf)
    diff = (cf.array.astype(np.float32) - vol.array.astype(np.float32)).astype(np.float32)
    with torch.no_grad():
        maps = (space.to_model(delta) - ctx.x.detach())[0]
    return MethodResult(maps, per_channel=True, details=details, input_maps=diff, volumes={"counterfactual": cf})


@register
class Counterfactual(Method):
    """Wachter-style counterfactual with a progressive series; see the module docstring."""

    name = "counterfactual"
    title = "Counterfactual (input-space optimisation)"
    reference = "Wachter et al., Harvard JOLT 2017; Singla et al., 'Explaining the black-box smoothly', 2021"
    display = "signed"
    windowable = False
    params = {
        "goal": "flip",
        "threshold": 0.5,
        "tolerance": 0.02,
        "margin": 0.5,
        "steps": 200,
        "lr": 0.1,
        "l1": 0.3,
        "tv": 0.02,
        "restrict": "none",
        "margin_mm": 10.0,
        "series": 5,
        "sparsify_rounds": 6,
        "verify_rounds": 3,
        "autoencoder": "",
    }
    cost_model = (
        "≤ steps forward + backward (stops when the goal is reached) + 1 forward per verification + 1 "
        "+ sparsify_rounds + 1 forwards"
    )

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        check_goal_params(self.name, params)
        if int(params.get("steps", 1)) < 1 or int(params.get("series", 1)) < 1:
            raise MethodError("counterfactual: steps and series must be at least 1")
        if float(params.get("lr", 0.05)) <= 0 or float(params.get("l1", 0)) < 0 or float(params.get("tv", 0)) < 0:
            raise MethodError("counterfactual: lr must be > 0, l1 and tv ≥ 0")

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        n = int(params.get("steps", 200))
        return (n + 3 + int(params.get("verify_rounds", 3)) + int(params.get("sparsify_rounds", 6)), n)

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        t0 = time.perf_counter()
        goal = parse_goal(ctx, params["goal"], float(params["threshold"]), float(params["tolerance"]),
                          float(params["margin"]))
        space = input_space(ctx, str(params["restrict"]), float(params["margin_mm"]))
        details = start_record(ctx, goal)
        checked: dict[str, Any] = {}

        def accept(delta: torch.Tensor) -> bool:
            checked["result"], checked["delta"] = check_change(ctx, goal, space, delta), delta
            return meets(goal, checked["result"])

        opt = optimise(ctx, goal, space, int(params["steps"]), float(params["lr"]), float(params["l1"]),
                       float(params["tv"]), int(params["series"]), accept, int(params["verify_rounds"]))
        last = checked.get("result") if checked.get("delta") is opt.delta else None
        delta, dropped = opt.delta, 0.0
        if last is not None and meets(goal, last) and int(params["sparsify_rounds"]) > 0:
            sparse, q = sparsify(ctx, goal, space, opt.delta, int(params["sparsify_rounds"]))
            if q > 0:
                result_sparse = check_change(ctx, goal, space, sparse)
                if meets(goal, result_sparse):
                    delta, dropped, last = sparse, q, result_sparse
        details.update({
            "steps_run": opt.steps,
            "reached_on_model_grid": opt.reached_on_grid,
            "quantity": "class probability" if goal.region is None else "fraction of the region still predicted",
            "quantity_start": opt.quantity_start,
            "quantity_end_on_model_grid": opt.quantity_end,
            "verifications": opt.verifications,
            "sparsified_quantile": dropped,
            "descent_margin": opt.margin_final,
            "series": [{"step": f.step, "quantity": f.quantity} for f in opt.frames],
            "optimisation_seconds": round(time.perf_counter() - t0, 3),
        })
        result = finish(ctx, goal, space, delta, details, last, params)
        vol = ctx.prepared.volume
        result.volumes["series"] = [space.counterfactual(vol, f.delta) for f in opt.frames[:-1]] + [
            result.volumes["counterfactual"]]
        return result
