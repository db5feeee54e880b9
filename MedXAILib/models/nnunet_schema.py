"""The typed schema of an nnU-Net v2 trained-model folder's ``plans.json`` and ``dataset.json`` (TotalSegmentator's
parts are such folders).

nnU-Net imports and calls classes named in these files: ``network_class_name`` and every argument listed in
``_kw_requires_import`` go through ``pydoc.locate`` and are called with keyword arguments from the same file
(``conv_op``, ``norm_op``, ``dropout_op``, ``nonlin`` with their ``*_kwargs``); ``preprocessor_name``,
``normalization_schemes``, the ``resampling_fn_*`` names, ``label_manager``, ``image_reader_writer`` and dataset.json's
``overwrite_image_reader_writer`` are searched for by name among nnU-Net's modules. Without ``--trust-model-code``
each of these must be one of the known safe names below, ``_kw_requires_import`` may only name those four arguments,
every other entry nnU-Net reads is typed and bounded, the configuration inheritance (``inherits_from``) must end (no
cycle), and the cross-entry facts nnU-Net assumes hold (one normalisation per channel, as many kernel sizes, strides
and convolution counts as stages, ``transpose_backward`` the inverse of ``transpose_forward``, …), so that a broken
file is one clear error and never a traceback.

:func:`checked_plans` returns what nnU-Net then sees: the top-level entries of the schema and the one configuration
to run, with its inheritance already resolved; every other entry (and every other configuration) is dropped. With
the trust flag the files go to nnU-Net as they are, after the bounded read and the inheritance check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError
from .schema_types import (
    AnyOf,
    Bool,
    Data,
    Int,
    Map,
    Num,
    SafeName,
    SchemaError,
    Seq,
    Spec,
    Str,
    one_or_seq,
    opt,
    plain_walk,
)

_DNA = "dynamic_network_architectures.architectures"
NETWORKS = (f"{_DNA}.unet.PlainConvUNet", f"{_DNA}.unet.ResidualEncoderUNet",
            f"{_DNA}.residual_unet.ResidualEncoderUNet")  # the last: what nnU-Net converts old plans to
CONV_OPS = tuple(f"torch.nn{m}.Conv{d}d" for m in ("", ".modules.conv") for d in (2, 3))
NORM_OPS = tuple(f"torch.nn{m}.{n}{d}d" for m, n in ((".modules.instancenorm", "InstanceNorm"), ("", "InstanceNorm"),
                                                     (".modules.batchnorm", "BatchNorm"), ("", "BatchNorm"))
                 for d in (2, 3))
DROPOUT_OPS = tuple(f"torch.nn{m}.Dropout{d}" for m in ("", ".modules.dropout") for d in ("", "2d", "3d"))
NONLINS = tuple(f"torch.nn{m}.{n}" for m in ("", ".modules.activation")
                for n in ("LeakyReLU", "ReLU", "PReLU", "ELU", "GELU", "SiLU", "Tanh", "Sigmoid"))
REQUIRES_IMPORT = ("conv_op", "norm_op", "dropout_op", "nonlin")
PREPROCESSORS = ("DefaultPreprocessor",)
NORMALIZATIONS = ("CTNormalization", "NoNormalization", "ZScoreNormalization", "RescaleTo01Normalization",
                  "RGBTo01Normalization")
RESAMPLING = ("resample_data_or_seg_to_shape", "resample_torch_fornnunet", "resample_torch_simple",
              "no_resampling_hack")
LABEL_MANAGERS = ("LabelManager",)
READER_WRITERS = ("SimpleITKIO", "NibabelIO", "NibabelIOWithReorient",
                  "NaturalImage2DIO", "Tiff3DIO")
MAX_CHANNELS = 64
MAX_LABELS = 1024
MAX_STAGES = 12
MAX_INHERITANCE = 16
#: Convolution weights the plans may describe (about 2 GB of float32): a larger network is refused before it is
#: built.
MAX_PARAMETERS = 500_000_000

_LOCATE = "nnU-Net (pydoc.locate, then called with this file's arguments)"
_FIND = "nnU-Net (found by name among its own modules)"
_SCALARS = Map(extra=AnyOf((Num(), Bool(), opt(Str(max_len=64)))), max_keys=16)
_STAGES = Seq(one_or_seq(Int(1, 15), 3), 1, MAX_STAGES)
_COUNTS = AnyOf((Int(1, 64), Seq(Int(1, 64), 1, MAX_STAGES)))
_ARCH_KWARGS = Map(fields={
    "n_stages": Int(1, MAX_STAGES), "features_per_stage": AnyOf((Int(1, 4096), Seq(Int(1, 4096), 1, MAX_STAGES))),
    "conv_op": SafeName(CONV_OPS, _LOCATE), "kernel_sizes": _STAGES, "strides": _STAGES,
    "n_conv_per_stage": _COUNTS, "n_blocks_per_stage": _COUNTS, "n_conv_per_stage_decoder": _COUNTS,
    "conv_bias": Bool(), "norm_op": opt(SafeName(NORM_OPS, _LOCATE)), "norm_op_kwargs": opt(_SCALARS),
    "dropout_op": opt(SafeName(DROPOUT_OPS, _LOCATE)), "dropout_op_kwargs": opt(_SCALARS),
    "nonlin": opt(SafeName(NONLINS, _LOCATE)), "nonlin_kwargs": opt(_SCALARS), "deep_supervision": Bool(),
    "nonlin_first": Bool(), "bottleneck_channels": opt(AnyOf((Int(1, 4096), Seq(Int(1, 4096), 1, MAX_STAGES)))),
    "stem_channels": opt(Int(1, 4096)),
}, required=("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage_decoder"))
_ARCHITECTURE = Map(fields={  # checked in this order: the names nnU-Net imports before the values
    "_kw_requires_import": Seq(SafeName(REQUIRES_IMPORT, "nnU-Net's _kw_requires_import (pydoc.locate on that "
                                        "argument's value)"), 0, 4),
    "network_class_name": SafeName(NETWORKS, _LOCATE), "arch_kwargs": _ARCH_KWARGS,
}, required=("network_class_name", "arch_kwargs"))
_RESAMPLING_KWARGS = Map(fields={
    "is_seg": Bool(), "order": Int(0, 5), "order_z": Int(0, 5), "force_separate_z": opt(Bool()),
    "separate_z_anisotropy_threshold": Num(0, 1e3), "num_threads": Int(1, 64), "memefficient_seg_resampling": Bool(),
    "mode": Str(("linear", "nearest", "nearest-exact", "bilinear", "trilinear", "bicubic", "area")),
    "aniso_axis_mode": Str(("linear", "nearest", "nearest-exact", "bilinear", "trilinear", "bicubic", "area")),
})
_AXES = Seq(Num(1e-6, 1e5), 2, 3)
#: One configuration, inheritance resolved (known entries only; others are dropped before nnU-Net sees them).
CONFIGURATION = Map(fields={
    "data_identifier": Str(max_len=256), "preprocessor_name": SafeName(PREPROCESSORS, _FIND),
    "batch_size": Int(1, 4096), "patch_size": Seq(Int(1, 1024), 2, 3), "median_image_size_in_voxels": _AXES,
    "spacing": _AXES, "normalization_schemes": Seq(SafeName(NORMALIZATIONS, _FIND), 1, MAX_CHANNELS),
    "use_mask_for_norm": Seq(Bool(), 1, MAX_CHANNELS),
    "resampling_fn_data": SafeName(RESAMPLING, _FIND), "resampling_fn_seg": SafeName(RESAMPLING, _FIND),
    "resampling_fn_probabilities": SafeName(RESAMPLING, _FIND), "resampling_fn_data_kwargs": _RESAMPLING_KWARGS,
    "resampling_fn_seg_kwargs": _RESAMPLING_KWARGS, "resampling_fn_probabilities_kwargs": _RESAMPLING_KWARGS,
    "architecture": _ARCHITECTURE, "batch_dice": Bool(), "previous_stage": opt(Str(max_len=128)),
    "next_stage": opt(one_or_seq(Str(max_len=128), 16)),
    # the pre-2.4 format, which nnU-Net converts to "architecture" itself
    "UNet_class_name": SafeName(("PlainConvUNet", "ResidualEncoderUNet"), "nnU-Net's old-plans conversion"),
    "UNet_base_num_features": Int(1, 4096), "unet_max_num_features": Int(1, 4096),
    "n_conv_per_stage_encoder": Seq(Int(1, 64), 1, MAX_STAGES),
    "n_conv_per_stage_decoder": Seq(Int(1, 64), 1, MAX_STAGES), "num_pool_per_axis": Seq(Int(0, 16), 2, 3),
    "pool_op_kernel_sizes": _STAGES, "conv_kernel_sizes": _STAGES,
}, required=("patch_size", "spacing", "normalization_schemes", "use_mask_for_norm", "preprocessor_name",
             "resampling_fn_data", "resampling_fn_seg", "resampling_fn_probabilities", "resampling_fn_data_kwargs",
             "resampling_fn_seg_kwargs", "resampling_fn_probabilities_kwargs"), extra=Data(depth=6))
_INTENSITY = Map(extra=Map(extra=Num(-1e12, 1e12), max_keys=16), max_keys=MAX_CHANNELS)
PLANS = Map(fields={
    "dataset_name": Str(max_len=256), "plans_name": Str(max_len=256),
    "original_median_spacing_after_transp": _AXES, "original_median_shape_after_transp": _AXES,
    "image_reader_writer": SafeName(READER_WRITERS, _FIND), "transpose_forward": Seq(Int(0, 2), 3, 3),
    "transpose_backward": Seq(Int(0, 2), 3, 3),
    "configurations": Map(extra=Map(extra=Data(depth=6), max_keys=64), max_keys=32),
    "experiment_planner_used": Str(max_len=256), "label_manager": SafeName(LABEL_MANAGERS, _FIND),
    "foreground_intensity_properties_per_channel": _INTENSITY,
    "foreground_intensity_properties_by_modality": _INTENSITY,
}, required=("dataset_name", "configurations", "transpose_forward", "transpose_backward"), extra=Data(depth=6))
_LABEL = AnyOf((Int(0, 65535), Seq(Int(0, 65535), 1, 64)))
DATASET = Map(fields={
    "channel_names": Map(extra=Str(max_len=256), max_keys=MAX_CHANNELS),
    "modality": Map(extra=Str(max_len=256), max_keys=MAX_CHANNELS),
    "labels": Map(extra=_LABEL, max_keys=MAX_LABELS), "regions_class_order": opt(Seq(Int(0, 65535), 1, MAX_LABELS)),
    "numTraining": Int(0, 10**8), "file_ending": Str(max_len=32),
    "overwrite_image_reader_writer": opt(SafeName(READER_WRITERS, _FIND)),
    "name": Str(max_len=4096), "description": Str(max_len=8192),
}, required=("labels",), extra=Data(depth=6))


def _check(value: Any, spec: Spec, where: str) -> None:
    try:
        plain_walk(value, spec, where)
    except SchemaError as exc:
        raise _refusal(exc) from None


class NnUNetSchemaError(ModelError):
    """An nnU-Net file breaks its schema (``risk`` = "code" when a name would be imported)."""

    def __init__(self, message: str, risk: str | None) -> None:
        super().__init__(message)
        self.risk = risk


def _refusal(exc: SchemaError) -> NnUNetSchemaError:
    from .bundle_config import TRUST_ALIAS, TRUST_FLAG

    if exc.risk == "code":
        tail = (f"; building the model would run code the file names. Pass {TRUST_FLAG} (or {TRUST_ALIAS}) only if "
                "you trust this model's author")
    else:
        tail = "; this is not a plan nnU-Net can run"
    return NnUNetSchemaError(f"{exc.where} {exc.problem}{tail}", exc.risk)


def check_dataset_json(dataset: dict[str, Any], where: str = "dataset.json") -> list[str]:
    """Check a dataset.json; return its channel names in channel order.

    Raises:
        NnUNetSchemaError: a field of the wrong type or size, a name that is not safe, channels not numbered
            0…N−1, no ``background`` label 0, or regions without ``regions_class_order``.
    """
    _check(dataset, DATASET, where)
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise _refusal(SchemaError(where, "has no channel_names"))
    if sorted(channels) != [str(i) for i in range(len(channels))]:
        raise _refusal(SchemaError(f"{where}::channel_names", f"must be numbered 0…{len(channels) - 1}, got "
                                   f"{', '.join(sorted(channels))[:80]}"))
    labels = dataset["labels"]
    if labels.get("background") not in (0, [0]):
        raise _refusal(SchemaError(f"{where}::labels", "needs \"background\": 0 (nnU-Net's rule)"))
    regions = any(isinstance(v, list) and len(v) > 1 for v in labels.values())
    if regions and not dataset.get("regions_class_order"):
        raise _refusal(SchemaError(where, "has region labels but no regions_class_order"))
    if dataset.get("regions_class_order") and len(dataset["regions_class_order"]) != len(
            [k for k in labels if k not in ("background", "ignore")]):
        raise _refusal(SchemaError(f"{where}::regions_class_order", "needs one entry per region"))
    return [channels[str(i)] for i in range(len(channels))]


def read_dataset_json(folder: Path) -> dict[str, Any]:
    """A folder's ``dataset.json``, read bounded and checked (:func:`check_dataset_json`)."""
    from .config_files import read_mapping

    path = folder / "dataset.json"
    dataset = read_mapping(path, "nnU-Net dataset.json")
    check_dataset_json(dataset, str(path))
    return dataset


def label_names(dataset: dict[str, Any]) -> list[str]:
    """Class names of a checked dataset.json, by label value (regions after the plain labels)."""
    labels = dataset["labels"]
    return [n for n, v in sorted(labels.items(), key=lambda kv: kv[1] if isinstance(kv[1], int) else 10**6)]


def resolve_configuration(plans: dict[str, Any], name: str, where: str = "plans.json") -> dict[str, Any]:
    """One configuration with its ``inherits_from`` chain resolved as nnU-Net resolves it (the parent's entries,
    updated by the child's), refusing a missing parent, a cycle, or a chain longer than :data:`MAX_INHERITANCE`."""
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or name not in configs:
        raise _refusal(SchemaError(f"{where}::configurations", f"has no configuration {name!r}"))
    chain = [name]
    while True:
        cfg = configs[chain[-1]]
        if not isinstance(cfg, dict):
            raise _refusal(SchemaError(f"{where}::configurations::{chain[-1]}", "must be a mapping"))
        parent = cfg.get("inherits_from")
        if parent is None:
            break
        if not isinstance(parent, str) or parent not in configs:
            raise _refusal(SchemaError(f"{where}::configurations::{chain[-1]}::inherits_from",
                                       f"names {str(parent)[:60]!r}, which is not a configuration"))
        if parent in chain:
            raise _refusal(SchemaError(f"{where}::configurations::{chain[-1]}::inherits_from",
                                       f"makes a cycle ({' → '.join(chain + [parent])})"))
        if len(chain) >= MAX_INHERITANCE:
            raise _refusal(SchemaError(f"{where}::configurations::{name}", "inherits through more than "
                                       f"{MAX_INHERITANCE} configurations"))
        chain.append(parent)
    resolved: dict[str, Any] = {}
    for link in reversed(chain):
        resolved.update({k: v for k, v in configs[link].items() if k != "inherits_from"})
    return resolved


def _stage_facts(cfg: dict[str, Any], where: str, n_channels: int, plans_intensity: dict[str, Any] | None) -> None:
    """The cross-entry facts nnU-Net assumes in one resolved configuration (see the module docstring)."""
    dims = len(cfg["patch_size"])
    if len(cfg["spacing"]) != dims:
        raise _refusal(SchemaError(f"{where}::spacing", f"has {len(cfg['spacing'])} values for a {dims}D patch"))
    for key in ("normalization_schemes", "use_mask_for_norm"):
        if len(cfg[key]) != n_channels:
            raise _refusal(SchemaError(f"{where}::{key}", f"has {len(cfg[key])} entries for {n_channels} channel(s)"))
    for c, scheme in enumerate(cfg["normalization_schemes"]):
        props = (plans_intensity or {}).get(str(c))
        if scheme == "CTNormalization" and not (isinstance(props, dict) and {"mean", "std", "percentile_00_5",
                                                                             "percentile_99_5"} <= set(props)):
            raise _refusal(SchemaError(f"{where}::normalization_schemes::{c}", "is CTNormalization, but the plans' "
                                       f"foreground_intensity_properties_per_channel has no mean, std and "
                                       f"percentiles for channel {c}"))
    arch = cfg.get("architecture")
    if arch is None:
        if "UNet_class_name" not in cfg:
            raise _refusal(SchemaError(where, "has no architecture"))
        return
    kw = arch["arch_kwargs"]
    for key in arch.get("_kw_requires_import", []):
        if key not in kw:
            raise _refusal(SchemaError(f"{where}::architecture::_kw_requires_import", f"lists {key!r}, which is not "
                                       "among arch_kwargs"))
    n = kw["n_stages"]
    lists = {k: kw[k] for k in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage",
                                "n_blocks_per_stage") if isinstance(kw.get(k), list)}
    for key, values in lists.items():
        if len(values) != n:
            raise _refusal(SchemaError(f"{where}::architecture::arch_kwargs::{key}", f"has {len(values)} entries "
                                       f"for {n} stages"))
    dec = kw["n_conv_per_stage_decoder"]
    if isinstance(dec, list) and len(dec) != n - 1:
        raise _refusal(SchemaError(f"{where}::architecture::arch_kwargs::n_conv_per_stage_decoder",
                                   f"has {len(dec)} entries for {n - 1} decoder stages"))
    for key in ("kernel_sizes", "strides"):
        for i, k in enumerate(kw[key]):
            if isinstance(k, list) and len(k) != dims:
                raise _refusal(SchemaError(f"{where}::architecture::arch_kwargs::{key}::{i}",
                                           f"has {len(k)} values for a {dims}D patch"))
    if "n_conv_per_stage" not in kw and "n_blocks_per_stage" not in kw:
        raise _refusal(SchemaError(f"{where}::architecture::arch_kwargs", "has neither n_conv_per_stage nor "
                                   "n_blocks_per_stage"))
    feats = kw["features_per_stage"] if isinstance(kw["features_per_stage"], list) else [kw["features_per_stage"]] * n
    convs = kw.get("n_conv_per_stage", kw.get("n_blocks_per_stage"))
    convs = convs if isinstance(convs, list) else [convs] * n
    total, prev = 0, n_channels
    for s in range(n):
        k = kw["kernel_sizes"][s]
        size = 1
        for v in (k if isinstance(k, list) else [k] * dims):
            size *= v
        total += 3 * convs[s] * feats[s] * (prev + feats[s]) * size  # encoder, decoder and skip, generously
        prev = feats[s]
    if total > MAX_PARAMETERS:
        raise _refusal(SchemaError(f"{where}::architecture::arch_kwargs", f"describes a network of about {total:.3g} "
                                   f"weights (at most {MAX_PARAMETERS:.3g})"))


def check_plans(plans: dict[str, Any], dataset: dict[str, Any], trust: bool, where: str = "plans.json") -> None:
    """Check plans.json (every configuration, inheritance resolved) against :data:`PLANS`, :data:`CONFIGURATION` and
    the cross-entry facts, with the dataset's channel count. With ``trust`` only the inheritance is checked.

    Raises:
        NnUNetSchemaError: the first rule broken, naming the entry (``risk`` = "code" for an unsafe name).
    """
    if not trust:
        _check(plans, PLANS, where)
        fwd, bwd = plans["transpose_forward"], plans["transpose_backward"]
        if sorted(fwd) != [0, 1, 2] or [fwd[b] for b in bwd] != [0, 1, 2]:
            raise _refusal(SchemaError(f"{where}::transpose_backward", "must undo transpose_forward (both "
                                       "permutations of 0, 1, 2)"))
    n_channels = len(dataset.get("channel_names", dataset.get("modality")) or {}) or 1
    for name in plans.get("configurations", {}) if isinstance(plans.get("configurations"), dict) else []:
        cfg = resolve_configuration(plans, name, where)
        if not trust:
            _check(cfg, CONFIGURATION, f"{where}::configurations::{name}")
            intensity = plans.get("foreground_intensity_properties_per_channel",
                                  plans.get("foreground_intensity_properties_by_modality"))
            _stage_facts(cfg, f"{where}::configurations::{name}", n_channels, intensity)


def checked_plans(plans: dict[str, Any], configuration: str, trust: bool) -> dict[str, Any]:
    """What nnU-Net sees: the schema's top-level entries and the one ``configuration``, inheritance resolved and
    known entries only (everything, unchanged, with ``trust``)."""
    if trust:
        return plans
    top = {k: v for k, v in plans.items() if k in PLANS.fields and k != "configurations"}
    cfg = resolve_configuration(plans, configuration)
    top["configurations"] = {configuration: {k: v for k, v in cfg.items() if k in CONFIGURATION.fields}}
    return top


def checked_dataset(dataset: dict[str, Any], trust: bool) -> dict[str, Any]:
    """What nnU-Net sees of dataset.json: the schema's entries only (everything with ``trust``)."""
    return dataset if trust else {k: v for k, v in dataset.items() if k in DATASET.fields}
