"""LRP's modified gradient through one layer, as an autograd function that stores its tensors or recomputes them.

For a weighted or normalising layer with input ``x`` and output ``y`` (:mod:`.lrp` explains the rules), relevance is
carried as a modified gradient: the layer's output keeps its value ``y`` while the backward pass maps the incoming
``m_y`` to ``m_x = ∂z/∂xᵀ (m_y ⊙ y / den)``, where ``z`` is the rule's pre-activation (differentiable in ``x``),
``den = stabilize(base)`` its stabilised denominator and ``den − numer = offset + ε·sign(base)`` the part the layer
absorbs (bias, shift, ε). :class:`LayerRule` gives these terms for each layer kind:

==================  ==========================  =========================  =======================================
layer, rule         z                           base                       offset
==================  ==========================  =========================  =======================================
weighted, ε         ``y`` itself                ``y``                      the bias ``b``
weighted, z⁺ / γ    the rule's forward          ``z`` (+ rule bias)        0 (the rule bias with ``bias=true``)
normalisation       its linear part (no shift)  ``y``                      the shift ``y − z`` (one per channel)
==================  ==========================  =========================  =======================================

Two implementations, equal in value (the same operations on the same tensors):

- :class:`StoredRelevance` computes ``z`` in the forward pass and saves, per layer, ``y`` (when ``base`` is ``y``) or
  the factor ``y / den`` with ``sign(base)`` as booleans — one full-size tensor more than a plain gradient needs;
- :class:`RecomputedRelevance` saves only the layer's input ``x`` (which a plain gradient saves too) and rebuilds
  ``y``, ``z`` and the factor from it when the backward pass reaches the layer — one more forward of the layer.

Both record what the layer absorbs, ``Σ m_y ⊙ y (den − numer) / den``, and on request the relevance reaching its
output, ``Σ m_y ⊙ y``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .lrp_rules import BN_TYPES, layer_output, rule_bias, rule_forward, rule_vjp


@dataclass
class LayerRecord:
    """What one layer did to the relevance: ``relevance`` (Σ R at its output) and ``absorbed`` (Σ R_y − Σ R_x)."""

    name: str
    kind: str
    rule: str
    relevance: float = 0.0
    absorbed: float = 0.0


def norm_mode(module: nn.Module, norm_rule: str) -> str:
    """``constant`` (BatchNorm with running statistics), else ``norm_rule`` (``centered`` or ``affine``)."""
    if isinstance(module, BN_TYPES) or (getattr(module, "track_running_stats", False)
                                        and module.running_mean is not None):
        return "constant"
    return norm_rule


def norm_linear(module: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """The linear part of a normalisation layer (its shift dropped), differentiable in ``x``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if mode == "constant" and module.running_var is not None and not module.training:
        lin = x / torch.sqrt(module.running_var + module.eps).reshape(shape)
    elif isinstance(module, nn.GroupNorm):
        b, c = x.shape[:2]
        xg = x.reshape(b, module.num_groups, -1)
        std = torch.sqrt(xg.detach().var(-1, unbiased=False, keepdim=True) + module.eps)
        mean = xg.mean(-1, keepdim=True)
        lin = ((xg - mean) if mode == "centered" else xg) / std
        lin = lin.reshape(x.shape)
    else:
        dims = tuple(range(2, x.ndim)) if not isinstance(module, BN_TYPES) else (0,) + tuple(range(2, x.ndim))
        std = torch.sqrt(x.detach().var(dims, unbiased=False, keepdim=True) + module.eps)
        lin = ((x - x.mean(dims, keepdim=True)) if mode == "centered" else x) / std
    if getattr(module, "affine", False) and module.weight is not None:
        lin = lin * module.weight.reshape(shape)
    return lin


def norm_vjp(module: nn.Module, x: torch.Tensor, delta: torch.Tensor, mode: str) -> torch.Tensor:
    """``∂ norm_linear(x)/∂xᵀ δ`` in closed form (the standard deviation is a constant): ``δ γ / σ``, minus its mean
    over each normalised group in the ``centered`` mode. ``delta`` is overwritten."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    g = delta
    if getattr(module, "affine", False) and module.weight is not None:
        g.mul_(module.weight.detach().reshape(shape))
    if mode == "constant" and module.running_var is not None and not module.training:
        return g.div_(torch.sqrt(module.running_var + module.eps).reshape(shape))
    if isinstance(module, nn.GroupNorm):
        b = x.shape[0]
        gg = g.view(b, module.num_groups, -1)
        std = torch.sqrt(x.detach().reshape(b, module.num_groups, -1).var(-1, unbiased=False, keepdim=True)
                         + module.eps)
        if mode == "centered":
            gg.sub_(gg.mean(-1, keepdim=True))
        gg.div_(std)
        return g
    dims = tuple(range(2, x.ndim)) if not isinstance(module, BN_TYPES) else (0,) + tuple(range(2, x.ndim))
    std = torch.sqrt(x.detach().var(dims, unbiased=False, keepdim=True) + module.eps)
    if mode == "centered":
        g.sub_(g.mean(dims, keepdim=True))
    return g.div_(std)


def norm_shift(module: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """``y − norm_linear(x)``, the part of a normalisation's output that does not scale with ``x``: ``β`` (centered),
    ``β − γ μ / σ`` (affine: the mean is a constant too), ``β − γ μ_run / σ_run`` (running statistics); shaped
    ``(B or 1, C, 1, …)``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    affine = getattr(module, "affine", False) and module.weight is not None
    beta = module.bias.detach().reshape(shape) if affine and module.bias is not None else x.new_zeros(())
    gamma = module.weight.detach().reshape(shape) if affine else x.new_ones(())
    xd = x.detach()
    if mode == "constant" and module.running_var is not None and not module.training:
        mean = module.running_mean.reshape(shape)
        std = torch.sqrt(module.running_var + module.eps).reshape(shape)
    elif mode == "centered":
        return beta + x.new_zeros((1, x.shape[1]) + (1,) * (x.ndim - 2))
    elif isinstance(module, nn.GroupNorm):
        b, c = x.shape[:2]
        xg = xd.reshape(b, module.num_groups, -1)
        mean = xg.mean(-1, keepdim=True).repeat_interleave(c // module.num_groups, 1).reshape((b, c) + shape[2:])
        var = xg.var(-1, unbiased=False, keepdim=True).repeat_interleave(c // module.num_groups, 1)
        std = torch.sqrt(var + module.eps).reshape((b, c) + shape[2:])
    else:
        dims = tuple(range(2, x.ndim)) if not isinstance(module, BN_TYPES) else (0,) + tuple(range(2, x.ndim))
        mean = xd.mean(dims, keepdim=True)
        std = torch.sqrt(xd.var(dims, unbiased=False, keepdim=True) + module.eps)
    return beta - gamma * mean / std


@dataclass
class LayerRule:
    """One layer's rule: ``kind`` is ``weighted`` (conv / linear, ``rule`` ε, z⁺ or γ) or ``norm`` (``rule`` is
    the normalisation mode)."""

    module: nn.Module
    kind: str
    rule: str
    eps: float
    gamma: float = 0.25
    bias: bool = False
    signed: bool | None = None  # whether the input can be negative, for memory simulations (meta tensors) only

    @property
    def label(self) -> str:
        return self.rule if self.kind == "weighted" else f"epsilon/{self.rule}"

    def terms(self, x: torch.Tensor, y: torch.Tensor | None = None, need_z: bool = True
              ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(z, y, base, offset)`` for input ``x`` (see the module docstring); ``base`` None means ``y``.

        ``y`` is the layer's output when known (its graph is kept for the ε rule), else it is computed here with the
        module's own forward (never through its hooks). ``z`` is differentiable in ``x`` where ``x`` requires grad;
        a normalisation's ``z`` is not computed without ``need_z`` (its shift has a closed form)."""
        m = self.module
        if self.kind == "weighted" and self.rule == "epsilon":
            y = layer_output(m, x) if y is None else y
            b = getattr(m, "bias", None)
            offset = y.new_zeros(()) if b is None else b.detach().reshape((1, -1) + (1,) * (y.ndim - 2))
            return y, y.detach(), None, offset
        if y is None:
            with torch.no_grad():
                y = layer_output(m, x.detach())
        yd = y.detach()
        if self.kind == "weighted":
            z = rule_forward(m, self.rule, x, yd, self.gamma, self.signed)
            zd = z.detach()
            rb = rule_bias(m, self.rule, zd, self.gamma) if self.bias else None
            base = zd if rb is None else zd + rb
            offset = yd.new_zeros(()) if rb is None else torch.as_tensor(rb, dtype=yd.dtype)
            return z, yd, base, offset
        return (norm_linear(m, x, self.rule) if need_z else None), yd, None, norm_shift(m, x, self.rule)

    def input_gradient(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``∂z/∂xᵀ δ`` at ``x`` (weighted layers without storing the rule's tensors; see :func:`rule_vjp`)."""
        if self.kind == "weighted":
            return rule_vjp(self.module, self.rule, x, delta, self.gamma, self.signed)
        return norm_vjp(self.module, x, delta, self.rule)


def _factor(y: torch.Tensor, base: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``y / stabilize(base)`` and ``base ≥ 0`` (booleans; sign(0) = +1); ``base`` None means ``y``."""
    b = y if base is None else base
    positive = b >= 0
    den = positive.to(y.dtype).mul_(2.0 * eps).sub_(eps).add_(b)  # b ± ε, exactly as stabilize() adds it
    return den.reciprocal_().mul_(y), positive


#: Elements per chunk of the bookkeeping sums (a few MB of temporaries instead of full-size ones).
_CHUNK = 1 << 21


def _chunked_sum(a: torch.Tensor, b: torch.Tensor | None = None) -> float:
    """``Σ a ⊙ b`` (``Σ a`` without ``b``; same shape, ``b`` may be boolean), accumulated in float64 chunk by chunk:
    no full-size temporary (a float64 sum of the whole tensor would first copy it to float64)."""
    total = 0.0
    chunks = a.reshape(-1).split(_CHUNK)
    if b is None:
        return sum(float(pa.sum(dtype=torch.float64)) for pa in chunks)
    for pa, pb in zip(chunks, b.reshape(-1).split(_CHUNK)):
        total += float((pa * pb).sum(dtype=torch.float64))
    return total


def _record(rec: LayerRecord | None, delta: torch.Tensor, offset: torch.Tensor, positive: torch.Tensor, eps: float,
            m: torch.Tensor, y: torch.Tensor | None) -> None:
    """Add ``Σ δ (offset + ε·sign)`` (``δ = m ⊙ factor``) to what the layer absorbed, and ``Σ m ⊙ y`` to its
    relevance when ``y`` is given; sums by chunk or per channel, never with a full-size temporary."""
    if rec is None or m.is_meta:
        return
    total = _chunked_sum(delta)
    signed = 2.0 * _chunked_sum(delta, positive.expand_as(delta)) - total  # Σ δ·sign, sign = ±1
    if offset.numel() <= 1:
        absorbed = float(offset) * total
    elif delta.ndim == 2:  # a linear layer's (B, N) output
        absorbed = float((delta.double() * offset.double()).sum())
    elif offset.shape[2:] == (1,) * (delta.ndim - 2):  # one value per channel (and sample)
        off = offset.double().expand(delta.shape[:2] + (1,) * (delta.ndim - 2))
        absorbed = sum(_chunked_sum(delta[b, c]) * float(off[b, c].reshape(()))
                       for b in range(delta.shape[0]) for c in range(delta.shape[1]))
    else:
        absorbed = _chunked_sum(delta, offset.expand_as(delta))
    rec.absorbed += absorbed + eps * signed
    if y is not None:
        rec.relevance += _chunked_sum(m, y)


class StoredRelevance(torch.autograd.Function):
    """The modified gradient with its tensors computed in the forward pass and saved (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, y: torch.Tensor, base: torch.Tensor | None, offset: torch.Tensor,
                eps: float, record: LayerRecord | None, keep_relevance: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.record, ctx.eps, ctx.from_y, ctx.keep = record, eps, base is None, keep_relevance
        if base is None:
            ctx.save_for_backward(y, offset)
        else:
            factor, _ = _factor(y, base, eps)
            ctx.save_for_backward(factor, base >= 0, offset, *((y,) if keep_relevance else ()))
        return y.clone()  # a new tensor: networks add to a layer's output in place (residual blocks)

    @staticmethod
    def backward(ctx: Any, m: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        if ctx.from_y:
            y, offset = ctx.saved_tensors
            factor, positive = _factor(y, None, ctx.eps)
        else:
            factor, positive, offset, *rest = ctx.saved_tensors
            y = rest[0] if rest else None
        delta = m * factor
        _record(ctx.record, delta, offset, positive, ctx.eps, m, y if ctx.keep else None)
        return delta, None, None, None, None, None, None


class RecomputedRelevance(torch.autograd.Function):
    """The modified gradient saving only the layer's input; ``z``, ``y`` and the factor are rebuilt in the backward
    pass (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor, rule: LayerRule, record: LayerRecord | None,
                keep_relevance: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.rule, ctx.record, ctx.keep = rule, record, keep_relevance
        ctx.save_for_backward(x)
        return y.clone()

    @staticmethod
    def backward(ctx: Any, m: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        rule: LayerRule = ctx.rule
        with torch.no_grad():
            _z, y, base, offset = rule.terms(x.detach(), need_z=False)
            del _z
            if base is not None and rule.kind == "weighted" and rule.rule == "zplus":
                # z⁺ (+ b⁺) is never negative: den = base + ε, made in place of base (one tensor less at the peak)
                positive = torch.ones((), dtype=torch.bool, device=y.device).expand(y.shape)
                factor = base.add_(rule.eps).reciprocal_().mul_(y)
            else:
                factor, positive = _factor(y, base, rule.eps)
            del base
            delta = factor.mul_(m)
            _record(ctx.record, delta, offset, positive, rule.eps, m, y if ctx.keep else None)
            del y, positive
            gx = rule.input_gradient(x.detach(), delta)
        return gx, None, None, None, None
