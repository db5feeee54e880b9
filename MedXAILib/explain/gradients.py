"""Input-gradient methods: Integrated Gradients, Saliency / SmoothGrad, GradientSHAP.

All three attribute every input channel (``per_channel=True``: the map is ``(C, *model grid)``), so the engine reports
each MRI sequence's share of |relevance|. ``f`` is the target score (:mod:`MedXAILib.targets`); gradients are taken
with respect to the input only (parameters frozen), ``B`` samples per forward + backward pass.

- **Integrated Gradients** (Sundararajan et al., ICML 2017):
  ``IG(x) = (x − b) ⊙ ∫₀¹ ∇f(b + α(x − b)) dα``, approximated by a quadrature ``Σ_i w_i ∇f(b + α_i(x − b))``:

  - ``gausslegendre`` (default): Gauss–Legendre nodes and weights mapped to [0, 1] — the same as captum's default;
  - ``riemann_trapezoid``: ``α_i = i / (n − 1)``, weights ``1 / (n − 1)`` halved at both ends (summing to 1).
    captum's ``riemann_trapezoid`` steps by ``1 / n`` (weights summing to ``1 − 1/n``): its map is ours × (n − 1)/n.

  Baseline ``b``: ``zeros``, ``blurred`` (the input smoothed by a Gaussian of ``blur_sigma_mm`` millimetres on the
  model grid) or ``counterfactual``: the model-grid input of the ``counterfactual`` method with its default goal (the
  decision flipped), a clinically "normal" reference; completeness then holds against it
  (``Testing/test_counterfactual.py``). It needs the whole grid, so the engine does not cut the grid into patches.
  ``details["completeness_gap"] = |Σ IG − (f(x) − f(b))| / |f(x) − f(b)|`` (two extra forward passes).
  Tolerances, measured on the test networks (``Testing/test_explain_gradients.py`` asserts them):

  - smooth (tanh) classifier, zeros baseline, 32 Gauss–Legendre steps: gap < 1e-3;
  - tiny MONAI UNet (InstanceNorm, PReLU), region score, blurred baseline, 64 Gauss–Legendre steps: gap < 5 %
    (measured 0.9 %; ReLU-type kinks make the gap fall irregularly with n: 1.6 % at 16, 6.7 % at 32 steps).
  - the same UNet with the **zeros** baseline: gap 24 % at 64 steps, 15 % at 128 (trapezoid: 1900 % at 64). An
    InstanceNorm of ``α·Wx + bias`` jumps from the bias-only output to its α-independent value within
    ``α ≲ sqrt(eps / var)``, so the path integrand has a near-delta at α ≈ 0 that no quadrature resolves. Use
    ``baseline=blurred`` on InstanceNorm networks; ``details["completeness_warning"]`` says so when the gap > 5 %.

  Steps run ``internal_batch_size`` at a time (captum runs out of memory without it, [#245]), fewer when a simulation
  of the pass says they would not fit the memory budget, and one at a time with the network's segments recomputed
  instead of stored when even one would not (``checkpoint``: ``auto``, ``true``, ``false``;
  :mod:`MedXAILib.explain.recompute`, ``details["memory"]``). Through a sliding window each step's gradient is taken
  window by window (:mod:`MedXAILib.explain.function_gradients`): the memory of one window, whatever the grid.
- **Saliency** (Simonyan et al. 2014) and **SmoothGrad** (Smilkov et al. 2017): ``mode`` ``abs`` = ``|∇f(x)|``,
  ``signed`` = ``∇f(x)``, ``grad_x_input`` = ``x ⊙ ∇f(x)``. With ``smoothgrad_samples = n > 0`` the attribution is
  averaged over ``n`` noisy copies ``x + ε``, ``ε ~ N(0, σ²)``, ``σ = noise_level × (max x − min x)`` (the paper's
  noise level); ``grad_x_input`` then uses each noisy copy as its input (as captum's NoiseTunnel does).
- **GradientSHAP** (Lundberg & Lee 2017, captum's estimator): the expectation of ``(x̃ − b) ⊙ ∇f(b + α(x̃ − b))`` over
  baselines ``b`` drawn uniformly from ``baselines`` (``zeros``, ``blurred`` or both), ``α ~ U(0, 1)`` and
  ``x̃ = x + ε`` with ``ε ~ N(0, (stdev × range)²)``; ``n_samples`` draws (seeded), ``batch_size`` per pass — the
  batching knob captum's GradientShap lacks [#1350]. Completeness holds only in expectation; its Monte-Carlo gap is
  reported as ``details["completeness_gap_estimate"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import MethodError
from ..models import Model, PreparedInput
from .base import ExplainContext, Method, MethodResult, register
from .function_gradients import function_gradients, gradient_plan
from .perturbation import model_grid_spacing
from .recompute import MemoryPlan, parse_checkpoint

IG_METHODS = ("gausslegendre", "riemann_trapezoid")
#: Input-sized float32 tensors IG allocates beside its passes after planning them: the float64 accumulator (2),
#: x − baseline, the batch of path points and its gradient (the baseline exists before: it is resident memory).
IG_BUFFERS = 5.0
BASELINES = ("zeros", "blurred", "counterfactual")


def input_gradients(ctx: ExplainContext, inputs: torch.Tensor, memory: MemoryPlan | None = None) -> torch.Tensor:
    """``∇_x f`` for a batch ``(B, C, *grid)`` → ``(B, C, *grid)``; counts B forward and B backward passes.

    With a ``memory`` plan, window by window and with the plan's checkpointed segments
    (:func:`~MedXAILib.explain.function_gradients.function_gradients`)."""
    return function_gradients(ctx, inputs, memory)


def integration_rule(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``α_i`` in [0, 1] and weights ``w_i`` (float64) of the path-integral quadrature."""
    from ..memory import require

    # numpy's Gauss-Legendre solves an n x n companion matrix (~3 copies of 8 n^2 bytes); the trapezoid needs 2 arrays
    need = 24.0 * n * n if method == "gausslegendre" else 16.0 * n
    require(need, f"ig: {n} integration steps", "use fewer steps (32-256 are typical)", MethodError)
    if method == "gausslegendre":
        if n < 1:
            raise MethodError("ig: steps must be at least 1")
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if method == "riemann_trapezoid":
        if n < 2:
            raise MethodError("ig: riemann_trapezoid needs at least 2 steps")
        w = np.full(n, 1.0 / (n - 1))
        w[0] /= 2
        w[-1] /= 2
        return np.linspace(0.0, 1.0, n), w
    raise MethodError(f"ig: method must be one of {', '.join(IG_METHODS)}, got {method!r}")


def make_baseline(
    ctx: ExplainContext, kind: str, blur_sigma_mm: float, info: dict[str, Any] | None = None
) -> torch.Tensor:
    """A ``(1, C, *grid)`` baseline: ``zeros``, the input blurred by a Gaussian of ``blur_sigma_mm`` (per axis), or
    ``counterfactual`` (the model-grid input of :mod:`MedXAILib.explain.counterfactual` with its default goal; what
    it reached is written into ``info``)."""
    x = ctx.x.detach()
    if kind == "counterfactual":
        from .counterfactual import counterfactual_on_grid

        if ctx.window is not None:
            raise MethodError("baseline=counterfactual needs the whole grid (explain(..., windowed=False))")
        baseline, found = counterfactual_on_grid(ctx)
        if info is not None:
            info["counterfactual_baseline"] = found
        return baseline.detach()
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "blurred":
        from scipy.ndimage import gaussian_filter

        if blur_sigma_mm <= 0:
            raise MethodError("the blurred baseline needs blur_sigma_mm > 0")
        spacing = model_grid_spacing(ctx.prepared, ctx.model.spatial_dims)
        sigma = (0.0, 0.0) + tuple(blur_sigma_mm / s for s in spacing)
        arr = gaussian_filter(x.cpu().numpy().astype(np.float64), sigma=sigma, mode="nearest")
        return torch.from_numpy(arr).to(x.dtype).to(x.device)
    raise MethodError(f"baseline must be one of {', '.join(BASELINES)}, got {kind!r}")


def _gap(total: float, delta: float) -> float:
    return abs(total - delta) / abs(delta) if abs(delta) > 1e-12 else abs(total - delta)


def integrated_gradients(
    ctx: ExplainContext,
    baseline: torch.Tensor,
    steps: int = 32,
    method: str = "gausslegendre",
    internal_batch_size: int = 8,
    checkpoint: str = "auto",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """IG on the model grid: ``(C, *grid)`` float32 attributions and the completeness diagnostics.

    ``internal_batch_size`` is the most path points per pass; the memory plan may lower it, and checkpoint the
    network when one point alone would not fit (``checkpoint``: ``auto``, ``true``, ``false``; see
    :mod:`MedXAILib.explain.recompute`)."""
    x = ctx.x.detach()
    alphas, weights = integration_rule(method, steps)
    memory = gradient_plan(ctx, min(int(internal_batch_size), steps), checkpoint, buffers=IG_BUFFERS)
    diff = x - baseline
    acc = torch.zeros_like(x, dtype=torch.float64)
    bs = memory.batch
    for start in range(0, steps, bs):
        a = torch.tensor(alphas[start : start + bs], dtype=x.dtype, device=x.device)
        w = torch.tensor(weights[start : start + bs], dtype=torch.float64, device=x.device)
        view = (-1,) + (1,) * (x.ndim - 1)
        points = baseline + a.reshape(view) * diff
        grads = input_gradients(ctx, points, memory)
        del points
        acc += (grads.double() * w.reshape(view)).sum(0, keepdim=True)
        del grads
        ctx.progress(min(start + bs, steps) / steps, "ig: path gradients")
    attr = (diff.double() * acc)[0]
    with torch.no_grad():
        ends = torch.cat([ctx.score(x), ctx.score(baseline)]).double()
    delta = float(ends[0] - ends[1])
    total = float(attr.sum())
    gap = _gap(total, delta)
    details: dict[str, Any] = {
        "method": method,
        "steps": steps,
        "sum_attributions": total,
        "score_delta": delta,
        "completeness_gap": gap,
        "memory": memory.describe(),
    }
    if gap > 0.05:
        details["completeness_warning"] = (
            f"the attributions miss {gap:.0%} of f(x) − f(baseline): use more steps, or baseline=blurred "
            "(a zeros baseline is ill-conditioned on InstanceNorm networks)"
        )
    return attr.float(), details


def saliency_map(
    ctx: ExplainContext,
    mode: str = "abs",
    smoothgrad_samples: int = 0,
    noise_level: float = 0.15,
    batch_size: int = 8,
    seed: int = 0,
    checkpoint: str = "auto",
    memory_out: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Saliency or SmoothGrad on the model grid, ``(C, *grid)`` float32 (``memory_out`` receives the memory plan)."""
    x = ctx.x.detach()
    memory = gradient_plan(ctx, max(1, min(int(batch_size), int(smoothgrad_samples))), checkpoint,
                           buffers=2.0 if smoothgrad_samples > 0 else 0.0)  # the float64 accumulator
    if memory_out is not None:
        memory_out.update(memory.describe())
    if smoothgrad_samples <= 0:
        grads = input_gradients(ctx, x, memory)
        return _saliency_of(grads, x, mode)[0].float()
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    sigma = float(noise_level) * float(x.max() - x.min())
    acc = torch.zeros_like(x, dtype=torch.float64)
    bs = memory.batch
    for start in range(0, smoothgrad_samples, bs):
        b = min(bs, smoothgrad_samples - start)
        noise = torch.randn((b,) + tuple(x.shape[1:]), generator=gen).to(x.device, x.dtype) * sigma
        noisy = x + noise
        acc += _saliency_of(input_gradients(ctx, noisy, memory), noisy, mode).double().sum(0, keepdim=True)
        ctx.progress((start + b) / smoothgrad_samples, "smoothgrad: noisy gradients")
    return (acc / smoothgrad_samples)[0].float()


def _saliency_of(grads: torch.Tensor, inputs: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "abs":
        return grads.abs()
    if mode == "signed":
        return grads
    if mode == "grad_x_input":
        return grads * inputs
    raise MethodError(f"saliency: mode must be abs, signed or grad_x_input, got {mode!r}")


def gradient_shap(
    ctx: ExplainContext,
    baselines: list[torch.Tensor],
    n_samples: int = 16,
    stdev: float = 0.0,
    batch_size: int = 8,
    seed: int = 0,
    checkpoint: str = "auto",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """GradientSHAP on the model grid: ``(C, *grid)`` float32 and the Monte-Carlo completeness gap."""
    x = ctx.x.detach()
    memory = gradient_plan(ctx, max(1, min(int(batch_size), int(n_samples))), checkpoint,
                           buffers=2.0 + len(baselines))
    rng = np.random.default_rng(int(seed))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    choice = rng.integers(0, len(baselines), size=n_samples)
    alphas = rng.uniform(0.0, 1.0, size=n_samples)
    sigma = float(stdev) * float(x.max() - x.min())
    base = torch.cat(baselines)  # (nb, C, *grid)
    acc = torch.zeros_like(x, dtype=torch.float64)
    bs = memory.batch
    view = (-1,) + (1,) * (x.ndim - 1)
    for start in range(0, n_samples, bs):
        idx = torch.as_tensor(choice[start : start + bs], device=x.device)
        a = torch.tensor(alphas[start : start + bs], dtype=x.dtype, device=x.device).reshape(view)
        b = base[idx]
        xt = x.expand_as(b)
        if sigma > 0:
            xt = xt + torch.randn(tuple(b.shape), generator=gen).to(x.device, x.dtype) * sigma
        grads = input_gradients(ctx, b + a * (xt - b), memory)
        acc += ((xt - b).double() * grads.double()).sum(0, keepdim=True)
        ctx.progress(min(start + bs, n_samples) / n_samples, "gradientshap: samples")
    attr = (acc / n_samples)[0]
    with torch.no_grad():
        s = torch.cat([ctx.score(x)] + [ctx.score(bl) for bl in baselines]).double()
    expected_delta = float(np.mean([float(s[0] - s[1 + c]) for c in choice]))
    total = float(attr.sum())
    details = {
        "n_samples": n_samples,
        "sum_attributions": total,
        "expected_score_delta": expected_delta,
        "completeness_gap_estimate": _gap(total, expected_delta),
        "memory": memory.describe(),
    }
    return attr.float(), details


def _check_positive(name: str, params: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in params and int(params[key]) < 1:
            raise MethodError(f"{name}: {key} must be at least 1, got {params[key]}")


@register
class IntegratedGradients(Method):
    """Integrated Gradients; see the module docstring."""

    name = "ig"
    title = "Integrated Gradients"
    reference = "Sundararajan et al., ICML 2017"
    params = {
        "steps": 32,
        "method": "gausslegendre",
        "baseline": "zeros",
        "blur_sigma_mm": 8.0,
        "internal_batch_size": 8,
        "checkpoint": "auto",
    }
    cost_model = "steps forward + steps backward (internal_batch_size per pass) + 2 forwards for completeness"

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        _check_positive(self.name, params, ("steps", "internal_batch_size"))
        parse_checkpoint(params.get("checkpoint", "auto"))
        integration_rule(str(params.get("method", "gausslegendre")), int(params.get("steps", 32)))
        if params.get("baseline", "zeros") not in BASELINES:
            raise MethodError(f"ig: baseline must be one of {', '.join(BASELINES)}, got {params['baseline']!r}")

    def windowable_for(self, params: dict[str, Any]) -> bool:
        return params.get("baseline") != "counterfactual"

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        n = int(params.get("steps", 32))
        return (n + 2, n)

    def memory_plan(self, ctx: ExplainContext, params: dict[str, Any]) -> MemoryPlan:
        """The batch and checkpointing :func:`integrated_gradients` will use (for ``--dry-run``)."""
        batch = min(int(params["internal_batch_size"]), int(params["steps"]))
        return gradient_plan(ctx, batch, parse_checkpoint(params["checkpoint"]), buffers=IG_BUFFERS)

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        info: dict[str, Any] = {}
        baseline = make_baseline(ctx, str(params["baseline"]), float(params["blur_sigma_mm"]), info)
        maps, details = integrated_gradients(
            ctx, baseline, int(params["steps"]), str(params["method"]), int(params["internal_batch_size"]),
            parse_checkpoint(params["checkpoint"]),
        )
        details.update(info)
        details["baseline"] = params["baseline"]
        return MethodResult(maps, per_channel=True, details=details)


@register
class Saliency(Method):
    """Saliency / SmoothGrad; see the module docstring."""

    name = "saliency"
    title = "Saliency / SmoothGrad"
    reference = "Simonyan et al., ICLR-W 2014; Smilkov et al., 2017"
    params = {"mode": "abs", "smoothgrad_samples": 0, "noise_level": 0.15, "batch_size": 8, "seed": 0,
              "checkpoint": "auto"}
    cost_model = "max(1, smoothgrad_samples) forward + backward (batch_size per pass)"

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        _check_positive(self.name, params, ("batch_size",))
        parse_checkpoint(params.get("checkpoint", "auto"))
        if params.get("mode", "abs") not in ("abs", "signed", "grad_x_input"):
            raise MethodError(f"saliency: mode must be abs, signed or grad_x_input, got {params['mode']!r}")
        if int(params.get("smoothgrad_samples", 0)) < 0 or float(params.get("noise_level", 0.0)) < 0:
            raise MethodError("saliency: smoothgrad_samples and noise_level must be ≥ 0")

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        n = max(1, int(params.get("smoothgrad_samples", 0)))
        return (n, n)

    def memory_plan(self, ctx: ExplainContext, params: dict[str, Any]) -> MemoryPlan:
        """The batch and checkpointing :func:`saliency_map` will use (for ``--dry-run``)."""
        n = int(params["smoothgrad_samples"])
        return gradient_plan(ctx, max(1, min(int(params["batch_size"]), n)), parse_checkpoint(params["checkpoint"]),
                             buffers=2.0 if n > 0 else 0.0)

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        n = int(params["smoothgrad_samples"])
        memory: dict[str, Any] = {}
        maps = saliency_map(
            ctx, str(params["mode"]), n, float(params["noise_level"]), int(params["batch_size"]), int(params["seed"]),
            parse_checkpoint(params["checkpoint"]), memory,
        )
        details = {"mode": params["mode"], "smoothgrad_samples": n, "memory": memory}
        if n > 0:
            details["noise_sigma"] = float(params["noise_level"]) * float(ctx.x.max() - ctx.x.min())
        return MethodResult(maps, per_channel=True, details=details)


@register
class GradientSHAP(Method):
    """GradientSHAP (expected gradients over noisy baselines); see the module docstring."""

    name = "gradientshap"
    title = "GradientSHAP"
    reference = "Lundberg & Lee, NeurIPS 2017 (captum's GradientShap estimator)"
    params = {
        "n_samples": 16,
        "baselines": "zeros+blurred",
        "stdev": 0.0,
        "blur_sigma_mm": 8.0,
        "batch_size": 8,
        "seed": 0,
        "checkpoint": "auto",
    }
    cost_model = "n_samples forward + backward (batch_size per pass) + 1 + number of baselines forwards"

    def _kinds(self, params: dict[str, Any]) -> list[str]:
        kinds = [k for k in str(params.get("baselines", "zeros")).split("+") if k]
        bad = [k for k in kinds if k not in BASELINES]
        if not kinds or bad:
            raise MethodError(
                f"gradientshap: baselines is one or more of {', '.join(BASELINES)} joined by '+', "
                f"got {params.get('baselines')!r}"
            )
        return kinds

    def check(self, model: Model, target: Any, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        _check_positive(self.name, params, ("n_samples", "batch_size"))
        parse_checkpoint(params.get("checkpoint", "auto"))
        self._kinds(params)
        if float(params.get("stdev", 0.0)) < 0:
            raise MethodError("gradientshap: stdev must be ≥ 0")

    def windowable_for(self, params: dict[str, Any]) -> bool:
        return "counterfactual" not in self._kinds(params)

    def memory_plan(self, ctx: ExplainContext, params: dict[str, Any]) -> MemoryPlan:
        """The batch and checkpointing :func:`gradient_shap` will use (for ``--dry-run``)."""
        n = int(params["n_samples"])
        return gradient_plan(ctx, max(1, min(int(params["batch_size"]), n)), parse_checkpoint(params["checkpoint"]),
                             buffers=2.0 + len(self._kinds(params)))

    def passes(self, model: Model, prepared: PreparedInput, params: dict[str, Any]) -> tuple[int, int]:
        n = int(params.get("n_samples", 16))
        return (n + 1 + len(self._kinds(params)), n)

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        kinds = self._kinds(params)
        info: dict[str, Any] = {}
        baselines = [make_baseline(ctx, k, float(params["blur_sigma_mm"]), info) for k in kinds]
        maps, details = gradient_shap(
            ctx, baselines, int(params["n_samples"]), float(params["stdev"]), int(params["batch_size"]),
            int(params["seed"]), parse_checkpoint(params["checkpoint"]),
        )
        details.update(info)
        details["baselines"] = kinds
        return MethodResult(maps, per_channel=True, details=details)
