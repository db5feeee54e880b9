"""The model-file schemas checked against the frameworks they describe (issue 22), not against themselves.

- Every class of the bundle schema is MONAI's, every argument it allows is one MONAI's constructor takes, and every
  callable-valued argument of MONAI's that it allows refuses a dotted callable name and an unknown component.
- Every safe name is resolved where MONAI / torch / nnU-Net resolve it first (``monai.data`` for readers, the layer
  factories, ``monai.inferers.merger``, ``torch.nn``, nnU-Net's own modules), so no safe name reaches
  ``pydoc.locate`` of a module outside them.
- References are resolved exactly as MONAI resolves them: MedXAI's ``resolve_relative_ids`` and reference matching
  against MONAI's ``ConfigParser.resolve_relative_ids`` and ``ReferenceResolver.match_refs_pattern``.
- The bounded readers against brute force: YAML alias expansion counted on the node graph equals the size of the
  expanded tree; JSON depth equals the depth of the parsed value.
- The Model Zoo bundles in the shared data pass the schema; the parser is built from checked entries only.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from MedXAILib.models import bundle_schema as bs
from MedXAILib.models import nnunet_schema as ns
from MedXAILib.models.bundle_config import (
    _REF,
    check_entries,
    pruned_config,
    resolve_relative_ids,
    safe_parser,
)
from MedXAILib.models.config_files import _bracket_depth, _yaml_graph_size
from MedXAILib.models.schema_types import SchemaError, plain_walk

ZOO = Path(os.environ.get("MEDXAI_TEST_DATA", "/nonexistent")) / "monai-model-zoo"
#: Arguments MONAI passes on through ``**kwargs`` (to the class named here): allowed because that class takes them.
FORWARDED = {"Activations": None, "Activationsd": None, "AsDiscrete": None, "AsDiscreted": None,
             "PatchInferer": "monai.inferers.merger.AvgMerger", "SliceInferer": "monai.inferers.SlidingWindowInferer",
             "DenseNet121": "monai.networks.nets.DenseNet", "DenseNet169": "monai.networks.nets.DenseNet",
             "DenseNet201": "monai.networks.nets.DenseNet", "DenseNet264": "monai.networks.nets.DenseNet"}
#: Keyword arguments MONAI's Activations / AsDiscrete read from ``**kwargs`` (their documented options).
DOCUMENTED_KWARGS = {"Activations": {"dim"}, "Activationsd": {"dim"}, "AsDiscrete": {"dim", "keepdim", "dtype"},
                     "AsDiscreted": {"dim", "keepdim", "dtype"}}


def _locate(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _params(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls.__init__).parameters)


@pytest.mark.parametrize("name", sorted(bs.CLASSES))
def test_every_allowed_class_and_argument_is_monais(name: str) -> None:
    spec = bs.CLASSES[name]
    cls = _locate(spec.path)
    assert inspect.isclass(cls) and cls.__name__ == name
    params = _params(cls)
    forwarded = FORWARDED.get(name)
    extra = set(_params(_locate(forwarded))) if forwarded else DOCUMENTED_KWARGS.get(name, set())
    for arg in spec.args:
        assert arg in params or arg in extra, f"{name}: MONAI takes no argument {arg!r}"
    for arg, p in params.items():
        default, note = p.default, str(p.annotation)
        callable_valued = (callable(default) and default is not inspect.Parameter.empty) or "Callable" in note \
            or "type[" in note or "Type[" in note
        if callable_valued and arg in spec.args:  # allowed only as a safe name, a dtype name or a checked component
            for attack in ("builtins.print", "os.system", {"_target_": "builtins.print"}):
                with pytest.raises(SchemaError):
                    plain_walk(attack, spec.args[arg], f"{name}::{arg}")


def test_safe_names_resolve_before_monai_reaches_pydoc_locate() -> None:
    import monai.data
    import monai.inferers.merger
    from monai.networks.layers.factories import Act, Dropout, Norm
    from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

    for reader in bs.READERS:
        assert inspect.isclass(getattr(monai.data, reader)), reader  # found by optional_import("monai.data", name)
    assert {n.upper() for n in bs.ACTIVATIONS} <= set(Act.names)
    assert {n.upper() for n in bs.NORMS} <= set(Norm.names)
    assert {n.upper() for n in bs.DROPOUTS} <= set(Dropout.names)
    assert bs.MERGERS[0] in vars(monai.inferers.merger)
    assert all(_locate(m) is monai.inferers.merger.AvgMerger for m in bs.MERGERS[1:])
    assert set(bs.EFFICIENTNETS) <= set(FLEXUNET_BACKBONE.register_dict)


def test_nnunet_safe_names_are_nnuneets_and_torchs() -> None:
    pytest.importorskip("nnunetv2")
    import torch
    from dynamic_network_architectures.architectures import unet
    from nnunetv2.imageio import reader_writer_registry
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as norms
    from nnunetv2.preprocessing.preprocessors import default_preprocessor
    from nnunetv2.preprocessing.resampling import default_resampling, no_resampling, resample_torch

    assert all(issubclass(_locate(n), torch.nn.modules.conv._ConvNd) for n in ns.CONV_OPS)
    assert all(issubclass(_locate(n), torch.nn.Module) for n in ns.NORM_OPS + ns.NONLINS)
    assert all(issubclass(_locate(n), torch.nn.modules.dropout._DropoutNd) for n in ns.DROPOUT_OPS)
    assert [_locate(n) for n in ns.NETWORKS[:2]] == [unet.PlainConvUNet, unet.ResidualEncoderUNet]
    assert all(hasattr(norms, n) for n in ns.NORMALIZATIONS)
    assert all(any(hasattr(m, n) for m in (default_resampling, no_resampling, resample_torch))
               for n in ns.RESAMPLING)
    assert all(hasattr(default_preprocessor, n) for n in ns.PREPROCESSORS)
    assert {c.__name__ for c in reader_writer_registry.LIST_OF_IO_CLASSES} >= set(ns.READER_WRITERS)


RELATIVE = ["@::a", "@::::a", "%::b::0", "$@::x + @::::y", "@a#b#c", "plain#text", "@::::::top", "@a::b"]


@pytest.mark.parametrize("value", RELATIVE)
def test_references_resolve_as_monai_resolves_them(value: str) -> None:
    from monai.bundle import ConfigParser
    from monai.bundle.reference_resolver import ReferenceResolver

    entry = "net::layers::2"
    assert resolve_relative_ids(entry, value) == ConfigParser.resolve_relative_ids(entry, value)
    resolved = resolve_relative_ids(entry, value)
    monai_refs = ReferenceResolver.match_refs_pattern(resolved)
    ours = {resolved[1:]: 1} if _REF.fullmatch(resolved) else {}
    if not resolved.startswith("$"):
        assert ours == monai_refs


def test_a_reference_above_the_top_is_refused_as_monai_refuses_it() -> None:
    from monai.bundle import ConfigParser

    with pytest.raises(ValueError):
        ConfigParser.resolve_relative_ids("a::b", "@::::::x")
    with pytest.raises(SchemaError):
        resolve_relative_ids("a::b", "@::::::x")


def _count(value: Any) -> int:
    if isinstance(value, list):
        return 1 + sum(_count(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(1 + _count(v) for v in value.values())
    return 1


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@pytest.mark.parametrize("seed", range(6))
def test_yaml_alias_expansion_is_counted_without_expanding(seed: int) -> None:
    import yaml

    rng = np.random.default_rng(seed)
    lines = ["a0: &a0 [1, 2]"]
    for n in range(1, 7):
        refs = ", ".join(f"*a{int(rng.integers(n))}" for _ in range(int(rng.integers(1, 4))))
        lines.append(f"a{n}: &a{n} [{refs}, {n}]")
    text = "\n".join(lines) + "\n"
    nodes, depth = _yaml_graph_size(yaml.compose(text, Loader=yaml.SafeLoader))
    value = yaml.safe_load(text)
    assert nodes == _count(value)
    assert depth - 1 == _depth(value)


@pytest.mark.parametrize("seed", range(4))
def test_json_depth_is_measured_before_parsing(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def build(level: int) -> Any:
        if level == 0 or rng.random() < 0.2:
            return ["a]b", '"}{'][int(rng.integers(2))]
        return [build(level - 1)] if rng.random() < 0.5 else {"k[": build(level - 1)}

    value = {"x": build(int(rng.integers(1, 12))), "y": [1, [2]]}
    assert _bracket_depth(json.dumps(value)) == _depth(value)


@pytest.mark.skipif(not ZOO.is_dir(), reason="MEDXAI_TEST_DATA with monai-model-zoo/ not available")
@pytest.mark.parametrize("name", ["spleen_ct_segmentation", "brats_mri_segmentation"])
def test_model_zoo_bundles_pass_and_the_parser_sees_only_checked_entries(name: str) -> None:
    config = json.loads((ZOO / name / "configs" / "inference.json").read_text())
    post = config["postprocessing"]["transforms"]
    config["postprocessing"]["transforms"] = [t for t in post if t["_target_"] not in ("SaveImaged", "Lambdad")]
    ids = check_entries(config, ["network_def", "preprocessing", "inferer", "postprocessing"])
    pruned = pruned_config(config, ids)
    assert set(pruned) <= {"network_def", "preprocessing", "inferer", "postprocessing", "image_key"}
    text = json.dumps(pruned)
    assert "$" not in text and "imports" not in pruned and "initialize" not in pruned
    parser = safe_parser(config, ids, ZOO / name)
    assert type(parser.get_parsed_content("inferer")).__name__ == "SlidingWindowInferer"


def test_pruned_config_keeps_only_the_referenced_path() -> None:
    config = {"keys": {"img": "image", "evil": "$print('x')"}, "list": ["$bad", "image", "$worse"],
              "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                              "channels": [4, 8], "strides": [2]},
              "preprocessing": {"_target_": "Compose", "transforms": [
                  {"_target_": "EnsureTyped", "keys": "@keys#img"}, {"_target_": "Identityd", "keys": "@list::1"}]},
              "inferer": {"_target_": "SimpleInferer"}}
    ids = check_entries(config, ["network_def", "preprocessing", "inferer"])
    pruned = pruned_config(config, ids)
    assert pruned["keys"] == {"img": "image"} and pruned["list"] == [None, "image", None]


def test_plans_written_by_nnunets_planner_pass(nnunet_plans_example: dict[str, Any]) -> None:
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "numTraining": 3,
               "file_ending": ".nii.gz"}
    ns.check_dataset_json(dataset)
    ns.check_plans(nnunet_plans_example, dataset, trust=False)
    kept = ns.checked_plans(nnunet_plans_example, "3d_fullres", trust=False)
    assert list(kept["configurations"]) == ["3d_fullres"]


@pytest.fixture()
def nnunet_plans_example() -> dict[str, Any]:
    from model_file_cases import nnunet_plans

    plans = nnunet_plans()
    plans["configurations"]["3d_lowres"] = {"inherits_from": "3d_fullres", "spacing": [4.0, 3.0, 3.0],
                                            "data_identifier": "nnUNetPlans_3d_lowres"}
    return plans
