"""What an input node holds before it becomes a model channel: RGB volumes turned grey, said in one line.

A model's channel is one grey value per voxel. A chest X-ray or a photograph loaded in Slicer is often an RGB(A)
*vector* volume (``vtkMRMLVectorVolumeNode``, 3 or 4 components); the panel accepts it and converts it to luminance
with the ITU-R BT.601 weights (``0.299 R + 0.587 G + 0.114 B``; alpha ignored), the conversion MedXAILib applies when
it reads an RGB image file (``MedXAILib.io.read_image``) and Pillow's ``convert("L")``, so the same radiograph gives
the same input from a PNG on the command line and from a node in Slicer. Qt-free.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from MedXAILib.errors import InputError
from MedXAILib.volume import Volume

from . import bridge

#: Luminance weights of R, G and B (ITU-R BT.601).
LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)


def is_colour(node: Any) -> bool:
    """Is the node an RGB or RGBA volume (a vector volume with 3 or 4 components)?"""
    image = node.GetImageData() if node is not None else None
    return bool(image is not None and node.IsA("vtkMRMLVectorVolumeNode")
                and image.GetNumberOfScalarComponents() in (3, 4))


def colour_note(node: Any) -> str:
    """The line that says what happens to a colour input (for the panel and the job's log)."""
    return (f"{node.GetName()} is an RGB volume: it is converted to grey (luminance 0.299 R + 0.587 G + 0.114 B, "
            "as MedXAILib reads RGB images) before the model sees it")


def grey_volume(node: Any) -> tuple[Volume, str | None]:
    """The node's voxels as one grey channel ``(1, K, J, I)``, and a note when a colour volume was converted.

    Scalar volumes are returned as they are (their dtype kept). RGB(A) vector volumes become float32 luminance
    (:data:`LUMINANCE_WEIGHTS`). Other vector volumes (a displacement field, a multi-echo series in one node) are
    refused: which component is the image is not known.

    Raises:
        InputError: the node has no voxels, or is a vector volume that is not RGB(A).
    """
    volume = bridge.node_to_volume(node)
    if volume.n_channels == 1:
        return volume, None
    if not is_colour(node):
        raise InputError(f"{node.GetName()} has {volume.n_channels} components per voxel; choose a scalar volume "
                         "(one value per voxel) or an RGB image")
    rgb = volume.array[:3].astype(np.float32)
    grey = sum(w * rgb[c] for c, w in enumerate(LUMINANCE_WEIGHTS))
    return Volume(grey[None].astype(np.float32), volume.ijk_to_ras, [node.GetName()]), colour_note(node)
