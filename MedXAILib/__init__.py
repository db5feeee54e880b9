"""MedXAILib: explainable AI for medical imaging, without Slicer.

The core library behind the MedXAI 3D Slicer extension. It reads volumes, runs segmentation and classification
models, explains their outputs (Grad-CAM and more), and measures both the model and the explanation.
Nothing here imports ``slicer``, ``qt``, ``ctk`` or ``vtk``.
"""

from .errors import InputError, MedXAIError, MethodError, ModelError, TargetError
from .io import read_image, read_label_map, read_volume, write_volume
from .volume import Volume, make_ijk_to_ras

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "MedXAIError",
    "MethodError",
    "ModelError",
    "TargetError",
    "Volume",
    "make_ijk_to_ras",
    "read_image",
    "read_label_map",
    "read_volume",
    "write_volume",
]
