"""Reference implementations timed beside MedXAI's methods, on the same network, input and target score.

Every function takes an :class:`~MedXAILib.explain.base.ExplainContext` (the model-grid input ``ctx.x``,
``(1, C, *grid)``, and the target score ``ctx.score_of_logits``) and returns a map on the model grid — ``(1, *grid)``
float — so maps can be compared voxel by voxel. Layer maps (CAMs) are upsampled with
:func:`~MedXAILib.explain.cam.upsample_to_grid`, as MedXAI's are; per-input-channel attributions are summed over the
channels, as the engine's heat map is.

Segmentation targets are scores summed over a region, so the libraries that want one output per sample get the
network wrapped as ``x ↦ Σ W ⊙ logits(x)`` (captum: a ``(B,)`` forward function; MONAI: a module returning ``(B, 1)``,
explained at class index 0).

- ``torch``: :func:`forward` (inference mode) and :func:`forward_backward` — a training-style step: forward, the target
  score, and a backward pass through every parameter (as ``loss.backward()``; no optimiser step).
- ``captum``: ``LayerGradCam``, ``IntegratedGradients``, ``Occlusion``, and ``KernelShap`` / ``Lime`` through
  :func:`MedXAILib.explain.shapley.captum_reference` (the same supervoxels, baseline and surrogate as ours).
- ``monai``: ``monai.visualize.GradCAM`` and ``GradCAMpp``; the hooks they register (and never remove) are removed
  after each run.
- ``pytorch-grad-cam``: its ``GradCAM`` in 2D, when the package imports (it imports torchvision at module level).
- ``naive``: :func:`MedXAILib.explain.scorecam.scorecam_reference`, the one-channel-at-a-time Score-CAM loop.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..explain.base import ExplainContext
from ..explain.cam import upsample_to_grid
from ..targets import score


def grid_of(ctx: ExplainContext) -> tuple[int, ...]:
    return tuple(int(s) for s in ctx.x.shape[2:])


def score_function(ctx: ExplainContext) -> Callable[[torch.Tensor], torch.Tensor]:
    """``(B, C, *grid)`` → ``(B,)`` target scores on the whole grid (no sliding window)."""

    def f(batch: torch.Tensor) -> torch.Tensor:
        return ctx.score_of_logits(ctx.model.forward(batch, sliding_window=False))

    return f


# ---------------------------------------------------------------------------------------------------------------
# torch floors


def forward(ctx: ExplainContext) -> torch.Tensor:
    """One forward pass in inference mode; returns the logits."""
    with torch.inference_mode():
        return ctx.model.forward(ctx.x, sliding_window=False)


def warm_up(ctx: ExplainContext, batch_sizes: Sequence[int], backward_batch: int) -> None:
    """Untimed: one forward pass at each batch size, and one forward + backward to the input at ``backward_batch``.

    It loads the kernels and grows the allocator for the shapes the case's rows use, so rows that skip their own
    warm-up (``BenchConfig.warmup_long``) do not pay first-call costs in their first timed run.
    """
    x = ctx.x.detach()
    with torch.inference_mode():
        for b in batch_sizes:
            ctx.model.forward(x.expand((int(b),) + tuple(x.shape[1:])).contiguous(), sliding_window=False)
    xb = x.expand((int(backward_batch),) + tuple(x.shape[1:])).clone().requires_grad_(True)
    with torch.enable_grad():
        ctx.score_of_logits(ctx.model.forward(xb, sliding_window=False)).sum().backward()


def forward_backward(ctx: ExplainContext) -> float:
    """Forward, target score, backward through every parameter (gradients then dropped); returns the score."""
    net = ctx.model.network
    flags = [(p, p.requires_grad) for p in net.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            s = ctx.score_of_logits(ctx.model.forward(ctx.x, sliding_window=False)).sum()
            s.backward()
        return float(s.detach())
    finally:
        for p, flag in flags:
            p.grad = None
            p.requires_grad_(flag)


# ---------------------------------------------------------------------------------------------------------------
# captum


def captum_layergradcam(ctx: ExplainContext, layer: str | None = None) -> torch.Tensor:
    """captum ``LayerGradCam`` (signed, channel-summed) at the model's CAM layer, upsampled to the model grid."""
    from captum.attr import LayerGradCam

    module = ctx.model.layer(layer)
    with torch.enable_grad():
        attr = LayerGradCam(score_function(ctx), module).attribute(ctx.x, relu_attributions=False)
    return upsample_to_grid(attr[0].detach(), ctx.model, grid_of(ctx))


def captum_integrated_gradients(
    ctx: ExplainContext, steps: int, internal_batch_size: int, baseline: float = 0.0
) -> torch.Tensor:
    """captum ``IntegratedGradients`` (Gauss–Legendre, constant baseline), summed over input channels."""
    from captum.attr import IntegratedGradients

    with torch.enable_grad():
        attr = IntegratedGradients(score_function(ctx)).attribute(
            ctx.x, baselines=float(baseline), n_steps=int(steps), method="gausslegendre",
            internal_batch_size=int(internal_batch_size),
        )
    return attr.detach()[0].sum(0, keepdim=True)


def captum_occlusion(
    ctx: ExplainContext, window: Sequence[int], stride: Sequence[int], baseline: float, perturbations_per_eval: int
) -> torch.Tensor:
    """captum ``Occlusion``: windows over all input channels at once, ``window`` / ``stride`` in model-grid voxels."""
    from captum.attr import Occlusion

    c = int(ctx.x.shape[1])
    with torch.inference_mode():
        attr = Occlusion(score_function(ctx)).attribute(
            ctx.x, sliding_window_shapes=(c,) + tuple(int(w) for w in window),
            strides=(c,) + tuple(int(s) for s in stride), baselines=float(baseline),
            perturbations_per_eval=int(perturbations_per_eval),
        )
    return attr[0, :1].clone()


def captum_supervoxel(ctx: ExplainContext, method: str, params: dict[str, Any]) -> torch.Tensor:
    """captum ``KernelShap`` / ``Lime`` on MedXAI's supervoxels (computed inside the call, as ours are)."""
    from ..explain.shapley import captum_reference
    from ..explain.supervoxels import model_grid_spacing, supervoxels

    spacing = model_grid_spacing(ctx.prepared.model_ijk_to_ras, ctx.x.ndim - 2)
    labels = supervoxels(
        ctx.x[0].detach().cpu().numpy(), spacing, segmentation=str(params["segmentation"]),
        n_segments=int(params["n_segments"]), compactness=float(params["compactness"]),
        size_mm=float(params["supervoxel_mm"]),
    )
    extra = {"kernel_width": float(params["kernel_width"]), "alpha": float(params["alpha"])} if method == "lime" else {}
    return captum_reference(
        method, ctx.model, ctx.x, ctx.score_of_logits, labels, int(params["n_samples"]), str(params["baseline"]),
        perturbations_per_eval=int(params["batch_size"]), seed=int(params["seed"]), spacing=tuple(spacing), **extra,
    )


# ---------------------------------------------------------------------------------------------------------------
# MONAI


class ScoreModule(torch.nn.Module):
    """``x ↦ (Σ W ⊙ logits(x))[:, None]``: one output per sample, for libraries that explain ``logits[:, idx]``.

    The wrapped network is the submodule ``net``, so its layers are named ``net.<layer>``.
    """

    def __init__(self, ctx: ExplainContext) -> None:
        super().__init__()
        self.net = ctx.model.network
        self._model = ctx.model
        self._weights = ctx.weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return score(self._model.forward(x, sliding_window=False), self._weights)[:, None]


@contextlib.contextmanager
def removing_new_hooks(module: torch.nn.Module) -> Iterator[None]:
    """Remove, on exit, every forward/backward hook registered on ``module``'s submodules inside the block."""
    before = {id(m): (set(m._forward_hooks), set(m._backward_hooks)) for m in module.modules()}
    try:
        yield
    finally:
        for m in module.modules():
            fwd, bwd = before.get(id(m), (set(), set()))
            for key in [k for k in m._forward_hooks if k not in fwd]:
                del m._forward_hooks[key]
            for key in [k for k in m._backward_hooks if k not in bwd]:
                del m._backward_hooks[key]
            if not m._backward_hooks:
                m._is_full_backward_hook = None


def monai_cam(ctx: ExplainContext, plus_plus: bool, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MONAI ``GradCAM`` / ``GradCAMpp`` called as a user would (upsampled, normalised), and its raw map.

    Returns:
        the ``__call__`` output (MONAI's upsampling and default normaliser) and the raw ``compute_map`` (ReLU'd layer
        map) upsampled to the model grid, for comparison.
    """
    from monai.visualize import GradCAM, GradCAMpp

    mode = ctx.model.network.training
    # a new Module starts in training mode, and MONAI restores the wrapper's mode after each call: match the network's
    wrapper = ScoreModule(ctx).train(mode)
    name = "net." + (layer or ctx.model.description.cam_layer or "")
    try:
        with removing_new_hooks(wrapper), torch.enable_grad():
            cam = (GradCAMpp if plus_plus else GradCAM)(nn_module=wrapper, target_layers=name)
            shown = cam(ctx.x, class_idx=0)
            raw = cam.compute_map(ctx.x, class_idx=0)
    finally:
        ctx.model.network.train(mode)
    return shown.detach(), upsample_to_grid(raw[0].detach(), ctx.model, grid_of(ctx))


# ---------------------------------------------------------------------------------------------------------------
# pytorch-grad-cam


def pytorch_grad_cam_status() -> str | None:
    """None when ``pytorch_grad_cam`` imports; otherwise why not (one line)."""
    try:
        import pytorch_grad_cam  # noqa: F401
    except Exception as exc:  # it fails with RuntimeError, not ImportError, when torchvision's ops do not load
        return f"pytorch-grad-cam does not import here ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return None


def pytorch_grad_cam(ctx: ExplainContext, layer: str | None = None) -> torch.Tensor:
    """pytorch-grad-cam ``GradCAM`` (2D classifiers), used as a context manager (it leaks hooks otherwise)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = ctx.model.layer(layer)
    with GradCAM(model=ctx.model.network, target_layers=[module]) as cam:
        out = cam(input_tensor=ctx.x, targets=[ClassifierOutputTarget(int(ctx.target.class_index))])
    return torch.as_tensor(np.asarray(out))


# ---------------------------------------------------------------------------------------------------------------
# naive Score-CAM


def naive_scorecam(ctx: ExplainContext, layer: str | None = None) -> torch.Tensor:
    """The plain per-channel Score-CAM loop (:func:`~MedXAILib.explain.scorecam.scorecam_reference`)."""
    from ..explain.scorecam import scorecam_reference

    with torch.no_grad():
        cam, _ = scorecam_reference(ctx, layer)
    return cam
