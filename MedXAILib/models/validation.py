"""Checking a loaded network against its description on a dummy pass, before any real input is touched.

A description can be valid on its own and still not fit the network: four class names for a network with two
outputs, a classifier's TorchScript described as a segmentation model, a network built for one input channel
described with four. :func:`check_network_outputs` runs the model's own forward function once on a small zero input
of the described shape and refuses any mismatch with one message naming both sides.
"""

from __future__ import annotations

import math

import torch

from ..errors import ModelError
from .model import Model

#: Smallest side of the dummy input (voxels); segmentation networks get a multiple of their stride divisor.
MIN_SIDE = 16


def dummy_shape(model: Model) -> tuple[int, ...]:
    """The spatial shape ``(K, J, I)`` or ``(J, I)`` of the dummy input (model-grid voxels)."""
    d = model.description
    dims = d.spatial_dims
    size = (d.preprocessing or {}).get("input_size")
    if size:
        return tuple(int(s) for s in size)
    if d.task == "classification":
        return (64,) * dims if dims == 2 else (32,) * dims
    div = max(1, model.divisor())
    side = div * max(2, math.ceil(MIN_SIDE / div))
    patch = d.patch_size or [side] * dims
    return tuple(min(side, int(p)) if int(p) % div == 0 else side for p in patch)


def check_network_outputs(model: Model) -> Model:
    """Run one forward pass on zeros and check the output's rank, class count and size against the description.

    Returns:
        ``model`` itself (so that ``return check_network_outputs(Model(...))`` reads naturally).

    Raises:
        ModelError: the network fails on an input of the described channels and dimensions, returns something that
            is not a tensor, returns the wrong rank (a classifier described as a segmentation model, or the reverse),
            or a number of outputs different from the number of class names.
    """
    d = model.description
    shape = dummy_shape(model)
    x = torch.zeros((1, d.n_channels, *shape), device=model.device)
    where = f"model {d.name!r}"
    try:
        with torch.inference_mode():
            out = model.forward(x)
    except Exception as exc:  # noqa: BLE001 - any failure here means the description does not fit the network
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        hint = " (if the network needs a fixed input size, give preprocessing.input_size)" if d.task == (
            "classification") else ""
        raise ModelError(
            f"{where}: the network fails on a test input of {d.n_channels} channel(s) "
            f"({', '.join(d.channel_names)}) and size {list(shape)} ({first[:200]}); the description's "
            f"channel_names and spatial_dims ({d.spatial_dims}) must match the network{hint}"
        ) from None
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]  # deep-supervision heads: the first is the prediction
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"{where}: the network returns {type(out).__name__}, not a tensor of logits")
    rank = 2 if d.task == "classification" else 2 + d.spatial_dims
    if out.ndim != rank:
        layout = "(batch, classes)" if d.task == "classification" else (
            "(batch, classes, " + ", ".join("KJI"[3 - d.spatial_dims:]) + ")")
        other = "segmentation" if d.task == "classification" else "classification"
        raise ModelError(
            f"{where}: the network returns outputs of shape {tuple(out.shape)}, but a {d.spatial_dims}D {d.task} "
            f"model must return {layout}; is it a {other} network, or the wrong file?"
        )
    n_out = int(out.shape[1])
    if n_out != d.n_classes:
        raise ModelError(
            f"{where}: {d.n_classes} class names for {n_out} network outputs; class_names must name each output "
            f"channel of the network, in order ({', '.join(d.class_names)})"
        )
    if d.task == "segmentation" and tuple(out.shape[2:]) != tuple(shape):
        raise ModelError(
            f"{where}: the network returns a map of size {list(out.shape[2:])} for an input of size {list(shape)}; "
            "a segmentation network must return a map on its input grid"
        )
    return model
