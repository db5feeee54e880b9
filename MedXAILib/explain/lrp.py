"""Layer-wise Relevance Propagation (LRP) with rules per layer type, composites by name, and a conservation report.

Definitions
-----------
LRP (Bach et al., PLoS ONE 2015; Montavon et al., "Layer-wise relevance propagation: an overview", 2019) starts from
the explained score ``S = Σ W ⊙ logits`` with output relevance ``R_out = W ⊙ logits`` (so ``Σ R_out = S``) and sends it
back layer by layer. For a layer with pre-activations ``z_j = Σ_i x_i w_ij + b_j``:

- **ε** — ``R_i = Σ_j x_i w_ij R_j / (z_j + ε sign z_j)``; bias and ε absorb ``R_j (b_j + ε sign z_j) / (z_j + …)``.
- **z⁺** (α1β0) — only positive contributions ``(x_i w_ij)⁺``: ``x⁺`` with ``W⁺`` and ``x⁻`` with ``W⁻``; bias ignored
  by default (``bias=true`` keeps ``b⁺`` in the denominator, as Montavon et al. 2019 and zennit; it then absorbs
  relevance).
  Non-negative output relevance stays non-negative.
- **γ** (sign-aware) — for an output with ``z_j ≥ 0`` the positive contributions are boosted (``W + γW⁺`` on ``x⁺``,
  ``W + γW⁻`` on ``x⁻``), for ``z_j < 0`` the negative ones; bias ignored by default (``bias=true``: ``b + γb⁺``
  resp. ``b + γb⁻`` in the denominator). So ``|z_γ| ≥ |z|`` and the denominator
  never crosses 0 — the textbook γ rule (positive boost only) does on signed inputs such as InstanceNorm/PReLU
  outputs, which gave values ~1e6 × the score on a MONAI UNet. ``γ = 0`` gives LRP-0; for ``z ≥ 0`` and
  ``γ → ∞`` it tends to z⁺.
- **flat** — ``R_i = Σ_j R_j / n_j`` over each output's receptive field (input values ignored); first layer only.
- **w²** — ``R_i = Σ_j w_ij² R_j / Σ_i w_ij²``; first layer only.
- **z^B (box)** — ``x_i w_ij − l_i w⁺_ij − h_i w⁻_ij`` with the input bounded by ``l ≤ x ≤ h`` (default: each
  channel's min and max over the input); first layer only.

Composites (``composite`` parameter) assign rules by layer kind: ``first`` (the weighted layers reading the network
input), ``conv`` (Conv / ConvTranspose) and ``linear`` (fully connected):

=====================  ======  ======  ======
composite              first   conv    linear
=====================  ======  ======  ======
``epsilon``            ε       ε       ε
``epsilon-plus``       z⁺      z⁺      ε
``epsilon-plus-flat``  flat    z⁺      ε
``epsilon-gamma``      γ       γ       ε
``epsilon-gamma-box``  z^B     γ       ε
``gamma``              γ       γ       γ
``zplus``              z⁺      z⁺      z⁺
=====================  ======  ======  ======

A custom composite is written ``first=flat,conv=gamma,linear=epsilon``.

Other layers
------------
- **Canonisation**: a BatchNorm whose input is exactly a convolution's (or linear layer's) output is folded into it
  (eval-mode running statistics), on a private copy of the network; the fold is kept only if the logits do not move.
- **BatchNorm** (not foldable, e.g. DenseNet's pre-activation BN after a concatenation): an affine map with constant
  running statistics, ε rule; its shift absorbs relevance like a bias.
- **InstanceNorm / GroupNorm** depend on the input. ``norm_rule=centered`` (default; the conservative LayerNorm rule
  of Ali et al., ICML 2022): the standard deviation is a constant, the mean subtraction stays a linear map, so
  ``y = γ (x − μ(x)) / σ + β`` is linear in ``x`` apart from ``β`` → ε rule on it conserves relevance exactly when
  ``β = 0`` (MONAI's default, ``affine=False``). ``norm_rule=affine``: mean and standard deviation both constants,
  ``y = (γ/σ) x + (β − γμ/σ)``, ε rule; the input-dependent shift ``−γμ/σ`` then absorbs (or injects) relevance.
- **ReLU, LeakyReLU, PReLU**: identity for relevance (``R_z = R_y``). Smooth activations (ELU, GELU, SiLU, Tanh…):
  identity as well, through ``y/z``.
- **Residual add, concatenation, slicing, reshapes, padding**: the plain gradient. Because relevance is carried as
  ``R = t ⊙ m`` at every tensor ``t`` (``m`` a modified gradient), an add ``y = a + b`` splits ``R_y`` into
  ``a/(a+b)·R_y`` and ``b/(a+b)·R_y`` exactly, and a concatenation hands each branch its own channel slice — with no
  division, so nothing explodes where ``a + b ≈ 0``.
- **Max pooling**: winner takes all. **Average / adaptive average pooling, upsampling**: linear maps without bias
  (LRP-0 = plain gradient; exact conservation).

Implementation ("modified gradient", as zennit structures it, but without its gaps): every weighted or normalising
layer gets a forward hook that returns its output ``y`` through an autograd function (:mod:`.lrp_layers`) whose
backward pass computes ``m_x = ∂z_ruleᵀ (m_y ⊙ y / stab(z))`` — the forward value is unchanged, one autograd backward
runs the whole propagation and ``R_x = x ⊙ m_x``. The first layers' inputs are cut from the graph, and their rule
(flat, w², z^B need the raw output relevance) is applied explicitly afterwards.

Memory (``checkpoint``: ``auto``, ``true``, ``false``). Stored, the relevance pass keeps one tensor per layer more
than a gradient; on a full-size BraTS case (SegResNet at 4 × 240 × 240 × 160) that is about 17 GB. With
``checkpoint`` each rule layer keeps only its input and rebuilds its rule tensors when the backward pass reaches it
(:class:`~MedXAILib.explain.lrp_layers.RecomputedRelevance`, the rule's input gradient in closed form), and the
network's segments are checkpointed (:mod:`MedXAILib.explain.recompute`): two more forward passes, a third of the
memory. ``auto`` does it when the simulated pass would not fit the memory budget
(:func:`~MedXAILib.explain.recompute.memory_budget`); ``details["memory"]`` gives the plan and its estimate, which
``explain --dry-run`` prints before anything runs. The relevance is the same either way (tested against the
hand-computed rules).

Conservation
------------
``details["conservation"] = Σ R_input / S`` on the model grid. It is not exactly 1 because (a) ε-rule biases and
affine normalisation shifts absorb ``R_j b_j / z_j`` (reported per layer and in total as ``absorbed_share``); (b) ε
absorbs ``R_j ε / z_j``; (c) z⁺ / γ lose the relevance of outputs whose rule denominator is 0; (d) relevance given to
padding voxels (segmentation inputs are padded to the network's divisor) is cut away (``padding_share``).
``1 − conservation − absorbed_share − padding_share`` (``unexplained_share``) only holds float round-off. With zero
biases, folded BatchNorm, ``norm_rule=centered`` and ε ≤ 1e-9, conservation holds to 1e-3 (tested on MONAI UNet 2D/3D,
DenseNet and ResNet); with biases it is reported, not forced. The engine's linear resampling to the input grid does
not preserve sums, so conservation is computed before it.

Layers with no rule (attention, gating products, custom modules with their own parameters…) are refused: unknown leaf
modules before anything runs, unknown operations between modules (e.g. a product of two input-dependent tensors)
during the forward pass, before any relevance is computed; the message names the layer.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import MethodError
from ..models import Model
from ..targets import Target
from .base import ExplainContext, Method, MethodResult, register
from .lrp_layers import LayerRecord, LayerRule, RecomputedRelevance, StoredRelevance, norm_mode
from .lrp_rules import (
    BN_TYPES,
    NORM_TYPES,
    RATIO_TYPES,
    SUPPORTED_TEXT,
    WEIGHTED_TYPES,
    canonize,
    check_network,
    first_layer_relevance,
    resolve_composite,
    stabilize,
)
from .recompute import MemoryPlan, Recompute, checkpointed, parse_checkpoint, plan_memory


# ---- the propagation -------------------------------------------------------------------------------------------------
@dataclass
class _State:
    x: torch.Tensor
    depth: int = 0
    stack: list[str] = field(default_factory=list)
    first: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    first_names: set[str] = field(default_factory=set)
    records: list[LayerRecord] = field(default_factory=list)
    recompute: Recompute = field(default_factory=Recompute)
    layers: bool = False
    recompute_layers: bool = False


def _value(t: torch.Tensor) -> float:
    """A scalar tensor's value (0.0 for a ``meta`` tensor: memory simulations have no values)."""
    return 0.0 if t.is_meta else float(t)


def _input_dependent(a: Any) -> bool:
    return isinstance(a, torch.Tensor) and a.requires_grad


# operations allowed between modules (their plain gradient is a conservative relevance split or pass)
_PASS_OPS = {
    "add", "add_", "__add__", "__iadd__", "__radd__", "sub", "sub_", "__sub__", "__isub__", "__rsub__", "cat",
    "concat", "concatenate", "stack", "flatten", "view", "reshape", "contiguous", "__getitem__", "narrow", "squeeze",
    "unsqueeze", "permute", "transpose", "pad", "chunk", "split", "clone", "relu", "relu_", "leaky_relu", "prelu",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "interpolate", "upsample", "dropout", "dropout2d", "dropout3d", "mean", "sum", "to", "float", "double", "type_as",
    "expand", "expand_as", "view_as", "reshape_as", "movedim", "crop", "__neg__", "neg", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "max_pool1d_with_indices", "_max_pool1d", "_max_pool2d", "_max_pool3d", "unbind",
}
_SCALE_OPS = {"mul", "mul_", "__mul__", "__imul__", "__rmul__", "div", "div_", "__truediv__", "__itruediv__"}
_META_OPS = {
    "__get__", "size", "dim", "numel", "__len__", "is_floating_point", "is_complex", "__format__", "__repr__",
    "__bool__", "__iter__", "__setstate__", "__hash__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
    "item", "tolist", "detach_", "requires_grad_", "__contains__", "element_size", "nelement", "stride",
    "is_contiguous", "data_ptr", "get_device", "__index__", "__int__", "__float__", "ndimension", "untyped_storage",
}


class _OpCheck(TorchFunctionMode):
    """Refuse operations between modules that no rule covers (products of input-dependent tensors, softmax, …)."""

    def __init__(self, state: _State, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.state = state
        self.modules = modules

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.state.depth == 0:
            self._check(getattr(func, "__name__", str(func)), args, kwargs)
        return func(*args, **kwargs)

    def _check(self, name: str, args: Any, kwargs: Any) -> None:
        if name in _META_OPS or name in _PASS_OPS:
            return
        flat = list(args) + list(kwargs.values())
        tensors = [a for a in flat if isinstance(a, torch.Tensor)]
        for a in flat:
            if isinstance(a, (list, tuple)):
                tensors += [t for t in a if isinstance(t, torch.Tensor)]
        if not any(_input_dependent(t) for t in tensors):
            return  # arithmetic on constants only (shapes, masks)
        if name in _SCALE_OPS:
            dep = [_input_dependent(a) for a in args[:2]]
            if sum(dep) == 1 and not (name.startswith(("div", "__truediv", "__itruediv")) and dep[1:] == [True]):
                return
        where = self.state.stack[-1] if self.state.stack else "<network>"
        kind = type(self.modules.get(where, None)).__name__ if where in self.modules else "network"
        raise MethodError(
            f"lrp has no rule for layer {where!r} ({kind}); it computes {name} on input-dependent tensors, which no "
            f"LRP rule covers. {SUPPORTED_TEXT}"
        )


class LRP:
    """LRP on a (canonised) network. Build once, call :meth:`attribute` per input.

    Args:
        network: the canonised network (see :func:`canonize`); its parameters must not require grad.
        composite: rule per layer kind (``first``, ``conv``, ``linear``), see :func:`resolve_composite`.
        epsilon: the ε stabiliser (in the units of each layer's pre-activation). gamma: the γ of the γ rule.
        norm_rule: ``centered`` or ``affine`` (InstanceNorm / GroupNorm, see the module docstring).
        low, high: z^B bounds per input channel (``(C,)``), or None for the input's min / max.
        bias: keep the rule-modified bias in the z⁺ / γ denominators (the ``lrp_bias`` convention).
        signed_hints: layer name → whether its input can be negative; used only on ``meta`` tensors (memory
            simulations, :func:`signed_inputs`), where values are unknown.
    """

    def __init__(
        self, network: nn.Module, composite: dict[str, str], epsilon: float = 1e-6, gamma: float = 0.25,
        norm_rule: str = "centered", low: torch.Tensor | None = None, high: torch.Tensor | None = None,
        bias: bool = False, signed_hints: dict[str, bool] | None = None,
    ) -> None:
        if norm_rule not in ("centered", "affine"):
            raise MethodError(f"lrp: norm_rule must be centered or affine, got {norm_rule!r}")
        self.network = network
        self.composite = composite
        self.eps = float(epsilon)
        self.gamma = float(gamma)
        self.norm_rule = norm_rule
        self.low, self.high = low, high
        self.bias = bool(bias)
        self.signed_hints = dict(signed_hints or {})
        self.modules = dict(network.named_modules())

    # -- hooks
    @contextlib.contextmanager
    def _hooks(self, state: _State) -> Iterator[None]:
        handles = []
        for name, module in self.modules.items():
            leaf = next(iter(module.children()), None) is None
            if leaf:
                handles.append(module.register_forward_pre_hook(self._enter(state)))
                handles.append(module.register_forward_hook(self._leaf_hook(state, name)))
            else:
                handles.append(module.register_forward_pre_hook(self._push(state, name)))
                handles.append(module.register_forward_hook(self._pop(state)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @staticmethod
    def _push(state: _State, name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any) -> None:
            state.stack.append(name)
        return hook

    @staticmethod
    def _pop(state: _State) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any, _o: Any) -> None:
            state.stack.pop()
        return hook

    @staticmethod
    def _enter(state: _State) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any) -> None:
            state.depth += 1
        return hook

    def _leaf_hook(self, state: _State, name: str) -> Callable[..., Any]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            try:
                return self._apply(state, name, module, inputs[0] if inputs else None, output)
            finally:
                state.depth -= 1
        return hook

    def _kind(self, module: nn.Module) -> str:
        return "linear" if isinstance(module, nn.Linear) else "conv"

    def _apply(self, state: _State, name: str, module: nn.Module, x: Any, y: Any) -> Any:
        if not isinstance(y, torch.Tensor) or not isinstance(x, torch.Tensor) or not y.requires_grad:
            return None
        if isinstance(module, WEIGHTED_TYPES):
            recomputing = state.recompute.active
            if name in state.first_names if recomputing else x is state.x:
                # a first layer: cut here, apply its rule explicitly after the backward pass (the cut made while a
                # checkpointed segment is recomputed only rebuilds the graph the first forward made)
                leaf = y.detach().requires_grad_(True)
                if not recomputing:
                    state.first.append((name, module, x, leaf))
                    state.first_names.add(name)
                return leaf
            rule = LayerRule(module, "weighted", self.composite[self._kind(module)], self.eps, self.gamma, self.bias,
                             self.signed_hints.get(name))
            return self._modified(state, name, rule, x, y)
        if isinstance(module, NORM_TYPES):
            return self._modified(state, name, LayerRule(module, "norm", norm_mode(module, self.norm_rule), self.eps),
                                  x, y)
        if isinstance(module, RATIO_TYPES):
            ratio = (y / stabilize(x, self.eps)).detach()
            return y.detach() + (x - x.detach()) * ratio
        return None  # gradient pass

    def _modified(self, state: _State, name: str, rule: LayerRule, x: torch.Tensor, y: torch.Tensor
                  ) -> torch.Tensor:
        """The layer's output with its modified gradient (:mod:`.lrp_layers`), stored or recomputed."""
        rec = None
        if not state.recompute.active:
            rec = LayerRecord(name, type(rule.module).__name__, rule.label)
            state.records.append(rec)
        if state.recompute_layers:
            return RecomputedRelevance.apply(x, y.detach(), rule, rec, state.layers)
        z, yd, base, offset = rule.terms(x, y)
        return StoredRelevance.apply(z, yd, base, offset, self.eps, rec, state.layers)

    # -- run
    def attribute(
        self, x: torch.Tensor, score_fn: Callable[[torch.Tensor], torch.Tensor], support: torch.Tensor | None = None,
        segments: list[str] | None = None, layers: bool = True, recompute_layers: bool | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Input relevance for ``score_fn(network(x))``.

        Args:
            x: ``(1, C, *grid)`` input (already padded for the network).
            score_fn: logits → ``(1,)`` score (a weighted sum of logits, so ``R_out = W ⊙ logits``).
            support: ``(1, C, *grid)`` 1 on real voxels, 0 on padding (see :func:`first_layer_relevance`); None: all
                real.
            segments: modules of the network to checkpoint (:mod:`MedXAILib.explain.recompute`): their rule
                tensors are recomputed during the relevance pass instead of stored.
            layers: record the relevance reaching each layer's output (one more saved tensor per layer); the
                relevance each layer absorbs is always recorded.
            recompute_layers: save only each layer's input and rebuild its rule tensors in the backward pass
                (:class:`~MedXAILib.explain.lrp_layers.RecomputedRelevance`); default: when ``segments`` are given.

        Returns:
            ``R`` shaped like ``x`` and a details dict (score, per-layer sums, absorbed relevance).
        """
        # a plain tensor: a subclass (MONAI's MetaTensor) wraps every result, custom autograd functions' included
        x = x.detach().as_subclass(torch.Tensor)
        xin = x.clone().requires_grad_(True)
        state = _State(x=xin, layers=layers,
                       recompute_layers=bool(segments) if recompute_layers is None else recompute_layers)
        # the hooks stay on through the backward pass: a checkpointed segment reruns its forward (hooks included)
        with checkpointed(self.network, list(segments or [])) as recompute, self._hooks(state), torch.enable_grad():
            state.recompute = recompute
            with _OpCheck(state, self.modules):
                logits = self.network(xin)
            s = score_fn(logits).sum()
            del logits
            leaves = [f[3] for f in state.first]
            grads = torch.autograd.grad(s, [xin] + leaves, allow_unused=True)
        rel = torch.zeros_like(x) if grads[0] is None else (x * grads[0]).detach()
        first_records = []
        low, high = self._bounds(x)
        for (name, module, xi, leaf), m in zip(state.first, grads[1:]):
            r_out = leaf.detach() * (torch.zeros_like(leaf) if m is None else m)
            rule = self.composite["first"]
            r_in, absorbed = first_layer_relevance(module, rule, xi, r_out, self.eps, self.gamma, low, high, support,
                                                   self.bias)
            rel = rel + r_in
            first_records.append(LayerRecord(name, type(module).__name__, f"{rule} (first)", _value(r_out.sum()),
                                              _value(absorbed)))
        records = state.records + first_records
        details = {
            "score": _value(s.detach()),
            "first_layers": [r.name for r in first_records],
            "layers": [{"name": r.name, "type": r.kind, "rule": r.rule, "relevance": r.relevance,
                        "absorbed": r.absorbed} for r in records],
            "absorbed": float(sum(r.absorbed for r in records)),
        }
        return rel, details

    def _bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        dims = (0,) + tuple(range(2, x.ndim))
        low = self.low.reshape(shape).to(x) if self.low is not None else x.amin(dims, keepdim=True)
        high = self.high.reshape(shape).to(x) if self.high is not None else x.amax(dims, keepdim=True)
        return low.detach(), high.detach()


def conservation_report(rel: torch.Tensor, details: dict[str, Any], real: torch.Tensor | None) -> dict[str, Any]:
    """Add ``conservation``, ``absorbed_share``, ``padding_share``, ``unexplained_share`` and the peak ratio."""
    s = details["score"]
    total = float(rel.sum())
    inside = float((rel * real).sum()) if real is not None else total
    scale = s if abs(s) > 1e-30 else float("nan")
    out = dict(details)
    out.update({
        "input_relevance_sum": inside,
        "conservation": inside / scale,
        "absorbed_share": details["absorbed"] / scale,
        "padding_share": (total - inside) / scale,
        "unexplained_share": 1.0 - total / scale - details["absorbed"] / scale,
        "max_abs_relevance_over_score": float(rel.abs().max()) / abs(scale),
    })
    return out


def lrp_relevance(
    network: nn.Module, x: torch.Tensor, score_fn: Callable[[torch.Tensor], torch.Tensor],
    composite: str = "epsilon-plus-flat", epsilon: float = 1e-6, gamma: float = 0.25, norm_rule: str = "centered",
    divisor: int | tuple[int, ...] = 1, canonise: bool = True, bias: bool = False, checkpoint: str = "false",
    segments: list[str] | None = None, layers: bool = True,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """LRP relevance of ``score_fn(network(x))`` w.r.t. ``x`` — the whole pipeline, for tests and scripts.

    Args:
        network: any supported network (it is copied, never modified).
        x: ``(1, C, *grid)`` input. divisor: zero-pad the grid at its end to a multiple of this (cropped after);
            one value per spatial axis when given as a tuple (e.g. nnU-Net's anisotropic strides).
        score_fn: logits → ``(1,)``.
        checkpoint: ``auto`` / ``true`` / ``false``: plan the relevance pass's memory and recompute network segments
            instead of storing them (:func:`lrp_memory_plan`); ``segments`` names them directly instead.
        layers: record the relevance reaching every layer (``details["layers"]``).

    Returns:
        ``R`` ``(1, C, *grid)`` and details with the conservation report (and ``memory``, the plan, when planned).
    """
    check_network(network)
    spatial = tuple(x.shape[2:])
    divs = tuple(divisor) if isinstance(divisor, (tuple, list)) else (int(divisor),) * len(spatial)
    pads = [(-s) % d for s, d in zip(spatial, divs)]
    xp = x
    if any(pads):
        flat: list[int] = []
        for p in reversed(pads):
            flat.extend([0, p])
        xp = F.pad(x, flat)
    crop = (slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)
    real = torch.zeros_like(xp[:, :1])
    real[crop] = 1
    if canonise:
        net, folded, n_fwd = canonize(network, xp.detach())
    else:
        net, folded, n_fwd = copy.deepcopy(network).eval().requires_grad_(False), [], 0
    dims = (0,) + tuple(range(2, x.ndim))
    low, high = x.detach().amin(dims), x.detach().amax(dims)  # z^B bounds: each channel's range on real voxels
    memory = None
    if segments is None and parse_checkpoint(checkpoint) != "false":
        memory = lrp_memory_plan(net, tuple(xp.shape[1:]), composite, epsilon, gamma, norm_rule, bias, checkpoint,
                                 layers)
        segments = memory.segments
    engine = LRP(net, resolve_composite(composite), epsilon, gamma, norm_rule, low, high, bias)
    # flat / w² spread relevance over padding voxels too (they are network inputs); it shows as padding_share
    rel, details = engine.attribute(xp, lambda logits: score_fn(logits[crop]) if any(pads) else score_fn(logits),
                                    support=real.expand_as(xp), segments=segments, layers=layers,
                                    recompute_layers=memory.checkpoint if memory is not None else None)
    details = conservation_report(rel, details, real)
    if memory is not None:
        details["memory"] = memory.describe()
    details.update({"folded_batchnorms": folded, "canonisation_forward_passes": n_fwd})
    return rel[crop].detach(), details


def lrp_memory_plan(
    network: nn.Module, shape: tuple[int, ...], composite: str = "epsilon-plus-flat", epsilon: float = 1e-6,
    gamma: float = 0.25, norm_rule: str = "centered", bias: bool = False, checkpoint: str = "auto",
    layers: bool = True,
) -> MemoryPlan:
    """Whether one relevance pass of the (canonised) ``network`` on a ``(1, *shape)`` input is checkpointed, and
    its simulated memory (:func:`~MedXAILib.explain.recompute.plan_memory`; the pass runs on ``meta`` tensors)."""
    rules = resolve_composite(composite)
    hints = signed_inputs(network, shape)

    def pass_on(net: nn.Module, batch: int, segments: list[str] | None) -> Any:
        x = torch.empty((batch,) + tuple(shape), device="meta")
        engine = LRP(net, rules, epsilon, gamma, norm_rule, None, None, bias, hints)
        return engine.attribute(x, lambda logits: logits.flatten(1).sum(1), segments=segments or [], layers=layers,
                                recompute_layers=segments is not None)

    # beside the pass: the relevance accumulator of the window grid, the window's input and its padding mask
    extra = 3 * int(torch.Size(shape).numel()) * 4
    return plan_memory(network, pass_on, parse_checkpoint(checkpoint), 1, extra_bytes=extra)


def signed_inputs(network: nn.Module, shape: tuple[int, ...], size: int = 32) -> dict[str, bool]:
    """Whether each weighted layer's input has negative values, from one forward pass on a small standard-normal
    input ``(1, C, min(s, size)…)`` (a layer after a ReLU never does, whatever the input). Memory simulations use it
    to count the z⁺ / γ rules' clamps of ``x`` only where they are made. Empty when the network refuses the size."""
    found: dict[str, bool] = {}
    handles = []

    def probe(name: str) -> Any:
        def hook(_m: nn.Module, inputs: Any) -> None:
            if inputs and isinstance(inputs[0], torch.Tensor):
                found[name] = found.get(name, False) or bool((inputs[0] < 0).any())
        return hook

    for name, m in network.named_modules():
        if isinstance(m, WEIGHTED_TYPES):
            handles.append(m.register_forward_pre_hook(probe(name)))
    x = torch.randn((1, shape[0]) + tuple(min(int(s), size) for s in shape[1:]),
                    generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            network(x.to(next(network.parameters()).device))
    except Exception:  # a network that needs its own input size: no hints (the simulation counts every clamp)
        return {}
    finally:
        for h in handles:
            h.remove()
    return found


# ---- the registered method -------------------------------------------------------------------------------------------
@register
class LayerwiseRelevancePropagation(Method):
    """LRP with per-layer-type rules; see the module docstring."""

    name = "lrp"
    title = "Layer-wise Relevance Propagation"
    reference = "Bach et al., PLoS ONE 2015; Montavon et al., 2019"
    display = "signed"
    params = {"composite": "epsilon-plus-flat", "epsilon": 1e-6, "gamma": 0.25, "norm_rule": "centered",
              "per_channel": True, "layers": False, "bias": False, "checkpoint": "auto"}
    cost_model = ("1 forward + 1 backward (modified rules, ~2× a gradient), +2 forwards to fold BatchNorms, "
                  "+1 forward of the checkpointed segments when checkpointed")

    def check(self, model: Model, target: Target, params: dict[str, Any]) -> None:
        super().check(model, target, params)
        resolve_composite(str(params.get("composite", self.params["composite"])))
        parse_checkpoint(params.get("checkpoint", "auto"))
        check_network(model.network)
        if getattr(model, "is_2d_config", False):
            raise MethodError(
                "lrp does not support nnU-Net 2d configurations (a 2D network run slice by slice); use gradcam, ig or "
                "occlusion, or the model's 3d_fullres folder"
            )

    def passes(self, model: Model, prepared: Any, params: dict[str, Any]) -> tuple[int, int]:
        has_bn = any(isinstance(m, BN_TYPES) for m in model.network.modules())
        return (3 if has_bn else 1, 1)

    def memory_plan(self, ctx: ExplainContext, params: dict[str, Any]) -> MemoryPlan:
        """How one relevance pass will run (window or whole grid; for ``--dry-run``), on the uncanonised network
        (folding BatchNorms changes no activation size)."""
        model = ctx.model
        plan = model.window_plan(tuple(ctx.x.shape[2:])) if ctx.exact else None
        x = ctx.x if plan is None else ctx.x.new_empty((1, ctx.x.shape[1]) + tuple(plan.roi), device="meta")
        return lrp_memory_plan(
            model.network, _padded_shape(x, self._divisor(ctx)), str(params["composite"]), float(params["epsilon"]),
            float(params["gamma"]), str(params["norm_rule"]), bool(params["bias"]),
            parse_checkpoint(params["checkpoint"]), bool(params.get("layers")))

    @staticmethod
    def _divisor(ctx: ExplainContext) -> int | tuple[int, ...]:
        model = ctx.model
        if model.task != "segmentation":
            return 1
        if hasattr(model, "axis_divisors"):
            return tuple(model.axis_divisors(ctx.x.ndim - 2))
        return model.divisor()

    def run(self, ctx: ExplainContext, params: dict[str, Any]) -> MethodResult:
        model = ctx.model
        ctx.progress(0.1, "lrp: canonising and propagating relevance")
        div = self._divisor(ctx)
        plan = model.window_plan(tuple(ctx.x.shape[2:])) if getattr(ctx, "exact", False) else None
        if plan is not None:
            rel, details = self._relevance_by_window(ctx, params, plan, div)
        else:
            rel, details = lrp_relevance(
                model.network, ctx.x, ctx.score_of_logits, composite=str(params["composite"]),
                epsilon=float(params["epsilon"]), gamma=float(params["gamma"]), norm_rule=str(params["norm_rule"]),
                divisor=div, bias=bool(params["bias"]), checkpoint=parse_checkpoint(params["checkpoint"]),
                layers=bool(params.get("layers")),
            )
            ctx.forward_passes += 1 + int(details.pop("canonisation_forward_passes"))
            ctx.count_backward()
        if not params.get("layers"):
            details.pop("layers", None)
        details["composite"] = resolve_composite(str(params["composite"]))
        details["rule_bias"] = bool(params["bias"])
        maps = rel[0] if params.get("per_channel", True) else rel[0].sum(0, keepdim=True)
        return MethodResult(maps, per_channel=bool(params.get("per_channel", True)), details=details)

    def _relevance_by_window(
        self, ctx: ExplainContext, params: dict[str, Any], plan: Any, div: int | tuple[int, ...]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """LRP of a sliding-window function: each window's relevance for its share ``S_w`` of the score, summed at
        its position (:mod:`MedXAILib.explain.windows`); conservation is then reported on the whole function."""
        from ..targets import score
        from .windows import window_targets

        targets = window_targets(ctx, plan)
        rel = torch.zeros((1, ctx.x.shape[1]) + plan.padded, device=ctx.x.device)
        total, absorbed = 0.0, 0.0
        folded: list[str] = []
        net = ctx.model.network
        segments: list[str] = []
        memory = None
        if targets:  # canonise once (on the first window), then every window uses the same folded copy
            net, folded, n_fwd = canonize(net, targets[0].x.detach())
            ctx.forward_passes += n_fwd
            memory = lrp_memory_plan(
                net, _padded_shape(targets[0].x, div), str(params["composite"]), float(params["epsilon"]),
                float(params["gamma"]), str(params["norm_rule"]), bool(params["bias"]),
                parse_checkpoint(params["checkpoint"]), bool(params.get("layers")))
            segments = memory.segments
        for n, wt in enumerate(targets):
            ctx.progress(0.1 + 0.85 * n / max(len(targets), 1), f"lrp: window {n + 1} of {len(targets)}")
            # a model with test-time mirroring (nnU-Net) averages its passes over flipped inputs: each pass gets
            # 1/P of the window's target, flipped like its input, and its relevance is flipped back
            passes = ctx.model.tta_passes() if hasattr(ctx.model, "tta_passes") else [()]
            for axes in passes:
                dims = [a + 2 for a in axes]
                fx = torch.flip(wt.x, dims) if dims else wt.x
                fw = (torch.flip(wt.weights, dims) if dims else wt.weights) / len(passes)
                r, det = lrp_relevance(
                    net, fx, lambda logits, w=fw: score(logits, w),
                    composite=str(params["composite"]), epsilon=float(params["epsilon"]),
                    gamma=float(params["gamma"]), norm_rule=str(params["norm_rule"]), divisor=div, canonise=False,
                    bias=bool(params["bias"]), segments=segments, layers=bool(params.get("layers")),
                )
                rel[(slice(None), slice(None)) + wt.slices] += torch.flip(r, dims) if dims else r
                total += float(det["score"])
                absorbed += float(det["absorbed"])
                ctx.forward_passes += 1
                ctx.count_backward()
        crop = (slice(None), slice(None)) + tuple(slice(a, a + g) for g, (a, _) in zip(plan.grid, plan.pad))
        real = torch.zeros_like(rel[:, :1])
        real[crop] = 1
        details = conservation_report(rel, {"score": total, "absorbed": absorbed}, real)
        details.update({"windows_explained": len(targets), "windows": len(plan.slices), "folded_batchnorms": folded})
        if memory is not None:
            details["memory"] = memory.describe()
        return rel[crop].detach(), details


def _padded_shape(x: torch.Tensor, divisor: int | tuple[int, ...]) -> tuple[int, ...]:
    """``(C, *grid)`` of ``x`` ``(1, C, *grid)`` zero-padded at the end to a multiple of ``divisor`` per axis."""
    spatial = tuple(int(s) for s in x.shape[2:])
    divs = tuple(divisor) if isinstance(divisor, (tuple, list)) else (int(divisor),) * len(spatial)
    return (int(x.shape[1]),) + tuple(s + (-s) % d for s, d in zip(spatial, divs))
