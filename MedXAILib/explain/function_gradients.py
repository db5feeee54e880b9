"""Input gradients of the explained function within a memory budget: window by window, with recomputed segments.

The gradient methods (Integrated Gradients, Saliency / SmoothGrad, GradientSHAP) need ``∇_x S`` for batches of
inputs, ``S`` the target score of the explained function (:mod:`MedXAILib.targets`). How it is computed:

- **A MONAI sliding window** (the built-in models' and MONAI bundles' ``SlidingWindowInferer``, ``ctx.exact``): the
  score decomposes over the windows, ``S = Σ_w S_w`` with ``S_w = Σ W_w ⊙ f(x_p[w])`` and ``W_w = (W g / N)[w]`` on
  the padded input ``x_p`` (:mod:`MedXAILib.explain.windows`), so
  ``∇_x S = Pᵀ Σ_w ∇ S_w`` — each window's gradient placed at its position in the padded grid, then mapped through
  the padding's own derivative ``Pᵀ`` (a crop for constant padding). One window's forward and backward pass at a time:
  the memory of one window, whatever the number of windows; windows with ``W_w = 0`` contribute nothing and are
  skipped. (Autograd through ``sliding_window_inference`` gives the same gradient; ``Testing`` checks it.)
- **Any other function** (one whole-grid pass, ``exact=false``, nnU-Net's predictor): autograd through
  :meth:`ExplainContext.score`.

In both cases the network's segments are checkpointed when the :class:`~MedXAILib.explain.recompute.MemoryPlan`
says so (recomputed during the backward pass instead of stored), and the batch is the plan's.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..models import Model
from .base import ExplainContext
from .cam import frozen_parameters
from .recompute import MemoryPlan, checkpointed, plan_memory


def sliding_window_function(model: Model, grid: tuple[int, ...]) -> Any:
    """The model's :class:`~MedXAILib.models.function.WindowPlan` when its function is MONAI's sliding window over
    ``grid`` (the base model's ``sliding_window_inference``, a bundle's ``SlidingWindowInferer``), else None."""
    from ..models.bundle import BundleModel

    if type(model).infer is Model.infer or isinstance(model, BundleModel):
        try:
            return model.window_plan(tuple(grid))
        except Exception:  # a bundle whose inferer has no window plan: its function is explained through autograd
            return None
    return None


def _scriptable(network: torch.nn.Module) -> bool:
    return isinstance(network, torch.jit.ScriptModule)


def gradient_plan(ctx: ExplainContext, max_batch: int, mode: str = "auto", buffers: float = 0.0) -> MemoryPlan:
    """The batch and checkpointing for ``∇_x S`` passes on this context (see :func:`plan_memory`); the method holds
    ``buffers`` input-sized float32 tensors beside the passes (accumulators, baselines)."""
    model = ctx.model
    x = ctx.x
    plan = sliding_window_function(model, tuple(x.shape[2:])) if ctx.exact else None
    n_out = int(ctx.weights.shape[1])
    if plan is not None:
        shape = (x.shape[1],) + tuple(plan.roi)

        def pass_on(net: torch.nn.Module, b: int, segments: list[str] | None) -> Any:
            xb = torch.empty((b,) + shape, device="meta", requires_grad=True)
            w = torch.empty((1, n_out) + tuple(plan.roi), device="meta")
            with checkpointed(net, segments or []):
                (g,) = torch.autograd.grad((net(xb) * w).sum(), xb)
            return g
    else:
        shape = tuple(x.shape[1:])

        def pass_on(net: torch.nn.Module, b: int, segments: list[str] | None) -> Any:
            xb = torch.empty((b,) + shape, device="meta", requires_grad=True)
            original = model.network
            model.network = net
            try:
                with checkpointed(net, segments or []):
                    logits = model.network_pass(xb)
                    w = torch.empty((1,) + tuple(logits.shape[1:]), device="meta")
                    (g,) = torch.autograd.grad((logits * w).sum(), xb)
            finally:
                model.network = original
            return g

    if _scriptable(model.network):
        mode = "false"
    extra = int(buffers * x.numel() * x.element_size())
    return plan_memory(model.network, pass_on, mode, max_batch, extra_bytes=extra)


def function_gradients(ctx: ExplainContext, inputs: torch.Tensor, memory: MemoryPlan | None = None) -> torch.Tensor:
    """``∇_x S`` for a batch ``(B, C, *grid)`` → ``(B, C, *grid)``; counts B forward and B backward passes."""
    model = ctx.model
    plan = sliding_window_function(model, tuple(inputs.shape[2:])) if ctx.exact else None
    segments = memory.segments if memory is not None and memory.checkpoint else []
    with frozen_parameters(model.network), checkpointed(model.network, segments), torch.enable_grad():
        if plan is None:
            xb = inputs.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(ctx.score(xb).sum(), xb)
        else:
            grad = _by_window(ctx, inputs, plan, model.network)
            ctx.forward_passes += int(inputs.shape[0])
    ctx.count_backward(int(inputs.shape[0]))
    return grad.detach()


def _by_window(ctx: ExplainContext, inputs: torch.Tensor, plan: Any, network: Callable[..., torch.Tensor]
               ) -> torch.Tensor:
    """``Σ_w ∇ S_w`` placed on the grid (see the module docstring); one window's input, weights and gradient at a
    time beside the result."""
    from ..models.function import pad_for_plan

    x = inputs.detach().as_subclass(torch.Tensor)  # a plain tensor (a bundle's MetaTensor would copy its metadata)
    weights = ctx.weights.detach().as_subclass(torch.Tensor)
    g = plan.importance.to(x.device, x.dtype)
    norm = torch.zeros(plan.padded, dtype=x.dtype, device=x.device)
    for sl in plan.slices:
        norm[sl] += g
    constant = plan.padding_mode in ("constant", "zeros")
    xin = x if constant else x.clone().requires_grad_(True)
    xp = None if constant else pad_for_plan(xin, plan)
    grad = torch.zeros_like(x) if constant else torch.zeros(xp.shape, dtype=x.dtype, device=x.device)
    for sl in plan.slices:
        # the window on the padded grid, and the part of it that lies on the grid itself
        src = tuple(slice(max(s.start - a, 0), min(s.stop - a, n)) for s, (a, _), n in zip(sl, plan.pad, plan.grid))
        dst = tuple(slice(r.start - (s.start - a), r.stop - (s.start - a)) for r, s, (a, _) in zip(src, sl, plan.pad))
        w = torch.zeros((1, weights.shape[1]) + tuple(plan.roi), dtype=x.dtype, device=x.device)
        w[(slice(None), slice(None)) + dst] = weights[(slice(None), slice(None)) + src]
        w *= g / norm[sl]
        if not bool(w.abs().sum() > 0):
            continue  # the window holds none of the target: its share of the gradient is 0
        if constant:
            xw = torch.full((x.shape[0], x.shape[1]) + tuple(plan.roi), float(plan.cval), dtype=x.dtype,
                            device=x.device)
            xw[(slice(None), slice(None)) + dst] = x[(slice(None), slice(None)) + src]
        else:
            xw = xp[(slice(None), slice(None)) + sl].detach().clone()
        xw.requires_grad_(True)
        (gw,) = torch.autograd.grad((network(xw) * w).sum(), xw)
        del xw, w
        if constant:
            grad[(slice(None), slice(None)) + src] += gw[(slice(None), slice(None)) + dst]
        else:
            grad[(slice(None), slice(None)) + sl] += gw
        del gw
    if constant:
        return grad
    (out,) = torch.autograd.grad(xp, xin, grad)  # reflect / replicate padding folds the border back onto the grid
    return out
