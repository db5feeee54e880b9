"""The CAM family: one mechanism (activations and gradients at a layer), each variant only weighs channels.

Mechanism: a forward hook on the chosen layer replaces its output ``A`` (``(1, K, *layer grid)``) with a detached
leaf tensor that requires grad, and every parameter's ``requires_grad`` is switched off for the run. The forward pass
then records nothing before the layer, and the backward pass from the target score stops at ``A`` — the cost is one
forward plus a partial backward. Each variant turns ``(A, dS/dA)`` into a map on the layer grid; the map is upsampled
(bi/trilinear, align_corners=False) to the model grid and the engine brings it to the input grid.

The raw map is kept signed (no ReLU) — the display view shows its positive part, as the CAM papers do.

When the model function runs a sliding window (``ctx.exact`` and :meth:`Model.window_plan` gives a plan), the map is
computed window by window — each window's ``(A_w, ∂S/∂A_w)`` with the window's share of the target
(:mod:`MedXAILib.explain.windows`) — upsampled to the window and blended with the inferer's own importance weights.

- Grad-CAM (Selvaraju et al. 2017): ``w_k = mean(dS/dA_k)``; map ``Σ_k w_k A_k``.
- Grad-CAM++ (Chattopadhay et al. 2018), in its exponential-score closed form: ``α = g² / (2g² + Σ A · g³)``
  with ``g = dS/dA``, ``w_k = Σ α ReLU(g)``. Where the denominator vanishes (g = 0) α is 0, so no NaN appears in 3D
  sparse gradients; the score is never exponentiated (MONAI's ``exp()`` overflows on region sums).
- HiResCAM (Draelos & Carin 2020): ``Σ_k g_k ⊙ A_k`` (element-wise; faithful for conv-only heads).
- LayerCAM (Jiang et al. 2021): ``Σ_k ReLU(g_k) ⊙ A_k``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from ..errors import MethodError
from ..models import Model
from .base import ExplainContext, Method, MethodResult, register


@contextlib.contextmanager
def frozen_parameters(network: torch.nn.Module) -> Iterator[None]:
    """Switch off ``requires_grad`` on every parameter for the block (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in network.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def layer_capture(model: Model, layer_name: str | None, leaf: bool = True) -> Iterator[list[torch.Tensor]]:
    """Capture a layer's output during the forward passes made in the block.

    With ``leaf`` the output is replaced by (a copy of) a detached tensor that requires grad, so a backward pass stops
    there; the copy lets the network modify it in place, as residual blocks do.
    """
    if isinstance(model.network, torch.jit.ScriptModule):
        raise MethodError("layer methods need hooks, which TorchScript models do not support; load a state_dict model")
    layer = model.layer(layer_name)
    captured: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor):
            raise MethodError(f"layer {layer_name or model.description.cam_layer!r} does not output a single tensor")
        if leaf:
            captured.append(output.detach().requires_grad_(True))
            # the network gets a non-leaf copy: residual blocks add in place after a convolution (x += identity)
            return captured[-1].clone()
        captured.append(output)
        return output

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _flip(t: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(t, [a + 2 for a in axes]) if axes else t


def activations_and_gradients(ctx: ExplainContext, layer: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``A`` and ``dS/dA`` at ``layer`` for the context's input and target, each ``(P, K, *layer grid)``.

    The network runs once over ``ctx.x`` (one window, or a function without a sliding window) — or, for a model
    with test-time mirroring (``model.tta_passes()``, e.g. nnU-Net), once per mirrored pass: pass ``p`` sees the
    input flipped along its axes, so its ``A`` and ``dS/dA`` are flipped back and ``P`` = number of passes (the
    function averages the passes' logits, so a CAM is the mean of the passes' CAMs, ``combine(...).mean(0)``)."""
    model = ctx.model
    passes = model.tta_passes() if hasattr(model, "tta_passes") else [()]
    with frozen_parameters(model.network), layer_capture(model, layer) as captured:
        with torch.enable_grad():
            logits = model.run(ctx.x, exact=getattr(ctx, "exact", False))
            ctx.forward_passes += len(passes)
            if len(captured) != len(passes):
                raise MethodError(
                    f"layer {layer or model.default_cam_layer()!r} ran {len(captured)} times in one forward pass "
                    f"({len(passes)} expected); choose a layer that runs once per network pass"
                )
            s = ctx.score_of_logits(logits).sum()
            grads = torch.autograd.grad(s, captured)
            ctx.count_backward()
    acts = torch.cat([_flip(a.detach(), ax) for a, ax in zip(captured, passes)])
    return acts, torch.cat([_flip(g.detach(), ax) for g, ax in zip(grads, passes)])


def upsample_to_grid(cam: torch.Tensor, model: Model, grid: tuple[int, ...]) -> torch.Tensor:
    """``(1, *layer grid)`` → ``(1, *model grid)``, undoing the whole-grid padding of :meth:`Model.forward`.

    The layer grid covers the padded input (sizes rounded up to the network's divisor), so the map is upsampled to
    the padded size and cropped, which keeps every map voxel over the anatomy it was computed from.
    """
    div = model.divisor() if model.task == "segmentation" else 1
    divs = model.axis_divisors(len(grid)) if hasattr(model, "axis_divisors") else (div,) * len(grid)
    padded = tuple(-(-g // d) * d for g, d in zip(grid, divs))
    mode = "bilinear" if cam.ndim == 3 else "trilinear"
    up = F.interpolate(cam[None], size=padded, mode=mode, align_corners=False)[0]
    return up[(slice(None),) + tuple(slice(0, g) for g in grid)]


def gradcam_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(2, grads.ndim))
    return grads.mean(dim=dims, keepdim=True)


def gradcampp_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(2, grads.ndim))
    g2 = grads.double() ** 2
    g3 = g2 * grads.double()
    sum_a = acts.double().sum(dim=dims, keepdim=True)
    denom = 2.0 * g2 + sum_a * g3
    alpha = torch.where(denom.abs() > 1e-30, g2 / torch.where(denom.abs() > 1e-30, denom, torch.ones_like(denom)), 0.0)
    return (alpha * F.relu(grads.double())).sum(dim=dims, keepdim=True).to(grads.dtype)


class _CAM(Method):
    tasks = ("classification", "segmentation")
    display = "positive"
    params = {"layer": ""}
    cost_model = "1 forward + backward to the layer"

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        layer = params.get("layer") or None
        grid = tuple(ctx.x.shape[2:])
        plan = ctx.model.window_plan(grid) if getattr(ctx, "exact", False) else None
        name = layer or ctx.model.default_cam_layer()
        if plan is not None:
            return self._run_windows(ctx, layer, plan, name)
        ctx.progress(0.1, f"{self.name}: forward and backward to the layer")
        acts, grads = activations_and_gradients(ctx, layer)
        cam = self.combine(acts, grads).mean(0)  # (1, *layer grid), averaged over mirrored passes
        maps = upsample_to_grid(cam, ctx.model, grid)
        return MethodResult(maps, details={"layer": name, "layer_shape": list(acts.shape[1:])})

    def _run_windows(self, ctx: ExplainContext, layer: str | None, plan: Any, name: str | None) -> MethodResult:
        from .windows import window_context, window_targets

        targets = window_targets(ctx, plan)
        window_maps = [torch.zeros((1,) + tuple(plan.roi), device=ctx.x.device) for _ in plan.slices]
        shape: list[int] = []
        for n, wt in enumerate(targets):
            ctx.progress(0.05 + 0.9 * n / max(len(targets), 1), f"{self.name}: window {n + 1} of {len(targets)}")
            sub = window_context(ctx, wt)
            acts, grads = activations_and_gradients(sub, layer)
            ctx.forward_passes += sub.forward_passes
            ctx.backward_passes += sub.backward_passes
            shape = list(acts.shape[1:])
            window_maps[wt.index] = upsample_to_grid(self.combine(acts, grads).mean(0), ctx.model,
                                                     tuple(plan.roi))
        maps = plan.blend(window_maps)
        return MethodResult(maps, details={"layer": name, "layer_shape": shape, "windows_explained": len(targets),
                                           "windows": len(plan.slices)})


@register
class GradCAM(_CAM):
    name = "gradcam"
    title = "Grad-CAM"
    reference = "Selvaraju et al., ICCV 2017"

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (gradcam_weights(acts, grads) * acts).sum(dim=1, keepdim=True)


@register
class GradCAMPlusPlus(_CAM):
    name = "gradcampp"
    title = "Grad-CAM++"
    reference = "Chattopadhay et al., WACV 2018"

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (gradcampp_weights(acts, grads) * acts).sum(dim=1, keepdim=True)


@register
class HiResCAM(_CAM):
    name = "hirescam"
    title = "HiResCAM"
    reference = "Draelos & Carin, 2020"

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads * acts).sum(dim=1, keepdim=True)


@register
class LayerCAM(_CAM):
    name = "layercam"
    title = "LayerCAM"
    reference = "Jiang et al., IEEE TIP 2021"

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (F.relu(grads) * acts).sum(dim=1, keepdim=True)
