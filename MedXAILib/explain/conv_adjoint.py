"""Input gradients of convolutions computed as forward convolutions, for the backward passes of layer maps.

A layer map needs ``∂S/∂A`` at a layer, so the backward pass runs through the network's *tail* (layer → output)
with frozen parameters: only input gradients. Each is the adjoint of a convolution, which is itself a convolution:

- a convolution with stride 1, dilation ``d``, padding ``p`` and kernel ``k``: the convolution of the output gradient
  with the kernel flipped in space and its in/out channels swapped, padding ``d(k − 1) − p``;
- a transposed convolution (any stride, output padding below the stride): the plain convolution with the same kernel,
  stride, padding and dilation.

PyTorch's CPU backward kernels for the few-channel 3D convolutions of decoder tails are several times slower than
its forward kernels (a 2 → 2 channel 3×3×3 convolution over four 96³ windows: 1.8 s against 0.36 s, and 0.12 s in
channels-last memory format, which the adjoint uses for such few-channel convolutions), so
:func:`fast_input_gradients` swaps them in while the block runs. Other convolutions (strided, grouped, non-zero
padding modes) keep PyTorch's backward. The values are the same to float32 rounding (a test compares them).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

_CONV = (torch.nn.Conv2d, torch.nn.Conv3d)
FEW_CHANNELS = 4  # stride-1 adjoints with this many channels or fewer run in channels-last memory format
_TRANSPOSED = (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)


def _adjoint_args(module: torch.nn.Module) -> dict[str, Any] | None:
    """How to compute ``module``'s input gradient as a forward convolution, or None when the shortcut does not apply."""
    if not isinstance(module, _CONV + _TRANSPOSED) or module.groups != 1 or module.padding_mode != "zeros":
        return None
    if isinstance(module.padding, str):
        return None
    k, p, d, s = (tuple(int(v) for v in t) for t in (module.kernel_size, module.padding, module.dilation,
                                                      module.stride))
    if isinstance(module, _TRANSPOSED):
        if any(int(o) >= si for o, si in zip(module.output_padding, s)):
            return None
        return {"transposed": True, "stride": s, "padding": p, "dilation": d}
    if any(si != 1 for si in s) or any(di * (ki - 1) - pi < 0 for ki, pi, di in zip(k, p, d)):
        return None
    return {"transposed": False, "padding": tuple(di * (ki - 1) - pi for ki, pi, di in zip(k, p, d)),
            "dilation": d}


class _InputGradient(torch.autograd.Function):
    """A convolution's output (computed already) whose backward pass is the forward convolution of the adjoint."""

    @staticmethod
    def forward(ctx: Any, inp: torch.Tensor, weight: torch.Tensor, args: dict[str, Any],
                value: list[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(weight)
        ctx.args, ctx.in_shape = args, tuple(inp.shape)
        return value.pop()  # not an input: the output keeps no view of one, so later in-place ops are allowed

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (weight,) = ctx.saved_tensors
        a = ctx.args
        conv = F.conv3d if weight.ndim == 5 else F.conv2d
        if a["transposed"]:
            gi = conv(grad, weight, stride=a["stride"], padding=a["padding"], dilation=a["dilation"])
        else:
            dims = list(range(2, weight.ndim))
            w = weight.flip(dims).transpose(0, 1)
            if min(w.shape[0], w.shape[1]) <= FEW_CHANNELS:  # oneDNN's channels-last kernels are ~3× faster here
                fmt = torch.channels_last_3d if w.ndim == 5 else torch.channels_last
                grad = grad.contiguous(memory_format=fmt)
            gi = conv(grad, w, padding=a["padding"], dilation=a["dilation"]).contiguous()
        if tuple(gi.shape) != ctx.in_shape:
            raise RuntimeError(f"convolution adjoint gave {tuple(gi.shape)} for an input of {ctx.in_shape}")
        return gi, None, None, None


@contextlib.contextmanager
def fast_input_gradients(network: torch.nn.Module, active: Callable[[], bool]) -> Iterator[None]:
    """While the block runs, convolutions of ``network`` that run with gradient recording on (and ``active()``)
    get :class:`_InputGradient` backward passes (see the module docstring). Parameters must not require grad."""

    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
        if not active() or not isinstance(output, torch.Tensor) or not output.requires_grad:
            return None
        inp = inputs[0]
        args = _adjoint_args(module)
        if args is None or module.weight.requires_grad or not inp.requires_grad:
            return None
        return _InputGradient.apply(inp, module.weight, args, [output.detach()])

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, _CONV + _TRANSPOSED)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
