"""The typed schema of a MONAI bundle config: every class a bundle may build without ``--trust-model-code``, the
arguments it may be given, and their types.

:data:`CLASSES` maps a ``_target_`` (short name, or the full public path in :attr:`ClassSpec.path`) to its role
(``network``, ``transform``, ``inferer``, ``splitter``) and its arguments. An argument that is not listed is
refused, so MONAI's catch-all ``**kwargs`` and callable arguments (``select_fn``, ``post_func``, ``other``,
``filter_fn``, ``norm_layer``, ``preprocess`` …) never reach MONAI from an untrusted bundle. Arguments that MONAI,
torch or a network resolves *by name* are :class:`~.schema_types.SafeName` lists:

- ``LoadImage(d)``'s ``reader`` — MONAI looks the name up in ``monai.data``, else imports it with ``pydoc.locate``:
  only the exact names of MONAI's own readers (:data:`READERS`) are accepted;
- ``PatchInferer``'s ``merger_cls`` — the same lookup in ``monai.inferers.merger``: only ``AvgMerger``;
- networks' activation / normalisation / dropout layers (``act``, ``norm``, ``dropout``, ``act_name``, ``norm_name``,
  ``acti_type``, ``norm_type``) — names from MONAI's layer factories (:data:`ACTIVATIONS`, :data:`NORMS`,
  :data:`DROPOUTS`), alone or as ``[name, {plain keyword arguments}]``;
- backbones and model names (``FlexibleUNet``, ``EfficientNetBN``) — MONAI's own tables.

Nested components are allowed only where an argument's type is :class:`Component` (``Compose.transforms``,
``Invertd.transform``, ``PatchInferer.splitter``); a ``_target_`` anywhere else is refused. Arguments that would
download (``pretrained=true``, ``pretrained_url``) must keep their offline value. Sizes are bounded (channels,
windows, batch sizes, target spacings) so that building a network or a transform cannot exhaust memory.
``Testing/test_bundle_schema.py`` checks this table against MONAI's signatures, so it cannot drift from MONAI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .schema_types import (
    AnyOf,
    Bool,
    Const,
    Data,
    Int,
    Map,
    Num,
    SafeName,
    SchemaError,
    Seq,
    Spec,
    Str,
    Walk,
    kind_of,
    one_or_seq,
    opt,
)

#: MONAI's image readers, by the exact names ``monai.data`` exports (a lower-case or unknown name would reach
#: ``pydoc.locate``, which imports a module of that name).
READERS = ("ITKReader", "NibabelReader", "NrrdReader", "NumpyReader", "PILReader", "PydicomReader")
#: MONAI's layer factories (``monai.networks.layers.factories``), compared case-insensitively as MONAI does.
ACTIVATIONS = ("celu", "elu", "gelu", "leakyrelu", "logsoftmax", "memswish", "mish", "prelu", "relu", "relu6",
               "selu", "sigmoid", "softmax", "swish", "tanh")
NORMS = ("batch", "group", "instance", "layer", "localresponse", "syncbatch")
DROPOUTS = ("dropout", "alphadropout")
MERGERS = ("AvgMerger", "monai.inferers.AvgMerger", "monai.inferers.merger.AvgMerger")
EFFICIENTNETS = tuple(f"efficientnet-b{i}" for i in range(8))
DTYPES = ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool")
DEVICES = ("cpu", "cuda", "mps") + tuple(f"cuda:{i}" for i in range(16))
ROLES = ("network", "transform", "inferer", "splitter")


@dataclass(frozen=True)
class ClassSpec:
    """One allowed ``_target_``: its full public path, its role and its arguments (name → type)."""

    path: str
    role: str
    args: dict[str, Spec] = field(default_factory=dict)
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerName(Spec):
    """A MONAI layer-factory name, or ``[name, {keyword arguments}]`` with plain scalar arguments."""

    names: tuple[str, ...]
    what: str

    def check(self, value: Any, where: str, walk: Walk) -> None:
        name = SafeName(self.names, self.what, fold_case=True)
        if isinstance(value, list) and len(value) == 2:
            walk(value[0], name, f"{where}::0")
            walk(value[1], Map(extra=Data(depth=1), max_keys=16), f"{where}::1")
            return
        if isinstance(value, str):
            walk(value, name, where)
            return
        raise self.fail(value, where)

    def describe(self) -> str:
        return f"a {self.what} name or [name, {{arguments}}]"


@dataclass(frozen=True)
class Component(Spec):
    """A nested ``{"_target_": …}`` whose class has one of ``roles`` (checked against :data:`CLASSES`)."""

    roles: tuple[str, ...]

    def check(self, value: Any, where: str, walk: Walk) -> None:
        if not isinstance(value, dict) or "_target_" not in value:
            raise self.fail(value, where)
        spec = resolve_target(value["_target_"])
        if spec is None or spec.role not in self.roles:
            raise SchemaError(where, f"instantiates {str(value['_target_'])[:80]!r}, which is not a "
                              f"{'/'.join(self.roles)} in MedXAI's schema of MONAI classes", "code")
        for key in ("_requires_",):
            if key in value:
                raise SchemaError(f"{where}::{key}", "runs other entries before this one", "code")
        if "_mode_" in value and value["_mode_"] != "default":
            raise SchemaError(f"{where}::_mode_", f"asks for mode {kind_of(value['_mode_'])}; only 'default' "
                              "(build the object) is allowed", "code")
        if "_disabled_" in value:
            walk(value["_disabled_"], Bool(), f"{where}::_disabled_")
        if "_desc_" in value:
            walk(value["_desc_"], Str(max_len=4096), f"{where}::_desc_")
        args = {k: v for k, v in value.items() if k not in ("_target_", "_mode_", "_disabled_", "_desc_")}
        Map(fields=spec.args, required=spec.required).check(args, where, walk)

    def describe(self) -> str:
        return f"a {'/'.join(self.roles)} component"


def resolve_target(target: Any) -> ClassSpec | None:
    """The schema entry of a ``_target_`` (short name or full public path, exactly), else None. Imports nothing."""
    if not isinstance(target, str):
        return None
    spec = CLASSES.get(target)
    if spec is not None:
        return spec
    short = target.rsplit(".", 1)[-1]
    spec = CLASSES.get(short)
    return spec if spec is not None and spec.path == target else None


# ---- argument types ------------------------------------------------------------------------------------------------
CH = Int(1, 4096)
SPATIAL_DIMS = Int(1, 3)
KEYS = one_or_seq(Str(max_len=128), 32)
KEYED: dict[str, Spec] = {"keys": KEYS, "allow_missing_keys": Bool()}
LAZY: dict[str, Spec] = {"lazy": Bool()}
DTYPE = opt(Str(DTYPES))
DEVICE = opt(Str(DEVICES))
INTERP = AnyOf((Str(("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")),
                Int(0, 5)))
PAD_MODE = Str(("zeros", "border", "reflection", "constant", "edge", "reflect", "symmetric", "wrap", "empty",
                "minimum", "maximum", "mean", "median", "replicate", "circular", "linear_ramp"))
PAD_METHOD = Str(("symmetric", "end"))
BOOLS = one_or_seq(Bool(), 32)
SIZE = one_or_seq(Int(-1, 2048))
AXES = opt(one_or_seq(Int(-4, 4)))
NUMS = opt(AnyOf((Num(), Seq(Num(), 1, 64))))
LABELS = opt(one_or_seq(Int(0, 65535), 1024))
PROB = Num(0.0, 1.0)
ACT = LayerName(ACTIVATIONS, "MONAI's activation factory")
NORM = LayerName(NORMS, "MONAI's normalisation factory")
DROPOUT = AnyOf((opt(PROB), LayerName(DROPOUTS, "MONAI's dropout factory")))
KERNEL = one_or_seq(Int(1, 15))
STRIDE = one_or_seq(Int(1, 8))
#: A target spacing in mm: at least 0.01 mm (a finer one would make a huge grid), or <= 0 to keep the input's.
PIXDIM = one_or_seq(AnyOf((Num(0.01, 1e3), Num(-1e3, 0.0))))
NO_DOWNLOAD = Const(False, "true would download pretrained weights while the network is built")


def _pair(name: str, path: str, args: dict[str, Spec], dict_extra: dict[str, Spec] | None = None,
          required: tuple[str, ...] = ()) -> dict[str, ClassSpec]:
    """A MONAI transform and its dictionary version ``<name>d`` (``keys`` and ``allow_missing_keys`` added)."""
    return {name: ClassSpec(f"{path}.{name}", "transform", dict(args), required),
            f"{name}d": ClassSpec(f"{path}.{name}d", "transform", {**KEYED, **args, **(dict_extra or {})},
                                  ("keys",) + required)}


_T = "monai.transforms"
_LOAD = {"reader": opt(one_or_seq(SafeName(READERS, "MONAI's LoadImage (monai.data, else pydoc.locate)"), 8)),
         "image_only": Bool(), "dtype": DTYPE, "ensure_channel_first": Bool(), "simple_keys": Bool(),
         "prune_meta_pattern": opt(Str()), "prune_meta_sep": Str(max_len=8), "expanduser": Bool()}
_TRANSFORMS: dict[str, ClassSpec] = {
    **_pair("LoadImage", _T, _LOAD, {"meta_keys": opt(KEYS), "meta_key_postfix": Str(max_len=64),
                                     "overwriting": Bool()}),
    **_pair("EnsureChannelFirst", _T, {"strict_check": Bool(), "channel_dim": opt(AnyOf((Int(-8, 8),
                                                                                       Str(("no_channel",)))))}),
    **_pair("EnsureType", _T, {"data_type": Str(("tensor", "numpy")), "dtype": DTYPE, "device": DEVICE,
                               "wrap_sequence": Bool(), "track_meta": opt(Bool())}),
    **_pair("ToTensor", _T, {"dtype": DTYPE, "device": DEVICE, "wrap_sequence": Bool(), "track_meta": opt(Bool())}),
    **_pair("CastToType", _T, {"dtype": one_or_seq(DTYPE)}),
    **_pair("ToDevice", _T, {"device": DEVICE}, required=("device",)),
    **_pair("SqueezeDim", _T, {"dim": Int(-8, 8), "update_meta": Bool()}),
    **_pair("SplitDim", _T, {"dim": Int(-8, 8), "keepdim": Bool(), "update_meta": Bool()},
            {"output_postfixes": opt(Seq(Str(max_len=64), 1, 64)), "list_output": Bool()}),
    **_pair("Transpose", _T, {"indices": opt(Seq(Int(0, 8), 1, 8))}),
    **_pair("Orientation", _T, {"axcodes": opt(Str(max_len=3)), "as_closest_canonical": Bool(),
                                "labels": opt(Seq(Seq(Str(max_len=1), 2, 2), 3, 3)), **LAZY}),
    **_pair("Spacing", _T, {"pixdim": PIXDIM, "diagonal": Bool(), "mode": one_or_seq(INTERP),
                            "padding_mode": one_or_seq(PAD_MODE), "align_corners": BOOLS, "dtype": one_or_seq(DTYPE),
                            "scale_extent": Bool(), "recompute_affine": Bool(), "min_pixdim": opt(PIXDIM),
                            "max_pixdim": opt(PIXDIM), **LAZY}, {"ensure_same_shape": Bool()}, ("pixdim",)),
    **_pair("Resize", _T, {"spatial_size": SIZE, "size_mode": Str(("all", "longest")), "mode": one_or_seq(INTERP),
                           "align_corners": opt(BOOLS), "anti_aliasing": BOOLS, "anti_aliasing_sigma": NUMS,
                           "dtype": one_or_seq(DTYPE), **LAZY}, required=("spatial_size",)),
    **_pair("SpatialPad", _T, {"spatial_size": SIZE, "method": PAD_METHOD, "mode": one_or_seq(PAD_MODE), **LAZY},
            required=("spatial_size",)),
    **_pair("DivisiblePad", _T, {"k": one_or_seq(Int(1, 1024)), "mode": one_or_seq(PAD_MODE), "method": PAD_METHOD,
                                 **LAZY}, required=("k",)),
    **_pair("CenterSpatialCrop", _T, {"roi_size": one_or_seq(Int(-1, 4096)), **LAZY}, required=("roi_size",)),
    **_pair("ResizeWithPadOrCrop", _T, {"spatial_size": SIZE, "method": PAD_METHOD, "mode": one_or_seq(PAD_MODE),
                                        **LAZY}, required=("spatial_size",)),
    **_pair("CropForeground", _T, {"channel_indices": opt(one_or_seq(Int(0, 64))), "margin": one_or_seq(Int(0, 1024)),
                                   "allow_smaller": Bool(), "k_divisible": one_or_seq(Int(1, 1024)),
                                   "mode": one_or_seq(PAD_MODE), **LAZY},
            {"source_key": Str(max_len=128), "start_coord_key": opt(Str(max_len=128)),
             "end_coord_key": opt(Str(max_len=128))}),
    **_pair("Flip", _T, {"spatial_axis": AXES, **LAZY}),
    **_pair("Rotate90", _T, {"k": Int(-4, 4), "spatial_axes": Seq(Int(-4, 4), 2, 2), **LAZY}),
    **_pair("Zoom", _T, {"zoom": one_or_seq(Num(0.05, 20.0)), "mode": one_or_seq(INTERP),
                         "padding_mode": one_or_seq(PAD_MODE), "align_corners": opt(BOOLS),
                         "dtype": one_or_seq(DTYPE), "keep_size": Bool(), **LAZY}, required=("zoom",)),
    **_pair("NormalizeIntensity", _T, {"subtrahend": NUMS, "divisor": NUMS, "nonzero": Bool(),
                                       "channel_wise": Bool(), "dtype": DTYPE}),
    **_pair("ScaleIntensity", _T, {"minv": opt(Num()), "maxv": opt(Num()), "factor": opt(Num()),
                                   "channel_wise": Bool(), "dtype": DTYPE}),
    **_pair("ScaleIntensityRange", _T, {"a_min": Num(), "a_max": Num(), "b_min": opt(Num()), "b_max": opt(Num()),
                                        "clip": Bool(), "dtype": DTYPE}, required=("a_min", "a_max")),
    **_pair("ScaleIntensityRangePercentiles", _T, {
        "lower": Num(0, 100), "upper": Num(0, 100), "b_min": opt(Num()), "b_max": opt(Num()), "clip": Bool(),
        "relative": Bool(), "channel_wise": Bool(), "dtype": DTYPE}, required=("lower", "upper", "b_min", "b_max")),
    **_pair("ThresholdIntensity", _T, {"threshold": Num(), "above": Bool(), "cval": Num()}, required=("threshold",)),
    **_pair("ClipIntensityPercentiles", _T, {"lower": opt(Num(0, 100)), "upper": opt(Num(0, 100)),
                                             "sharpness_factor": opt(Num(0, 1e6)), "channel_wise": Bool(),
                                             "dtype": DTYPE}, required=("lower", "upper")),
    **_pair("Activations", _T, {"sigmoid": BOOLS, "softmax": BOOLS, "dim": Int(-8, 8)}),
    **_pair("AsDiscrete", _T, {"argmax": BOOLS, "to_onehot": opt(one_or_seq(opt(Int(1, 1024)))),
                               "threshold": opt(one_or_seq(opt(Num()))),
                               "rounding": opt(one_or_seq(opt(Str(("torchrounding",))))),
                               "dim": Int(-8, 8), "keepdim": Bool(), "dtype": DTYPE}),
    **_pair("KeepLargestConnectedComponent", _T, {"applied_labels": LABELS, "is_onehot": opt(Bool()),
                                                  "independent": Bool(), "connectivity": opt(Int(1, 3)),
                                                  "num_components": Int(1, 1000)}),
    **_pair("RemoveSmallObjects", _T, {"min_size": Num(0, 1e12), "connectivity": Int(1, 3),
                                       "independent_channels": Bool(), "by_measure": Bool(), "pixdim": NUMS}),
    **_pair("FillHoles", _T, {"applied_labels": LABELS, "connectivity": opt(Int(1, 3))}),
    **_pair("LabelFilter", _T, {"applied_labels": one_or_seq(Int(0, 65535), 1024)}, required=("applied_labels",)),
    "Identityd": ClassSpec(f"{_T}.Identityd", "transform", dict(KEYED), ("keys",)),
    "Identity": ClassSpec(f"{_T}.Identity", "transform", {}),
    "CopyItemsd": ClassSpec(f"{_T}.CopyItemsd", "transform", {**KEYED, "times": Int(1, 16),
                                                              "names": opt(KEYS)}, ("keys",)),
    "DeleteItemsd": ClassSpec(f"{_T}.DeleteItemsd", "transform", {"keys": KEYS, "sep": Str(max_len=8),
                                                                  "use_re": Bool()}, ("keys",)),
    "ConcatItemsd": ClassSpec(f"{_T}.ConcatItemsd", "transform", {**KEYED, "name": Str(max_len=128),
                                                                  "dim": Int(-8, 8)}, ("keys", "name")),
    "Invertd": ClassSpec(f"{_T}.Invertd", "transform", {
        **KEYED, "transform": Component(("transform",)), "orig_keys": opt(KEYS), "meta_keys": opt(KEYS),
        "orig_meta_keys": opt(KEYS), "meta_key_postfix": Str(max_len=64), "nearest_interp": BOOLS,
        "to_tensor": BOOLS, "device": opt(one_or_seq(DEVICE))}, ("keys", "transform")),
    "Compose": ClassSpec(f"{_T}.Compose", "transform", {
        "transforms": opt(AnyOf((Component(("transform",)), Seq(Component(("transform",)), 0, 128)))),
        "map_items": Bool(), "unpack_items": Bool(), "log_stats": Bool(), "lazy": opt(Bool())}),
}

_N = "monai.networks.nets"
_IO = {"spatial_dims": SPATIAL_DIMS, "in_channels": CH, "out_channels": CH}


def _net(name: str, args: dict[str, Spec], required: tuple[str, ...] = ()) -> dict[str, ClassSpec]:
    return {name: ClassSpec(f"{_N}.{name}", "network", args, required)}


_UNET = {**_IO, "channels": Seq(CH, 1, 16), "strides": Seq(STRIDE, 0, 16), "kernel_size": KERNEL,
         "up_kernel_size": KERNEL}
_BASIC = {**_IO, "features": Seq(CH, 6, 6), "act": ACT, "norm": NORM, "bias": Bool(), "dropout": DROPOUT,
          "upsample": Str(("deconv", "pixelshuffle", "nontrainable"))}
_DENSE = {**_IO, "init_features": CH, "growth_rate": Int(1, 512), "block_config": Seq(Int(1, 128), 1, 8),
          "bn_size": Int(1, 16), "act": ACT, "norm": NORM, "dropout_prob": PROB}
_SEGRES = {**_IO, "init_filters": CH, "act": ACT, "norm": NORM, "blocks_down": Seq(Int(1, 16), 1, 8),
           "upsample_mode": Str(("deconv", "nontrainable", "pixelshuffle"))}
_NETWORKS: dict[str, ClassSpec] = {
    **_net("UNet", {**_UNET, "num_res_units": Int(0, 16), "act": ACT, "norm": NORM, "dropout": DROPOUT,
                    "bias": Bool(), "adn_ordering": Str(max_len=3)},
           ("spatial_dims", "in_channels", "out_channels", "channels", "strides")),
    **_net("AutoEncoder", {**_UNET, "num_res_units": Int(0, 16), "inter_channels": opt(Seq(CH, 0, 16)),
                           "inter_dilations": opt(Seq(Int(1, 16), 0, 16)), "num_inter_units": Int(0, 16),
                           "act": opt(ACT), "norm": NORM, "dropout": opt(DROPOUT), "bias": Bool(),
                           "padding": opt(one_or_seq(Int(0, 16)))},
           ("spatial_dims", "in_channels", "out_channels", "channels", "strides")),
    **_net("AttentionUnet", {**_UNET, "dropout": PROB},
           ("spatial_dims", "in_channels", "out_channels", "channels", "strides")),
    **_net("BasicUNet", _BASIC),
    **_net("BasicUNetPlusPlus", {**_BASIC, "deep_supervision": Bool()}),
    **_net("SegResNet", {**_SEGRES, "dropout_prob": opt(PROB), "norm_name": Str(max_len=32),
                         "num_groups": Int(1, 512), "use_conv_final": Bool(), "blocks_up": Seq(Int(1, 16), 0, 8)}),
    **_net("SegResNetDS", {**_SEGRES, "blocks_up": opt(Seq(Int(1, 16), 0, 8)), "dsdepth": Int(1, 8),
                           "resolution": opt(Seq(Num(1e-3, 1e3), 1, 3))}),
    **_net("DynUNet", {**_IO, "kernel_size": Seq(KERNEL, 1, 16), "strides": Seq(STRIDE, 1, 16),
                       "upsample_kernel_size": Seq(STRIDE, 0, 16), "filters": opt(Seq(CH, 1, 16)),
                       "dropout": opt(DROPOUT), "norm_name": NORM, "act_name": ACT, "deep_supervision": Bool(),
                       "deep_supr_num": Int(1, 8), "res_block": Bool(), "trans_bias": Bool()},
           ("spatial_dims", "in_channels", "out_channels", "kernel_size", "strides", "upsample_kernel_size")),
    **_net("UNETR", {**_IO, "img_size": one_or_seq(Int(1, 1024)), "feature_size": CH, "hidden_size": Int(1, 8192),
                     "mlp_dim": Int(1, 16384), "num_heads": Int(1, 64), "proj_type": Str(("conv", "perceptron")),
                     "norm_name": NORM, "conv_block": Bool(), "res_block": Bool(), "dropout_rate": PROB,
                     "qkv_bias": Bool(), "save_attn": Bool()}, ("in_channels", "out_channels", "img_size")),
    **_net("SwinUNETR", {**_IO, "patch_size": Int(1, 8), "depths": Seq(Int(1, 32), 1, 8),
                         "num_heads": Seq(Int(1, 64), 1, 8), "window_size": one_or_seq(Int(1, 32)),
                         "qkv_bias": Bool(), "mlp_ratio": Num(0.1, 16), "feature_size": CH, "norm_name": NORM,
                         "drop_rate": PROB, "attn_drop_rate": PROB, "dropout_path_rate": PROB, "normalize": Bool(),
                         "patch_norm": Bool(), "use_checkpoint": Bool(), "downsample": Str(("merging", "mergingv2")),
                         "use_v2": Bool()}, ("in_channels", "out_channels")),
    **_net("VNet", {**_IO, "act": ACT, "dropout_prob": opt(PROB), "dropout_prob_down": opt(PROB),
                    "dropout_prob_up": Seq(opt(PROB), 2, 2), "dropout_dim": Int(1, 3), "bias": Bool()}),
    **_net("HighResNet", {**_IO, "norm_type": NORM, "acti_type": ACT, "dropout_prob": PROB, "bias": Bool(),
                          "layer_params": Seq(Map(fields={"name": Str(max_len=64), "n_features": CH,
                                                          "kernel_size": Int(1, 15),
                                                          "kernels": Seq(Int(1, 15), 1, 8),
                                                          "repeat": Int(1, 16)}), 1, 32),
                          "channel_matching": Str(("pad", "project"))}),
    **{n: ClassSpec(f"{_N}.{n}", "network", {**_DENSE, "pretrained": NO_DOWNLOAD, "progress": Bool()},
                    ("spatial_dims", "in_channels", "out_channels"))
       for n in ("DenseNet121", "DenseNet169", "DenseNet201", "DenseNet264")},
    **_net("DenseNet", _DENSE, ("spatial_dims", "in_channels", "out_channels")),
    **_net("EfficientNetBN", {"model_name": Str(EFFICIENTNETS), "pretrained": NO_DOWNLOAD, "progress": Bool(),
                              "spatial_dims": SPATIAL_DIMS, "in_channels": CH, "num_classes": CH, "norm": NORM,
                              "adv_prop": Bool()}, ("model_name",)),
    **_net("FlexibleUNet", {**_IO, "backbone": Str(EFFICIENTNETS), "pretrained": NO_DOWNLOAD,
                            "decoder_channels": Seq(CH, 1, 8), "norm": NORM, "act": ACT, "dropout": DROPOUT,
                            "decoder_bias": Bool(), "upsample": Str(("deconv", "pixelshuffle", "nontrainable")),
                            "pre_conv": opt(Str(("default",))),
                            "interp_mode": Str(("nearest", "linear", "bilinear", "bicubic", "trilinear")),
                            "is_pad": Bool()}, ("in_channels", "out_channels", "backbone")),
    **_net("HoVerNet", {"mode": Str(("fast", "original")), "in_channels": CH, "np_out_channels": Int(1, 64),
                        "out_classes": Int(0, 1024), "act": ACT, "norm": NORM, "decoder_padding": Bool(),
                        "dropout_prob": PROB,
                        "pretrained_url": Const(None, "a pretrained URL would be downloaded while the network is "
                                                "built"),
                        "adapt_standard_resnet": Bool(), "pretrained_state_dict_key": Const(None, "no pretrained"),
                        "freeze_encoder": Bool()}),
    **_net("ViT", {"in_channels": CH, "img_size": one_or_seq(Int(1, 1024)), "patch_size": one_or_seq(Int(1, 256)),
                   "hidden_size": Int(1, 8192), "mlp_dim": Int(1, 16384), "num_layers": Int(1, 64),
                   "num_heads": Int(1, 64), "proj_type": Str(("conv", "perceptron")),
                   "pos_embed_type": Str(("none", "learnable", "sincos", "fourier")), "classification": Bool(),
                   "num_classes": CH, "dropout_rate": PROB, "spatial_dims": SPATIAL_DIMS,
                   "post_activation": opt(Str(("Tanh",), fold_case=False)), "qkv_bias": Bool(), "save_attn": Bool()},
           ("in_channels", "img_size", "patch_size")),
    **_net("ResNet", {"block": Str(("basic", "bottleneck")), "layers": Seq(Int(1, 64), 4, 4),
                      "block_inplanes": Seq(CH, 4, 4), "spatial_dims": SPATIAL_DIMS, "n_input_channels": CH,
                      "conv1_t_size": KERNEL, "conv1_t_stride": STRIDE, "no_max_pool": Bool(),
                      "shortcut_type": Str(("A", "B")), "widen_factor": Num(0.1, 8), "num_classes": CH,
                      "feed_forward": Bool(), "bias_downsample": Bool(), "act": ACT, "norm": NORM},
           ("block", "layers", "block_inplanes")),
}

_I = "monai.inferers"
_WINDOW = {"roi_size": one_or_seq(Int(-1, 1024)), "sw_batch_size": Int(1, 64),
           "overlap": one_or_seq(Num(0.0, 0.99)), "mode": Str(("constant", "gaussian")),
           "sigma_scale": one_or_seq(Num(1e-3, 10.0)), "padding_mode": Str(("constant", "reflect", "replicate",
                                                                             "circular")),
           "cval": Num(), "sw_device": DEVICE, "device": DEVICE, "progress": Bool(), "cache_roi_weight_map": Bool(),
           "cpu_thresh": opt(Int(0, 2**40)), "buffer_steps": opt(Int(1, 4096)), "buffer_dim": Int(-4, 4),
           "with_coord": Bool()}
_INFERERS: dict[str, ClassSpec] = {
    "SimpleInferer": ClassSpec(f"{_I}.SimpleInferer", "inferer"),
    "SlidingWindowInferer": ClassSpec(f"{_I}.SlidingWindowInferer", "inferer", _WINDOW, ("roi_size",)),
    "SlidingWindowInfererAdapt": ClassSpec(f"{_I}.SlidingWindowInfererAdapt", "inferer", _WINDOW, ("roi_size",)),
    "SliceInferer": ClassSpec(f"{_I}.SliceInferer", "inferer", {"spatial_dim": Int(0, 2), **_WINDOW},
                              ("roi_size",)),
    "PatchInferer": ClassSpec(f"{_I}.PatchInferer", "inferer", {
        "splitter": opt(Component(("splitter",))),
        "merger_cls": SafeName(MERGERS, "MONAI's PatchInferer (monai.inferers.merger, else pydoc.locate)"),
        "batch_size": Int(1, 64), "output_keys": opt(KEYS), "match_spatial_shape": Bool(),
        "buffer_size": Int(0, 64), "value_dtype": DTYPE, "count_dtype": DTYPE, "device": DEVICE}),
    "SlidingWindowSplitter": ClassSpec(f"{_I}.SlidingWindowSplitter", "splitter", {
        "patch_size": one_or_seq(Int(1, 1024)), "overlap": one_or_seq(Num(0.0, 0.99)),
        "offset": one_or_seq(Int(0, 1024)), "pad_mode": opt(Str(("constant", "reflect", "replicate", "circular"))),
        "device": DEVICE}, ("patch_size",)),
}

#: Every class a bundle may build without the trust flag (``_target_`` short name → schema entry).
CLASSES: dict[str, ClassSpec] = {**_TRANSFORMS, **_NETWORKS, **_INFERERS}
#: What each top-level entry MedXAI reads must be.
ENTRIES: dict[str, Spec] = {
    "network_def": Component(("network",)),
    "preprocessing": Component(("transform",)),
    "inferer": Component(("inferer",)),
    "postprocessing": Component(("transform",)),
}
#: Transforms MedXAI never builds (it writes its own outputs): dropped from postprocessing before checking.
ALWAYS_SKIPPED = ("SaveImage", "SaveImaged")
