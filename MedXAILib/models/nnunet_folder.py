"""Reading an nnU-Net v2 trained-model folder safely, with nnU-Net's own classes.

The folder is what ``nnUNetv2_train`` writes (``nnUNet_results/DatasetXXX_Name/<Trainer>__<Plans>__<config>/``)::

    plans.json  dataset.json  [dataset_fingerprint.json]
    fold_0/checkpoint_final.pth  fold_0/checkpoint_best.pth  fold_1/…  [fold_all/…]

A checkpoint is a dict (``network_weights``, ``trainer_name``, ``init_args`` with ``configuration``,
``inference_allowed_mirroring_axes``, ``logging`` …). It is read with ``torch.load(weights_only=True)``: besides plain
containers and tensors, only numpy's scalar reconstructor and ``numpy.dtype`` are allowed, which is exactly what a
trained checkpoint's training log needs (it stores numpy floats). Anything else is refused unless the caller passes
``allow_unsafe_pickle``.

The network is built the way ``nnUNetPredictor`` builds it: the trainer class named in the checkpoint (found among
nnU-Net's trainers) calls ``build_network_architecture`` with the plans, without deep supervision.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pickle
import pkgutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from .checkpoints import UNSAFE_FLAG
from .config_files import read_mapping
from .nnunet_schema import check_dataset_json, check_plans, checked_dataset, checked_plans

CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
NNUNET_INSTALL = (
    "install nnU-Net v2 without its torchvision/timm dependencies: "
    "pip install --no-deps -r requirements-nnunet.txt (inside Slicer: pip install nnunetv2)"
)


def is_nnunet_folder(path: Path) -> bool:
    """True for a folder with ``plans.json``, ``dataset.json`` and at least one ``fold_*`` folder."""
    p = Path(path)
    return (p / "plans.json").is_file() and (p / "dataset.json").is_file() and any(p.glob("fold_*"))


def require_nnunet() -> None:
    """Raise a ModelError with the install command when nnU-Net v2 cannot be imported."""
    try:
        import nnunetv2  # noqa: F401
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            f"this is an nnU-Net v2 model, but nnunetv2 does not import ({exc}); {NNUNET_INSTALL}"
        ) from None


def _numpy_safe_globals() -> list[Any]:
    """What nnU-Net's training log needs: numpy's scalar reconstructor (under its numpy ≥ 2 and < 2 names),
    ``numpy.dtype`` and the float32/float64 dtype classes (losses are float32, Dice means float64); nothing else."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    scalar = core.multiarray.scalar
    allowed: list[Any] = [
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles a dtype with its class
    if dtypes is not None:
        allowed += [dtypes.Float32DType, dtypes.Float64DType]
    return allowed


def load_checkpoint(path: Path, allow_unsafe_pickle: bool = False) -> dict[str, Any]:
    """A checkpoint dict read with ``weights_only=True`` and the numpy allow-list (see the module docstring)."""
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc) and "Weights only load failed" not in str(exc):
            raise ModelError(f"{path}: unreadable checkpoint (not a PyTorch file)") from None
        if not allow_unsafe_pickle:
            raise ModelError(
                f"{path}: this checkpoint needs arbitrary unpickling beyond nnU-Net's usual numpy scalars, which can "
                f"run code hidden in the file; pass {UNSAFE_FLAG} only if you trust its source"
            ) from None
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: unreadable checkpoint ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(obj, dict) or "network_weights" not in obj:
        raise ModelError(f"{path}: not an nnU-Net checkpoint (no 'network_weights'); was it written by nnUNetv2_train?")
    return obj


def available_folds(folder: Path, checkpoint: str = "final") -> list[int | str]:
    """The folds with a checkpoint of that kind, as ``nnUNetPredictor`` detects them (``fold_all`` only if alone)."""
    name = checkpoint_file(checkpoint)
    folds: list[int | str] = []
    for d in sorted(folder.glob("fold_*")):
        tail = d.name[len("fold_"):]
        if (d / name).is_file() and tail.isdigit():
            folds.append(int(tail))
    if not folds and (folder / "fold_all" / name).is_file():
        folds = ["all"]
    return sorted(folds, key=str)


def checkpoint_file(checkpoint: str) -> str:
    if checkpoint not in CHECKPOINTS:
        raise ModelError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    return CHECKPOINTS[checkpoint]


def parse_folds(text: str | None) -> list[int | str] | None:
    """``"0,1,4"`` → ``[0, 1, 4]``; ``"all"`` → ``["all"]``; empty → None (every fold present)."""
    if text is None or str(text).strip() in ("", "auto"):
        return None
    out: list[int | str] = []
    for part in str(text).split(","):
        part = part.strip()
        if part == "all":
            out.append("all")
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ModelError(f"--folds takes fold numbers separated by commas (e.g. 0,1,2) or 'all', got {text!r}")
    return out


def find_trainer_class(name: str) -> tuple[type, str | None]:
    """nnU-Net's trainer class called ``name`` and a note (None when found).

    nnU-Net's own lookup imports every trainer module and stops at the first that fails (its Primus trainers need
    timm, which is not installed here), so the search is repeated here skipping modules that do not import. A trainer
    that is not found falls back to ``nnUNetTrainer``, whose ``build_network_architecture`` builds the network from
    the plans like every standard trainer variant; a network that then does not fit the weights is a clear error.
    """
    import nnunetv2.training.nnUNetTrainer as pkg
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if name == "nnUNetTrainer":
        return nnUNetTrainer, None
    failed: list[str] = []
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if info.ispkg:
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - a trainer module with missing optional deps is skipped
            failed.append(info.name.rsplit(".", 1)[-1])
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls, None
    note = f"trainer {name!r} is not among nnU-Net's installed trainers; the network was built from the plans as " \
           "nnUNetTrainer builds it"
    if failed:
        note += f" (modules that did not import: {', '.join(sorted(set(failed))[:6])})"
    return nnUNetTrainer, note


@dataclass
class NnUNetFolder:
    """Everything read from a trained-model folder (see the module docstring)."""

    folder: Path
    plans: dict[str, Any]
    dataset_json: dict[str, Any]
    configuration: str
    trainer_name: str
    folds: list[int | str]
    checkpoint: str
    weights: list[dict[str, torch.Tensor]]
    mirror_axes: tuple[int, ...] | None
    notes: list[str] = field(default_factory=list)

    def plans_manager(self) -> Any:
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        return PlansManager(self.plans)

    def managers(self) -> tuple[Any, Any, Any]:
        """nnU-Net's ``(PlansManager, ConfigurationManager, LabelManager)`` for this folder's configuration; what
        nnU-Net itself rejects in the (checked) files is one ModelError."""
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                pm = self.plans_manager()
                return pm, pm.get_configuration(self.configuration), pm.get_label_manager(self.dataset_json)
        except (AssertionError, RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise ModelError(f"{self.folder}: nnU-Net rejects its plans.json / dataset.json ({first[:200]})") from None

    def build_networks(self) -> list[torch.nn.Module]:
        """One network per fold, built as ``nnUNetPredictor`` builds it, weights loaded, eval mode."""
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        pm, cm, _ = self.managers()
        trainer, note = find_trainer_class(self.trainer_name)
        if note:
            self.notes.append(note)
        n_in = determine_num_input_channels(pm, cm, self.dataset_json)
        n_out = pm.get_label_manager(self.dataset_json).num_segmentation_heads
        nets = []
        for fold, state in zip(self.folds, self.weights):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    net = trainer.build_network_architecture(pm, cm, n_in, n_out, enable_deep_supervision=False)
            except ImportError as exc:
                raise ModelError(
                    f"{self.folder}: the network {cm.network_arch_class_name} needs a package that is not installed "
                    f"({exc}); MedXAI runs nnU-Net without timm/torchvision, so Primus/ViT architectures are "
                    "unsupported here"
                ) from None
            except (AssertionError, RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
                first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
                raise ModelError(f"{self.folder}: nnU-Net cannot build the network its plans describe "
                                 f"({first[:200]})") from None
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                raise ModelError(
                    f"{self.folder}/fold_{fold}: the weights do not fit the network the plans describe "
                    f"({'; '.join(lines[1:3])[:240]}){'; ' + note if note else ''}"
                ) from None
            nets.append(net.eval())
        return nets


def _checkpoint_facts(ckpt: dict[str, Any], path: Path) -> tuple[str, str, tuple[int, ...] | None]:
    """``(trainer name, configuration, mirroring axes)`` a checkpoint records, type-checked."""
    trainer = ckpt.get("trainer_name", "nnUNetTrainer")
    init = ckpt.get("init_args") or {}
    axes = ckpt.get("inference_allowed_mirroring_axes")
    if not isinstance(trainer, str) or not trainer.isidentifier() or not isinstance(init, dict) or not isinstance(
            init.get("configuration", ""), str):
        raise ModelError(f"{path}: the checkpoint's trainer_name / init_args are not what nnUNetv2_train writes")
    if axes is not None and not (isinstance(axes, (list, tuple)) and all(isinstance(a, int) and 0 <= a <= 2
                                                                          for a in axes)):
        raise ModelError(f"{path}: inference_allowed_mirroring_axes must be spatial axes 0-2, got {str(axes)[:60]}")
    return trainer, str(init.get("configuration", "")), (tuple(int(a) for a in axes) if axes is not None else None)


def read_checked_json(folder: Path, trust: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(plans, dataset_json)`` of a trained-model folder, read bounded and checked against
    :mod:`.nnunet_schema` (every configuration) before anything in them is imported or called."""
    path = folder / "plans.json"
    if not path.exists() and not path.is_symlink():
        raise ModelError(f"{path}: not found; an nnU-Net model folder needs plans.json and dataset.json")
    plans = read_mapping(path, "nnU-Net plans file")
    dataset_json = read_mapping(folder / "dataset.json", "nnU-Net dataset.json")
    # dataset.json is typed even when trusted (MedXAI reads it too); only its one class name is then left to nnU-Net
    names_left = {k: v for k, v in dataset_json.items() if not (trust and k == "overwrite_image_reader_writer")}
    check_dataset_json(names_left, str(folder / "dataset.json"))
    check_plans(plans, dataset_json, trust, str(path))
    return plans, dataset_json


def read_nnunet_folder(
    folder: str | Path, folds: list[int | str] | None = None, checkpoint: str = "final",
    allow_unsafe_pickle: bool = False, trust_code: bool = False,
) -> NnUNetFolder:
    """Read plans, dataset.json (checked, :func:`read_checked_json`) and the chosen folds' checkpoints (default:
    every fold present). The plans kept are what nnU-Net may see (:func:`.nnunet_schema.checked_plans`)."""
    require_nnunet()
    folder = Path(folder)
    plans, dataset_json = read_checked_json(folder, trust_code)
    name = checkpoint_file(checkpoint)
    present = available_folds(folder, checkpoint)
    if folds is None:
        folds = present
        if not folds:
            raise ModelError(f"{folder}: no fold_K/{name} found; train a fold first or pick --checkpoint best|final")
    missing = [f for f in folds if not (folder / f"fold_{f}" / name).is_file()]
    if missing:
        raise ModelError(
            f"{folder}: no {name} for fold(s) {', '.join(map(str, missing))}; present: "
            f"{', '.join(map(str, present)) or 'none'}"
        )
    weights, trainer_name, configuration, mirror_axes = [], "", "", None
    for i, fold in enumerate(folds):
        ckpt = load_checkpoint(folder / f"fold_{fold}" / name, allow_unsafe_pickle)
        if i == 0:
            trainer_name, configuration, mirror_axes = _checkpoint_facts(ckpt, folder / f"fold_{fold}" / name)
        if not isinstance(ckpt["network_weights"], dict):
            raise ModelError(f"{folder / f'fold_{fold}' / name}: network_weights is not a state_dict")
        weights.append(ckpt["network_weights"])
    if not configuration:
        configuration = folder.name.split("__")[-1] if folder.name.count("__") == 2 else ""
    if configuration not in plans.get("configurations", {}):
        raise ModelError(
            f"{folder}: the checkpoint's configuration {configuration!r} is not in plans.json "
            f"({', '.join(plans.get('configurations', {}))})"
        )
    return NnUNetFolder(folder, checked_plans(plans, configuration, trust_code),
                        checked_dataset(dataset_json, trust_code), configuration, trainer_name, list(folds),
                        checkpoint, weights, mirror_axes)
