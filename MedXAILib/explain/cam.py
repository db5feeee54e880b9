"""The CAM family: one mechanism (activations and gradients at a layer), each variant only weighs channels.

Definition (``docs/methods.md``). The model function is a linear combination of network calls,
``F(x) = Σ_c T_c(net(E_c x))`` — the windows of a sliding window, nnU-Net's mirrored passes and folds, or one
whole-grid pass (:mod:`MedXAILib.explain.calls`). For a target score ``S = Σ W ⊙ F(x)``, call ``c`` has the layer
activations ``A_c`` (``(B, K, *layer grid)``) and the gradient ``G_c = ∂S/∂A_c``, which is the gradient of the
call's own share of the target (``T_cᵀ W``: the inferer's weights enter once). The CAM is the **sum over calls** of
the per-call maps, each upsampled (bi/trilinear, align_corners=False) to the call's input and placed where that input
came from (flipped back for a mirrored pass; constant padding dropped)::

    CAM = Σ_c E_cᵀ up( combine(A_c, G_c) )

On a network whose windowed function equals one whole-grid pass (a pointwise network), HiResCAM and LayerCAM are
therefore the whole-grid maps; a flip-equivariant network gives the same CAM with and without mirroring.

Cost: the prediction's own forward pass is reused (:meth:`_CAM.prediction`): while it runs, each call keeps its
layer activations and the autograd graph of its tail (layer → output) only; the CAM then needs one backward pass
through the tails (and, for functions that are not a plain sliding window, two passes of the blend without the
network). Calls beyond ``cache_mb`` keep nothing and run again.

- Grad-CAM (Selvaraju et al. 2017): ``w_k = mean(G_k)`` over the call's layer grid; map ``Σ_k w_k A_k``.
- Grad-CAM++ (Chattopadhay et al. 2018), in its exponential-score closed form: ``α = G² / (2G² + Σ A · G³)``,
  ``w_k = Σ α ReLU(G)``. Where the denominator vanishes (G = 0) α is 0, so no NaN appears in 3D sparse gradients;
  the score is never exponentiated (MONAI's ``exp()`` overflows on region sums). α is not homogeneous in the
  gradient, so with P mirrored passes each pass is weighed as a copy of its window's function (its gradient times
  P) and the passes' maps are averaged — for the CAMs linear in ``G`` that is the plain sum.
- HiResCAM (Draelos & Carin 2020): ``Σ_k G_k ⊙ A_k`` (element-wise; faithful for conv-only heads).
- LayerCAM (Jiang et al. 2021): ``Σ_k ReLU(G_k) ⊙ A_k``.

The raw map is kept signed (no ReLU) — the display view shows its positive part, as the CAM papers do.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from ..errors import MethodError
from ..memory import available_bytes
from ..models import Model, Prediction, PreparedInput
from ..volume import Volume
from .base import ExplainContext, Method, MethodResult, register
from .calls import LayerRecord, capture, frozen_parameters, mirrored_passes, record_function

__all__ = ["frozen_parameters", "layer_capture", "upsample_to_grid", "gradcam_weights", "gradcampp_weights"]

AUTO_CACHE_BYTES = 8 * 1024**3


@contextlib.contextmanager
def layer_capture(model: Model, layer_name: str | None, leaf: bool = True) -> Iterator[list[torch.Tensor]]:
    """Capture a layer's output during the forward passes made in the block.

    With ``leaf`` the output is replaced by (a copy of) a detached tensor that requires grad, so a backward pass stops
    there; the copy lets the network modify it in place, as residual blocks do.
    """
    if isinstance(model.network, torch.jit.ScriptModule):
        raise MethodError("layer methods need hooks, which TorchScript models do not support; load a state_dict model")
    with capture(model.layer(layer_name), layer_name or model.description.cam_layer or "", leaf) as captured:
        yield captured


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
    """Grad-CAM++'s channel weights ``Σ α ReLU(G)``, ``α = G² / (2G² + Σ A · G³)`` (0 where that denominator is 0).

    Where ``G > 0`` (the only voxels ReLU keeps) ``α = 1 / (2 + Σ A · G)``, so each weight is computed as
    ``Σ_{G>0} G / (2 + Σ A · G)`` elementwise in the tensors' precision, summed in float64 (no float64 copies of
    ``(B, K, *layer grid)`` tensors: a BraTS-size layer would need gigabytes)."""
    dims = tuple(range(2, grads.ndim))
    sum_a = acts.sum(dim=dims, keepdim=True, dtype=torch.float64).to(grads.dtype)
    denom = 2.0 + sum_a * grads
    keep = (grads > 0) & ((grads * grads * denom).abs() > 1e-30)
    terms = torch.where(keep, grads / torch.where(keep, denom, torch.ones_like(denom)), torch.zeros_like(grads))
    return terms.sum(dim=dims, keepdim=True, dtype=torch.float64).to(grads.dtype)


def cache_budget(params: dict[str, Any]) -> int:
    """Bytes the prediction's kept tails may hold: ``cache_mb`` MiB, or (0) half the memory available now
    (:func:`MedXAILib.memory.available_bytes`), at most 8 GiB."""
    mb = float(params.get("cache_mb") or 0)
    if mb < 0:
        raise MethodError(f"cache_mb={mb:g}: give a size in MiB (0: automatic)")
    return int(mb * 1024**2) if mb > 0 else int(min(available_bytes() // 2, AUTO_CACHE_BYTES))


class _CAM(Method):
    tasks = ("classification", "segmentation")
    display = "positive"
    params = {"layer": "", "cache_mb": 0.0}
    cost_model = "the prediction's forward pass (reused) + a backward pass through the layer's tail"
    homogeneous = True  # combine(A, c·G) == c·combine(A, G): per-pass maps need no rescaling

    def __init__(self) -> None:
        self._record: LayerRecord | None = None

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """``(B, K, *layer grid)`` activations and gradients → ``(B, 1, *layer grid)`` map."""
        raise NotImplementedError

    def prediction(self, model: Model, volume: Volume, params: dict[str, Any], exact: bool
                   ) -> tuple[Prediction, PreparedInput | None]:
        """The prediction, from a forward pass that keeps the layer's tails for :meth:`run` (exact function only)."""
        if not exact or isinstance(model.network, torch.jit.ScriptModule):
            return super().prediction(model, volume, params, exact)
        prepared = model.prepare(volume)
        self._record = record_function(model, prepared.tensor, params.get("layer") or None, True,
                                       cache_budget(params))
        return model.prediction_from_logits(self._record.logits, prepared), prepared

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        layer = params.get("layer") or None
        exact = bool(getattr(ctx, "exact", False))
        record, reused = self._record, True
        self._record = None
        if record is None or not _same_input(record, ctx.x, exact):
            ctx.progress(0.05, f"{self.name}: forward pass keeping the layer's activations")
            record, reused = record_function(ctx.model, ctx.x, layer, exact, cache_budget(params)), False
            ctx.forward_passes += 1
        if exact:
            ctx.function_logits = record.logits  # the engine records the explained score from these
        ctx.progress(0.4, f"{self.name}: each network call's share of the target")
        record.compute_shares(ctx.score_of_logits, ctx.weights)
        passes = mirrored_passes(ctx.model)

        def map_fn(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
            if self.homogeneous or passes == 1:
                return self.combine(acts, grads)
            return self.combine(acts, grads * passes) / passes

        kept = record.kept_bytes
        cam, counts = record.place(map_fn, lambda f, msg: ctx.progress(0.45 + 0.5 * f, f"{self.name}: {msg}"))
        ctx.forward_passes += 1 if counts["calls_recomputed"] else 0
        ctx.count_backward()
        details: dict[str, Any] = {"layer": record.layer_name, "layer_shape": record.layer_shape,
                                   "forward_reused": reused, "kept_mib": round(kept / 1024**2, 1), **counts}
        return MethodResult(cam, details=details)


def _same_input(record: LayerRecord, x: torch.Tensor, exact: bool) -> bool:
    return (record.exact == exact and tuple(record.x.shape) == tuple(x.shape)
            and record.x.data_ptr() == x.data_ptr())


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
    homogeneous = False

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
