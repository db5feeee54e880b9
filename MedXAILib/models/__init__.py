"""Models: a network plus everything needed to run it honestly on a :class:`~MedXAILib.volume.Volume`.

- :mod:`.description` — :class:`ModelDescription`, the JSON description (task, channels, classes, preprocessing, …);
- :mod:`.model` — :class:`Model` and :class:`PreparedInput`, and the model-function contract every adapter
  implements (``prepare`` → ``infer``, the one function predict / explain / score use → back to the input geometry);
- :mod:`.function` — the sliding-window plan of a model function (MONAI's windows and importance map);
- :mod:`.prediction` — :class:`Prediction`;
- one adapter module per model format, each turning its format into the same :class:`Model`:
  :mod:`.monai_network` (a MONAI network + state_dict or safetensors), :mod:`.torchscript`, :mod:`.bundle`
  (MONAI bundles run through ``monai.bundle``; the consent rule in :mod:`.bundle_config`);
- :mod:`.cards` — model cards, the default CAM layer and the training-domain check;
- :mod:`.registry` and :mod:`.zoo` — the ``models`` catalogue, ``SCHEME:NAME`` resolvers, ``monai:NAME`` downloads;
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
