"""Reference CAMs for the tests, computed without MedXAI's CAM code.

Each reference runs the framework's own sliding window — MONAI's ``sliding_window_inference`` / a bundle's
``SlidingWindowInferer``, or nnU-Net's own window slicers, Gaussian and mirroring — with plain autograd, and applies
the definition in ``docs/methods.md``: the sum over network calls of ``combine(A_c, ∂S/∂A_c)``, each upsampled to its
window and added at the window's position (positions from the framework's own helpers, not from MedXAI's plan).
The channel weightings are written out here from the papers.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F


def _dims(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.ndim))


def gradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g.mean(dim=_dims(g), keepdim=True) * a).sum(1, keepdim=True)


def hirescam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g * a).sum(1, keepdim=True)


def layercam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g.clamp_min(0) * a).sum(1, keepdim=True)


def gradcampp(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Chattopadhay et al.'s closed form: α = g² / (2 g² + Σ_space A · g³), w = Σ_space α ReLU(g)."""
    g64, a64 = g.double(), a.double()
    denom = 2 * g64**2 + a64.sum(dim=_dims(a), keepdim=True) * g64**3
    alpha = torch.where(denom != 0, g64**2 / torch.where(denom != 0, denom, torch.ones_like(denom)), 0.0)
    w = (alpha * g64.clamp_min(0)).sum(dim=_dims(g), keepdim=True)
    return (w * a64).sum(1, keepdim=True).float()


COMBINE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": gradcam, "gradcampp": gradcampp, "hirescam": hirescam, "layercam": layercam}


@contextlib.contextmanager
def leaves_at(layer: torch.nn.Module, network: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """The layer's outputs become leaves that require grad; the network's parameters are frozen."""
    leaves: list[torch.Tensor] = []

    def hook(_m: Any, _i: Any, out: torch.Tensor) -> torch.Tensor:
        leaves.append(out.detach().requires_grad_(True))
        return leaves[-1].clone()

    flags = [(p, p.requires_grad) for p in network.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    handle = layer.register_forward_hook(hook)
    try:
        yield leaves
    finally:
        handle.remove()
        for p, f in flags:
            p.requires_grad_(f)


def _up(m: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    mode = "bilinear" if m.ndim == 4 else "trilinear"
    return F.interpolate(m, size=size, mode=mode, align_corners=False)


def monai_reference(run_inferer: Callable[[torch.Tensor], torch.Tensor], network: torch.nn.Module,
                    layer: torch.nn.Module, x: torch.Tensor, weights: torch.Tensor, roi: tuple[int, ...],
                    overlap: float, combine: Callable[..., torch.Tensor], padding_mode: str = "constant"
                    ) -> torch.Tensor:
    """The CAM ``(1, *grid)`` of a MONAI sliding-window function ``run_inferer(x)`` (MONAI pads symmetrically up to
    ``roi``; windows from ``dense_patch_slices`` in MONAI's order, batched calls split in order). The maps on the
    padded grid are mapped back by the adjoint of torch's own padding (``padding_mode``; a crop when constant)."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    with leaves_at(layer, network) as leaves, torch.enable_grad():
        s = (run_inferer(x) * weights).sum()
        grads = torch.autograd.grad(s, leaves)
    grid = tuple(int(g) for g in x.shape[2:])
    diff = [max(r - g, 0) for g, r in zip(grid, roi)]
    padded = tuple(g + d for g, d in zip(grid, diff))
    scan = _get_scan_interval(padded, roi, len(grid), (overlap,) * len(grid))
    slices = dense_patch_slices(padded, roi, scan, return_slice=True)
    acts = torch.cat([a.detach() for a in leaves])
    grad = torch.cat([g.detach() for g in grads])
    assert acts.shape[0] == len(slices), (acts.shape, len(slices))
    out = torch.zeros((1,) + padded)
    for n, sl in enumerate(slices):
        out[(slice(None),) + tuple(sl)] += _up(combine(acts[n:n + 1], grad[n:n + 1]), roi)[0]
    if padding_mode != "constant":
        flat = [p for d in reversed(diff) for p in (d // 2, d - d // 2)]
        x0 = torch.zeros((1, 1) + grid, requires_grad=True)
        with torch.enable_grad():
            return torch.autograd.grad((F.pad(x0, flat, mode=padding_mode) * out[None]).sum(), x0)[0][0]
    crop = tuple(slice(d // 2, d // 2 + g) for g, d in zip(grid, diff))
    return out[(slice(None),) + crop]


def nnunet_reference(predictor: Any, x: torch.Tensor, weights: torch.Tensor, layer_name: str,
                     methods: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The CAMs ``(1, *grid)`` (by method name) of nnU-Net's sliding window with ``predictor``'s network, windows
    (``_internal_get_sliding_window_slicers``, 2D configurations slice by slice), Gaussian (``compute_gaussian``) and
    mirroring (``allowed_mirroring_axes`` when ``use_mirroring``), in float32; the function's logits
    ``(1, N, *grid)`` and the Gaussian normaliser ``(*grid)`` (nnU-Net's own float16 logits are exact only where it
    is well above float16's underflow, away from the image corners only one window reaches)

    Window ``w`` gets the share ``W · g / Σ g`` of the target (padding excluded), split evenly over the P mirrored
    passes; pass p sees the window flipped and its share flipped the same way; its map is flipped back. Each pass's
    map is ``combine(A, P·G) / P`` (the definition; for the CAMs linear in G the plain per-pass map)."""
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    net = predictor.network
    layer = dict(net.named_modules())[layer_name]
    patch = tuple(predictor.configuration_manager.patch_size)
    data, revert = pad_nd_image(x[0], patch, "constant", {"value": 0}, True, None)
    wpad, _ = pad_nd_image(weights[0], patch, "constant", {"value": 0}, True, None)
    slicers = predictor._internal_get_sliding_window_slicers(data.shape[1:])
    gauss = compute_gaussian(patch, sigma_scale=1.0 / 8, value_scaling_factor=10, device=torch.device("cpu")).float()
    norm = torch.zeros(data.shape[1:])
    for sl in slicers:
        norm[sl[1:]] += gauss
    axes = [a + 2 for a in predictor.allowed_mirroring_axes] if predictor.use_mirroring else []
    combos = [()] + [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
    cams = {m: torch.zeros((1,) + tuple(data.shape[1:])) for m in methods}
    logits = torch.zeros((wpad.shape[0],) + tuple(data.shape[1:]))
    for sl in slicers:
        window = data[sl][None]
        share = (wpad[sl] * gauss / norm[sl[1:]])[None] / len(combos)
        for ax in combos:
            def flip(t: torch.Tensor, ax: tuple[int, ...] = ax) -> torch.Tensor:
                return torch.flip(t, ax) if ax else t

            with leaves_at(layer, net) as leaves, torch.enable_grad():
                out = net(flip(window))
                (g,) = torch.autograd.grad(out, leaves, grad_outputs=flip(share))
            logits[sl] += (flip(out.detach()) * gauss / len(combos))[0]
            for name, cam in cams.items():
                # the definition for P passes: combine(A, P·G) / P (the plain sum for CAMs linear in G)
                m = COMBINE[name](leaves[0].detach(), g * len(combos)) / len(combos)
                cam[(slice(None),) + sl[1:]] += flip(_up(m, window.shape[2:]))[0]
    crop = (slice(None),) + tuple(revert[1:])
    return {k: v[crop] for k, v in cams.items()}, (logits / norm)[crop][None], norm[crop[1:]]
