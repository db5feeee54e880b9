"""Warnings about inputs that are valid but questionable: a model will run on them, and its answer means little.

Refusing a 1 x 1 X-ray or an all-zero volume would be wrong (a pipeline may pass one on purpose, e.g. a blank
control), but returning probabilities for it without a word is how a silent wrong result reaches a report. Each
finding is printed as one ``warning:`` line on stderr and returned, so a sidecar can record it too.
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from .volume import Volume

#: Fewer voxels than this along a spatial axis is too small for any network to see structure.
MIN_SIDE = 8


def questionable_input(volume: Volume, what: str, model_grid: Sequence[int] | None = None) -> list[str]:
    """Findings about ``volume`` (one message each): constant channels, and sides shorter than :data:`MIN_SIDE`.

    Args:
        volume: the input, ``(C, K, J, I)``.
        what: how to name it in the messages (the input file names).
        model_grid: the network's fixed input size, if any, to say what the image is stretched to.
    """
    found: list[str] = []
    arr = volume.array
    for c in range(volume.n_channels):
        channel = arr[c]
        if channel.size and np.all(channel == channel.flat[0]):
            name = volume.channel_names[c] if volume.channel_names else str(c)
            value = channel.flat[0]
            kind = "all zero" if value == 0 else f"constant ({float(value):g} everywhere)"
            found.append(f"{what}: channel {name} is {kind}; it holds no image, so the model's answer means nothing")
    sides = volume.shape[1:] if volume.is_2d else volume.shape
    if min(sides) < MIN_SIDE:
        size = " x ".join(str(s) for s in sides[::-1])
        stretched = f"; the model stretches it to {' x '.join(map(str, model_grid[::-1]))}" if model_grid else ""
        found.append(f"{what}: the image is only {size} voxels{stretched}, too small to show any structure, so the "
                     "model's answer means little")
    return found


def warn(messages: Sequence[str]) -> None:
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)
