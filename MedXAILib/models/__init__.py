"""Models: a network plus everything needed to run it honestly on a :class:`~MedXAILib.volume.Volume`.

- :mod:`.description` — :class:`ModelDescription`, the JSON description (task, channels, classes, preprocessing, …);
- :mod:`.model` — :class:`Model` and :class:`PreparedInput`: prepare → network → prediction in the input geometry;
- :mod:`.prediction` — :class:`Prediction`;
- one adapter module per model format, each turning its format into the same :class:`Model`:
  :mod:`.monai_network` (a MONAI network + state_dict or safetensors), :mod:`.torchscript`, :mod:`.bundle`
  (MONAI bundles);
- :mod:`.checkpoints` — reading weights without arbitrary unpickling;
- :mod:`.loading` — :func:`load_model`, which recognises the format and hands over to its adapter.
"""

from .description import ModelDescription
from .loading import BUILTIN_DIR, builtin_model_names, load_model
from .model import Model, PreparedInput, resolve_device
from .prediction import Prediction

__all__ = [
    "BUILTIN_DIR",
    "Model",
    "ModelDescription",
    "Prediction",
    "PreparedInput",
    "builtin_model_names",
    "load_model",
    "resolve_device",
]
