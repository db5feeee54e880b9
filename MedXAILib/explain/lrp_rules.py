"""LRP's building blocks: which layers it knows, the rules and composites by name, canonisation (BatchNorm
folding into the preceding layer) and each rule's modified forward pass (see :mod:`.lrp` for the propagation)."""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import MethodError

# ---- layer kinds -----------------------------------------------------------------------------------------------------
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONVT_TYPES: tuple[type[nn.Module], ...] = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
WEIGHTED_TYPES = CONV_TYPES + CONVT_TYPES + (nn.Linear,)
BN_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
IN_TYPES: tuple[type[nn.Module], ...] = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
NORM_TYPES = BN_TYPES + IN_TYPES + (nn.GroupNorm,)
# relevance passes by the plain gradient (piecewise linear through 0, linear without bias, or selection)
GRADIENT_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.Flatten, nn.Unflatten, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.PixelShuffle, nn.PixelUnshuffle,
)
# element-wise activations: identity for relevance through y / z
RATIO_TYPES: tuple[type[nn.Module], ...] = (
    nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.Tanh, nn.Hardtanh, nn.ReLU6, nn.Hardswish,
)
SUPPORTED_TEXT = (
    "LRP rules exist for Conv/ConvTranspose/Linear, BatchNorm/InstanceNorm/GroupNorm, ReLU-family and element-wise "
    "activations, pooling, upsampling, dropout, flatten, and residual adds / concatenations between them"
)

RULES = ("epsilon", "zplus", "gamma", "flat", "wsquare", "zbox")
FIRST_ONLY = ("flat", "wsquare", "zbox")
_RULE_ALIASES = {"eps": "epsilon", "plus": "zplus", "z+": "zplus", "alpha1beta0": "zplus", "box": "zbox",
                 "w2": "wsquare", "w^2": "wsquare"}
COMPOSITES: dict[str, dict[str, str]] = {
    "epsilon": {"first": "epsilon", "conv": "epsilon", "linear": "epsilon"},
    "epsilon-plus": {"first": "zplus", "conv": "zplus", "linear": "epsilon"},
    "epsilon-plus-flat": {"first": "flat", "conv": "zplus", "linear": "epsilon"},
    "epsilon-gamma": {"first": "gamma", "conv": "gamma", "linear": "epsilon"},
    "epsilon-gamma-box": {"first": "zbox", "conv": "gamma", "linear": "epsilon"},
    "gamma": {"first": "gamma", "conv": "gamma", "linear": "gamma"},
    "zplus": {"first": "zplus", "conv": "zplus", "linear": "zplus"},
}


def resolve_composite(text: str) -> dict[str, str]:
    """A composite name (see the module docstring) or ``first=…,conv=…,linear=…`` → rule per layer kind."""
    name = text.strip().lower()
    if name in COMPOSITES:
        return dict(COMPOSITES[name])
    if "=" not in name:
        raise MethodError(f"lrp: unknown composite {text!r}; known: {', '.join(COMPOSITES)} or first=…,conv=…,linear=…")
    out = dict(COMPOSITES["epsilon"])
    for part in name.split(","):
        key, _, rule = part.partition("=")
        key, rule = key.strip(), _RULE_ALIASES.get(rule.strip(), rule.strip())
        if key not in out:
            raise MethodError(f"lrp: composite key {key!r} is not one of first, conv, linear")
        if rule not in RULES:
            raise MethodError(f"lrp: unknown rule {rule!r}; rules: {', '.join(RULES)}")
        if rule in FIRST_ONLY and key != "first":
            raise MethodError(f"lrp: rule {rule!r} is for the first layer only")
        out[key] = rule
    return out


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + ε·sign(z)`` with ``sign(0) = +1`` (never 0 for ε > 0)."""
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


# ---- static check ----------------------------------------------------------------------------------------------------
def unsupported_layers(network: nn.Module) -> list[tuple[str, str]]:
    """``(name, type)`` of every module no rule covers: unknown leaves, and containers holding their own parameters."""
    known = WEIGHTED_TYPES + NORM_TYPES + GRADIENT_TYPES + RATIO_TYPES
    bad: list[tuple[str, str]] = []
    for name, module in network.named_modules():
        leaf = next(iter(module.children()), None) is None
        if isinstance(module, known):
            continue
        own_params = any(p is not None for p in module._parameters.values())
        if leaf and (own_params or type(module).forward is not nn.Module.forward):
            # a parameter-free leaf with a custom forward is still unknown arithmetic
            bad.append((name or "<network>", type(module).__name__))
        elif not leaf and own_params:
            bad.append((name or "<network>", type(module).__name__))
    return bad


def check_network(network: nn.Module) -> None:
    """Refuse, before running, a network with a layer no LRP rule covers (the first such layer is named)."""
    if isinstance(network, torch.jit.ScriptModule):
        raise MethodError("lrp needs module hooks, which TorchScript models do not support; load a state_dict model")
    bad = unsupported_layers(network)
    if bad:
        name, kind = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise MethodError(f"lrp has no rule for layer {name!r} ({kind}){more}; {SUPPORTED_TEXT}")


# ---- canonisation ----------------------------------------------------------------------------------------------------
def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _fold(layer: nn.Module, bn: nn.Module) -> None:
    """Fold an eval-mode BatchNorm into the conv / linear layer that feeds it (in place)."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
    w = layer.weight.data
    layer.weight.data = w * scale.reshape((-1,) + (1,) * (w.ndim - 1)).to(w.dtype)
    b = layer.bias.data if layer.bias is not None else torch.zeros_like(scale)
    layer.bias = nn.Parameter((b * scale + shift).to(w.dtype).detach())


def canonize(network: nn.Module, x: torch.Tensor) -> tuple[nn.Module, list[str], int]:
    """A private eval-mode copy of ``network`` with BatchNorms folded into the layer feeding them.

    A pair is folded when the BatchNorm (running statistics) reads exactly the conv / linear output in a forward pass
    on ``x`` and each module runs once; the fold is kept only if the logits do not move (max |Δ| ≤ 1e-4 · max |y|).

    Returns:
        the copy, the folded BatchNorm names, and the forward passes spent (0 when there is no BatchNorm).
    """
    net = copy.deepcopy(network).eval()
    for m in net.modules():
        if hasattr(m, "inplace") and isinstance(m.inplace, bool):
            m.inplace = False  # in-place ops would overwrite tensors the modified backward needs
        for p in m.parameters(recurse=False):
            p.requires_grad_(False)
    bns = {n: m for n, m in net.named_modules() if isinstance(m, BN_TYPES) and m.track_running_stats
           and m.running_mean is not None}
    if not bns:
        return net, [], 0
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    handles = []

    def keep_output(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, torch.Tensor):
                outputs[id(out)] = (name, out)
        return hook

    def find_source(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, inputs: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            src = outputs.get(id(inputs[0])) if inputs else None
            if src is not None and src[1] is inputs[0]:
                pairs.append((src[0], name))
        return hook

    for n, m in net.named_modules():
        if isinstance(m, CONV_TYPES + (nn.Linear,)):
            handles.append(m.register_forward_hook(keep_output(n)))
        elif n in bns:
            handles.append(m.register_forward_pre_hook(find_source(n)))
    try:
        with torch.no_grad():
            before = net(x)
    finally:
        for h in handles:
            h.remove()
    outputs.clear()
    pairs = [(c, b) for c, b in pairs if calls.get(c) == 1 and calls.get(b) == 1]
    if not pairs:
        return net, [], 1
    folded = copy.deepcopy(net)
    for conv_name, bn_name in pairs:
        _fold(folded.get_submodule(conv_name), folded.get_submodule(bn_name))
        _set_module(folded, bn_name, nn.Identity())
    with torch.no_grad():
        after = folded(x)
    if (after - before).abs().max() > 1e-4 * max(float(before.abs().max()), 1.0):
        return net, [], 2
    return folded, [b for _, b in pairs], 2


# ---- rule forwards ---------------------------------------------------------------------------------------------------
def _linear_op(module: nn.Module, like: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The module's linear map with a given weight and no bias: ``op(x, w)`` (slab by slab when nothing needs its
    gradient and the output is large, see :func:`conv_by_slab`)."""
    if isinstance(module, CONV_TYPES):
        def conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            if _sliceable(module) and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)):
                return conv_by_slab(module, x, w)
            return module._conv_forward(x, w, None)  # type: ignore[operator]
        return conv
    if isinstance(module, CONVT_TYPES):
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[module.weight.ndim - 2]

        def convt(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            out = fn(x, w, None, module.stride, module.padding, module.output_padding, module.groups, module.dilation)
            if out.shape[2:] != like.shape[2:]:
                raise MethodError("lrp: a ConvTranspose called with output_size is not supported")
            return out
        return convt
    return lambda x, w: F.linear(x, w)


def rule_forward(
    module: nn.Module, rule: str, x: torch.Tensor, y: torch.Tensor, gamma: float, signed: bool | None = None,
) -> torch.Tensor:
    """``z_rule(x)``: the rule's modified pre-activation (no bias), differentiable in ``x`` (ε, z⁺, γ).

    ``signed``: whether ``x`` has negative values; computed from ``x`` when None (on a ``meta`` tensor, a memory
    simulation, it is the hint given or else True)."""
    op = _linear_op(module, y)
    w = module.weight
    if rule == "epsilon":
        return op(x, w)
    signed = _signed(x, signed)
    # x ≥ 0 (after a ReLU): x⁺ is x itself, and no copy of it is made (a convolution saves its input)
    xp, xn = (x.clamp(min=0), x.clamp(max=0)) if signed else (x, x)

    def split(w_pos_in: torch.Tensor, w_neg_in: torch.Tensor) -> torch.Tensor:
        out = op(xp, w_pos_in)
        return out + op(xn, w_neg_in) if signed else out

    pairs = rule_weights(w, rule, gamma)
    if rule == "zplus":
        return split(*pairs[0])
    # sign-aware γ: boost the contributions that share the output's sign, so |z_γ| ≥ |z| never crosses 0
    up, down = split(*pairs[0]), split(*pairs[1])
    z = op(x, w).detach()
    return torch.where(z >= 0, up, down)


def _signed(x: torch.Tensor, hint: bool | None) -> bool:
    if x.is_meta:
        return True if hint is None else bool(hint)
    return bool((x < 0).any())


def rule_weights(w: torch.Tensor, rule: str, gamma: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(weight on x⁺, weight on x⁻)`` pairs of a rule: z⁺ one pair; sign-aware γ the pair for outputs
    ``z ≥ 0`` and the pair for ``z < 0``."""
    wpos, wneg = w.clamp(min=0), w.clamp(max=0)
    if rule == "zplus":
        return [(wpos, wneg)]
    if rule != "gamma":
        raise MethodError(f"lrp: rule {rule!r} is for the first layer only")
    return [(w + gamma * wpos, w + gamma * wneg), (w + gamma * wneg, w + gamma * wpos)]


def linear_vjp(module: nn.Module, w: torch.Tensor, delta: torch.Tensor, x_shape: tuple[int, ...]) -> torch.Tensor:
    """``∂op(x, w)/∂xᵀ δ`` for the module's linear map (no bias): a transposed convolution for a Conv (no forward
    pass, nothing saved), ``δ W`` for a Linear, autograd of the map for the rest."""
    nd = len(x_shape) - 2
    if isinstance(module, CONV_TYPES) and getattr(module, "padding_mode", "zeros") == "zeros" \
            and not isinstance(module.padding, str):
        fn = {1: torch.nn.grad.conv1d_input, 2: torch.nn.grad.conv2d_input, 3: torch.nn.grad.conv3d_input}[nd]
        if delta.numel() > VJP_SLAB_ELEMENTS and _sliceable(module):
            return _conv_vjp_by_slab(fn, module, w, delta, x_shape)
        return fn(x_shape, w, delta, module.stride, module.padding, module.dilation, module.groups)
    if isinstance(module, nn.Linear):
        return delta @ w
    op = _linear_op(module, delta)
    with torch.enable_grad():
        u = torch.zeros(x_shape, dtype=delta.dtype, device=delta.device, requires_grad=True)
        (g,) = torch.autograd.grad(op(u, w), u, delta)
    return g


#: A convolution's input gradient over more output elements than this is computed in slabs along the first spatial
#: axis: oneDNN's working copies then hold a slab, not the whole tensor (two output-sized copies on a full case).
VJP_SLAB_ELEMENTS = 1 << 24


def _sliceable(module: nn.Module) -> bool:
    return (isinstance(module, CONV_TYPES) and getattr(module, "padding_mode", "zeros") == "zeros"
            and not isinstance(module.padding, str) and module.stride[0] == 1 and module.dilation[0] == 1)


def conv_by_slab(module: nn.Module, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """``module``'s convolution of ``x`` with weight ``w`` (stride 1 along the first spatial axis), computed in slabs
    of that axis when the output holds more than :data:`VJP_SLAB_ELEMENTS` values (each slab reads its rows of the
    zero-padded input), so oneDNN's working copies hold a slab; the same values as one call."""
    nd = x.ndim - 2
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    k, p = int(w.shape[2]), int(module.padding[0])
    n_in = int(x.shape[2])
    n_out = n_in + 2 * p - k + 1
    row = int(x.shape[0]) * int(w.shape[0]) * int(torch.Size(x.shape[3:]).numel())
    if n_out * row <= VJP_SLAB_ELEMENTS:
        return fn(x, w, bias, module.stride, module.padding, module.dilation, module.groups)
    step = max(1, VJP_SLAB_ELEMENTS // max(row, 1))
    padding = (0,) + tuple(module.padding[1:])
    out = x.new_empty((x.shape[0], w.shape[0], n_out) + tuple(
        (s + 2 * q - (kk - 1) - 1) // st + 1 for s, q, kk, st in zip(x.shape[3:], module.padding[1:], w.shape[3:],
                                                                     module.stride[1:])))
    for lo in range(0, n_out, step):
        hi = min(n_out, lo + step)
        a, b = lo - p, hi + k - 1 - p
        xs = x[:, :, max(a, 0) : min(b, n_in)]
        if a < 0 or b > n_in:
            xs = F.pad(xs, [0, 0] * (nd - 1) + [max(0, -a), max(0, b - n_in)])
        out[:, :, lo:hi] = fn(xs, w, bias, module.stride, padding, module.dilation, module.groups)
    return out


def layer_output(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` without its hooks; a large stride-1 convolution outside autograd runs by slab."""
    if _sliceable(module) and not torch.is_grad_enabled():
        return conv_by_slab(module, x, module.weight, module.bias)
    return module.forward(x)


def _conv_vjp_by_slab(fn: Callable[..., torch.Tensor], module: nn.Module, w: torch.Tensor, delta: torch.Tensor,
                      x_shape: tuple[int, ...]) -> torch.Tensor:
    """The input gradient of a stride-1 convolution, slab by slab along its first spatial axis.

    Along that axis the convolution is 'valid' on the zero-padded input: output ``o`` reads padded inputs
    ``o … o + k − 1``, so a slab of outputs ``[lo, hi)`` sends its gradient to padded inputs ``[lo, hi + k − 1)``;
    the slabs' gradients are added there, and the padding ``p`` is cropped at the end. Exact up to float rounding.
    """
    k, p = int(w.shape[2]), int(module.padding[0])
    n_out = int(delta.shape[2])
    step = max(1, VJP_SLAB_ELEMENTS // max(1, delta[:, :, :1].numel()))
    full = torch.zeros((x_shape[0], x_shape[1], n_out + k - 1) + tuple(x_shape[3:]), dtype=delta.dtype,
                       device=delta.device)
    padding = (0,) + tuple(module.padding[1:])
    for lo in range(0, n_out, step):
        hi = min(n_out, lo + step)
        shape = (x_shape[0], x_shape[1], hi - lo + k - 1) + tuple(x_shape[3:])
        full[:, :, lo : hi + k - 1] += fn(shape, w, delta[:, :, lo:hi], module.stride, padding, module.dilation,
                                           module.groups)
    return full[:, :, p : p + int(x_shape[2])]


def rule_vjp(
    module: nn.Module, rule: str, x: torch.Tensor, delta: torch.Tensor, gamma: float, signed: bool | None = None,
) -> torch.Tensor:
    """``∂z_rule/∂xᵀ δ`` — the gradient :func:`rule_forward` would give through autograd, without storing the
    rule's intermediate tensors (the clamps of ``x``)."""
    w = module.weight.detach()
    shape = tuple(x.shape)
    if rule == "epsilon":
        return linear_vjp(module, w, delta, shape)
    signed = _signed(x, signed)

    def split_vjp(pair: tuple[torch.Tensor, torch.Tensor], d: torch.Tensor) -> torch.Tensor:
        g = linear_vjp(module, pair[0], d, shape)
        if not signed:
            return g
        g.mul_(x >= 0)  # clamp(min=0) passes the gradient where x ≥ 0, clamp(max=0) where x ≤ 0
        return g.add_(linear_vjp(module, pair[1], d, shape).mul_(x <= 0))

    pairs = rule_weights(w, rule, gamma)
    if rule == "zplus":
        return split_vjp(pairs[0], delta)
    with torch.no_grad():
        positive = _linear_op(module, delta)(x, w) >= 0
    g = split_vjp(pairs[0], delta * positive)
    return g.add_(split_vjp(pairs[1], delta * ~positive))


def rule_bias(module: nn.Module, rule: str, z: torch.Tensor, gamma: float) -> torch.Tensor | float:
    """The rule-modified bias that enters the z⁺ / γ denominator when ``bias=true`` (Montavon et al. 2019, zennit).

    z⁺: ``b⁺``. γ (sign-aware, as :func:`rule_forward`): ``b + γ b⁺`` where ``z ≥ 0``, ``b + γ b⁻`` where ``z < 0``.
    ``z`` is the rule's modified pre-activation (its sign picks the γ branch). 0 for a layer without bias.
    """
    b = getattr(module, "bias", None)
    if b is None or rule not in ("zplus", "gamma"):
        return 0.0
    b = b.detach().reshape((1, -1) + (1,) * (z.ndim - 2))
    if rule == "zplus":
        return b.clamp(min=0)
    return torch.where(z >= 0, b + gamma * b.clamp(min=0), b + gamma * b.clamp(max=0))


def first_layer_relevance(
    module: nn.Module, rule: str, x: torch.Tensor, relevance_out: torch.Tensor, eps: float, gamma: float,
    low: torch.Tensor | None = None, high: torch.Tensor | None = None, support: torch.Tensor | None = None,
    bias: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input relevance of one first layer from its output relevance, for any rule.

    Args:
        x: the layer input ``(B, C, …)``; relevance_out: ``R_y`` shaped like the output.
        low, high: the z^B bounds, broadcastable to ``x``. support: 1 on real input voxels, 0 on padding voxels
            (fixed zeros with zero bounds for z^B; flat / w² do spread relevance onto padding: padding_share).
        bias: keep the rule-modified bias in the z⁺ / γ denominator (:func:`rule_bias`).

    Returns:
        ``R_x`` (shaped like ``x``) and the relevance absorbed (per output unit; ``Σ R_y − Σ R_x`` summed).
    """
    w = module.weight.detach()
    op = _linear_op(module, relevance_out)
    with torch.enable_grad():
        if rule in ("flat", "wsquare"):
            u = torch.ones_like(x).requires_grad_(True)
            z = op(u, torch.ones_like(w) if rule == "flat" else w * w)
            s = (relevance_out / stabilize(z, eps)).detach()
            (g,) = torch.autograd.grad((z * s).sum(), u)
            rel = g * u.detach()
        elif rule == "zbox":
            assert low is not None and high is not None
            xs = x.detach().requires_grad_(True)
            inside = torch.ones_like(x) if support is None else support.to(x.dtype)
            lo = (low * inside).requires_grad_(True)  # padding voxels are fixed zeros, not free inputs
            hi = (high * inside).requires_grad_(True)
            z = op(xs, w) - op(lo, w.clamp(min=0)) - op(hi, w.clamp(max=0))
            s = (relevance_out / stabilize(z, eps)).detach()
            gx, gl, gh = torch.autograd.grad((z * s).sum(), (xs, lo, hi))
            rel = xs.detach() * gx + lo.detach() * gl + hi.detach() * gh
        else:
            xs = x.detach().requires_grad_(True)
            z = rule_forward(module, rule, xs, relevance_out, gamma)
            if rule == "epsilon":
                bias = module.bias
                full = z if bias is None else z + bias.detach().reshape((1, -1) + (1,) * (z.ndim - 2))
            else:
                full = z + rule_bias(module, rule, z.detach(), gamma) if bias else z
            s = (relevance_out / stabilize(full, eps)).detach()
            (g,) = torch.autograd.grad((z * s).sum(), xs)
            rel = xs.detach() * g
    z = z.detach()
    absorbed = relevance_out.sum() - (z * s).sum()
    return rel.detach(), absorbed.detach()
