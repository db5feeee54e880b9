"""Model files as an attacker or a careless author writes them (issue 22): the world, the payloads and the cases.

The world (:func:`make_world`) is a tiny MONAI bundle (a MONAI ``UNet`` with seeded weights), a tiny nnU-Net v2
trained-model folder (plans.json and dataset.json in the format nnU-Net's planner writes, and a checkpoint of a
``PlainConvUNet`` built directly with ``dynamic_network_architectures``), and a small oblique CT-like volume.

The payload (:func:`plant_payload`) is a module on a temporary ``sys.path`` entry whose *import* touches a marker
file, plus ``itkreader.py`` / ``nibabelreader.py`` (the lower-case reader names MONAI hands to ``pydoc.locate``), and a
``file://`` URL to a weights file: a download lands in ``$TORCH_HOME``, which the tests point inside the watched
folder. A case "ran code" when the marker exists or a file appears outside its declared outputs.

Each :class:`ModelCase` writes one model folder variant and says what must happen: ``refuse`` (exit 2, one
``error:`` line) or ``ok`` (exit 0 with the declared outputs). Its ``klass`` groups cases for the counts the closing
note reports (code, url, reference, type, metadata, nesting, yaml, special-file, nnunet-name, nnunet-field,
inheritance, harmless).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

PAYLOAD = "medxai_payload_mod"
LOWER_READERS = ("itkreader", "nibabelreader")
TINY_NET = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8],
            "strides": [2], "num_res_units": 0}


def bundle_inference() -> dict[str, Any]:
    """A tiny bundle config in the Model Zoo's layout (with the usual top-level expressions MONAI never needs)."""
    return {
        "imports": ["$import os"],
        "bundle_root": ".",
        "image_key": "image",
        "device": "$torch.device('cpu')",
        "network_def": copy.deepcopy(TINY_NET),
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key"},
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "@image_key", "pixdim": [2.0, 2.0, 2.5], "mode": "bilinear"},
            {"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True},
            {"_target_": "EnsureTyped", "keys": "@image_key"},
        ]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 1,
                    "overlap": 0.25},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "$@bundle_root + '/eval'"},
        ]},
    }


def bundle_metadata() -> dict[str, Any]:
    return {
        "name": "tiny-fuzz-bundle", "version": "0.1.0", "data_source": "seeded weights (test)",
        "intended_use": "tests only",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "num_channels": 1, "spatial_shape": [16, 16, 16],
                                 "channel_def": {"0": "ct"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 2,
                                 "spatial_shape": [16, 16, 16], "channel_def": {"0": "background", "1": "organ"}}},
        },
    }


def nnunet_plans(patch: tuple[int, int, int] = (8, 16, 16)) -> dict[str, Any]:
    """A plans.json in nnU-Net v2's format (as its ExperimentPlanner writes it), for a two-stage PlainConvUNet."""
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [1, 1],
            "n_conv_per_stage_decoder": [1], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    resample = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    cfg = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": list(patch), "median_image_size_in_voxels": [10.0, 20.0, 20.0], "spacing": [3.0, 2.0, 2.0],
        "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": dict(resample), "resampling_fn_seg_kwargs": {**resample, "is_seg": True,
                                                                                   "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resample, "order": 1},
        "architecture": arch, "batch_dice": False,
    }
    return {
        "dataset_name": "Dataset900_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [3.0, 2.0, 2.0], "original_median_shape_after_transp": [10, 20, 20],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": cfg}, "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 400.0, "mean": 40.0, "median": 40.0, "min": -100.0, "percentile_00_5": -50.0,
            "percentile_99_5": 200.0, "std": 30.0}},
    }


def nnunet_dataset() -> dict[str, Any]:
    return {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "numTraining": 3,
            "file_ending": ".nii.gz", "name": "Tiny", "description": "tiny nnU-Net folder for MedXAI's tests"}


def write_nnunet_weights(folder: Path, plans: dict[str, Any], seed: int = 0) -> None:
    """``fold_0/checkpoint_final.pth`` for the plans' PlainConvUNet, saved as nnUNetTrainer saves it (a dict)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    kw = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    torch.manual_seed(seed)
    net = PlainConvUNet(input_channels=1, num_classes=2, n_stages=kw["n_stages"],
                        features_per_stage=kw["features_per_stage"], conv_op=torch.nn.Conv3d,
                        kernel_sizes=kw["kernel_sizes"], strides=kw["strides"],
                        n_conv_per_stage=kw["n_conv_per_stage"],
                        n_conv_per_stage_decoder=kw["n_conv_per_stage_decoder"],
                        conv_bias=True, norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs=kw["norm_op_kwargs"],
                        nonlin=torch.nn.LeakyReLU, nonlin_kwargs=kw["nonlin_kwargs"], deep_supervision=False)
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "3d_fullres", "fold": 0},
                "inference_allowed_mirroring_axes": (0, 1, 2)}, folder / "fold_0" / "checkpoint_final.pth")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def make_world(root: Path) -> dict[str, Path]:
    """The intact world under ``root``: ``bundle/``, ``nnunet/…/nnUNetTrainer__nnUNetPlans__3d_fullres``, ``ct.nii.gz``
    and the bundle weights (``bundle_weights``), reused by every case."""
    from monai.bundle import ConfigParser

    from MedXAILib.io import write_volume
    from MedXAILib.volume import Volume, make_ijk_to_ras

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    k, j, i = np.mgrid[0:12, 0:16, 0:14]
    body = ((i - 7) ** 2 / 30 + (j - 8) ** 2 / 40 + (k - 6) ** 2 / 20) < 1
    arr = np.where(body, 40 + 30 * rng.normal(size=body.shape), -100).astype(np.float32)[None]
    a = np.deg2rad(20.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    world = {"root": root, "ct": write_volume(Volume(arr, make_ijk_to_ras((1.5, 1.8, 3.0), (-10.0, 20.0, 5.0), rot)),
                                              root / "ct.nii.gz")}
    torch.manual_seed(0)
    net = ConfigParser({"n": copy.deepcopy(TINY_NET)}).get_parsed_content("n")
    world["bundle_weights"] = root / "bundle_model.pt"
    torch.save(net.state_dict(), world["bundle_weights"])
    world["bundle"] = write_bundle(root / "bundle", bundle_inference(), bundle_metadata(), world)
    nn = root / "nnunet" / "Dataset900_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    write_json(nn / "plans.json", nnunet_plans())
    write_json(nn / "dataset.json", nnunet_dataset())
    write_nnunet_weights(nn, nnunet_plans())
    world["nnunet"] = nn
    world["marker"] = root / "PAYLOAD_RAN"
    world["payload"] = plant_payload(root / "payload", world["marker"])
    return world


def write_bundle(folder: Path, inference: Any, metadata: Any, world: dict[str, Path],
                 inference_name: str = "inference.json", metadata_name: str = "metadata.json") -> Path:
    """A bundle folder with these configs (written as given: JSON, or text for YAML) and the world's weights."""
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    for name, data in ((inference_name, inference), (metadata_name, metadata)):
        if data is None:
            continue
        text = data if isinstance(data, str) else json.dumps(data, indent=1)
        (folder / "configs" / name).write_text(text)
    shutil.copyfile(world["bundle_weights"], folder / "models" / "model.pt")
    return folder


def copy_nnunet(src: Path, dst: Path) -> Path:
    """A copy of an nnU-Net folder's JSON files with its fold folders linked (weights are never changed)."""
    dst.mkdir(parents=True)
    for f in ("plans.json", "dataset.json"):
        shutil.copyfile(src / f, dst / f)
    for fold in src.glob("fold_*"):
        (dst / fold.name).symlink_to(fold.resolve(), target_is_directory=True)
    return dst


def payload_source(marker: Path) -> str:
    """A module whose import (and every callable in it) touches ``marker``."""
    return (
        "import pathlib\n"
        f"MARKER = pathlib.Path({str(marker)!r})\n"
        "MARKER.touch()\n"
        "import torch\n"
        "def fn(*args, **kwargs):\n    MARKER.touch()\n"
        "class Layer(torch.nn.Module):\n"
        "    def __init__(self, *args, **kwargs):\n        MARKER.touch()\n        super().__init__()\n"
        "    def forward(self, x):\n        return x\n"
        "Net = Reader = Merger = Layer\n"
    )


def plant_payload(folder: Path, marker: Path) -> Path:
    """Write the payload modules into ``folder`` (to be put on ``sys.path``) and a weights file for ``file://`` URLs."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (PAYLOAD, *LOWER_READERS):
        (folder / f"{name}.py").write_text(payload_source(marker))
    torch.save({}, folder / "weights.pth")
    return folder


@dataclass
class ModelCase:
    """One model-file variant: ``build(case_dir, world)`` writes it and returns the ``--model`` path."""

    seed: int
    klass: str
    family: str  # "bundle" or "nnunet"
    expect: str  # "refuse" or "ok"
    what: str
    build: Callable[[Path, dict[str, Path]], Path]

    @property
    def name(self) -> str:
        return f"{self.seed:03d}-{self.family}-{self.klass}"


# ---- bundle variants ------------------------------------------------------------------------------------------------
def _bundle(mutate: Callable[[dict[str, Any], dict[str, Any], dict[str, Path]], None]) -> Callable:
    def build(case_dir: Path, world: dict[str, Path]) -> Path:
        inference, metadata = bundle_inference(), bundle_metadata()
        mutate(inference, metadata, world)
        return write_bundle(case_dir / "bundle", inference, metadata, world)
    return build


def _expr(world: dict[str, Path]) -> str:
    return f"$__import__('pathlib').Path({str(world['root'] / 'PAYLOAD_RAN')!r}).touch()"


def bundle_cases(rng: np.random.Generator, start: int, n: int) -> list[ModelCase]:
    """``n`` seeded bundle variants (see the module docstring); numbered from ``start``."""
    pay = PAYLOAD
    gens: list[tuple[str, str, Callable[[np.random.Generator], tuple[str, Callable]]]] = []

    def reader(r: np.random.Generator) -> tuple[str, Callable]:
        name = [f"{pay}.Reader", "itkreader", "nibabelreader", "tempfile.mkstemp", ["ITKReader", f"{pay}.fn"],
                f"{pay}.fn"][int(r.integers(6))]
        return f"LoadImaged reader={name!r}", _bundle(lambda i, m, w: i["preprocessing"]["transforms"][0].update(
            {"reader": name}))

    def merger(r: np.random.Generator) -> tuple[str, Callable]:
        name = [f"{pay}.Merger", f"{pay}.fn", "tempfile.mkstemp"][int(r.integers(3))]

        def mutate(i: dict, m: dict, w: dict) -> None:
            i["inferer"] = {"_target_": "PatchInferer", "merger_cls": name,
                            "splitter": {"_target_": "SlidingWindowSplitter", "patch_size": [16, 16, 16]}}
        return f"PatchInferer merger_cls={name!r}", _bundle(mutate)

    def nested(r: np.random.Generator) -> tuple[str, Callable]:
        target = [f"{pay}.fn", f"{pay}.Layer", "LoadImage"][int(r.integers(3))]
        comp: dict[str, Any] = {"_target_": target}
        if target == "LoadImage":
            comp["reader"] = f"{pay}.Reader"
        where = int(r.integers(4))

        def mutate(i: dict, m: dict, w: dict) -> None:
            if where == 0:
                i["network_def"]["act"] = comp
            elif where == 1:
                i["inferer"]["progress"] = comp
            elif where == 2:
                i["preprocessing"]["transforms"][4]["subtrahend"] = comp
            else:
                i["network_def"]["norm"] = comp
        return f"nested {target} at site {where}", _bundle(mutate)

    def reference(r: np.random.Generator) -> tuple[str, Callable]:
        form = int(r.integers(4))

        def mutate(i: dict, m: dict, w: dict) -> None:
            i["a"] = {"b": {"c": _expr(w) + " or 'image'"}, "b#c": "image", "b::c": "image"}
            norm = i["preprocessing"]["transforms"][4]
            if form == 0:
                norm["keys"] = "@a::b#c"
            elif form == 1:
                norm["keys"] = "@a#b#c"
            elif form == 2:  # relative: from preprocessing::transforms::4::keys up three levels is the top
                i["evil"] = _expr(w) + " or 'image'"
                norm["keys"] = "@::::::::evil"
            else:
                i["evil"] = {"deeper": _expr(w) + " or 'image'"}
                norm["keys"] = "@evil#deeper"
        return f"reference form {form}", _bundle(mutate)

    def url(r: np.random.Generator) -> tuple[str, Callable]:
        kind = int(r.integers(2))

        def mutate(i: dict, m: dict, w: dict) -> None:
            uri = f"file://{w['root'] / 'payload' / 'weights.pth'}"
            if kind == 0:
                i["network_def"] = {"_target_": "HoVerNet", "in_channels": 1, "np_out_channels": 2,
                                    "pretrained_url": uri}
            else:
                i["network_def"] = {"_target_": "FlexibleUNet", "in_channels": 1, "out_channels": 2,
                                    "backbone": "efficientnet-b0", "pretrained": True, "spatial_dims": 3}
        return ["HoVerNet pretrained_url file://", "FlexibleUNet pretrained=true"][kind], _bundle(mutate)

    def code(r: np.random.Generator) -> tuple[str, Callable]:
        kind = int(r.integers(6))

        def mutate(i: dict, m: dict, w: dict) -> None:
            e = _expr(w)
            if kind == 0:
                i["preprocessing"]["transforms"][4]["nonzero"] = e + " or True"
            elif kind == 1:
                i["network_def"] = {"_target_": "subprocess.call", "args": ["touch", str(w["root"] / "PAYLOAD_RAN")]}
            elif kind == 2:
                i["inferer"]["_mode_"] = "debug"
            elif kind == 3:
                i["inferer"]["_requires_"] = "@evil"
                i["evil"] = e
            elif kind == 4:
                i["preprocessing"]["transforms"][3]["pixdim"] = "%other.json::pixdim"
            else:
                i["preprocessing"]["transforms"].insert(4, {"_target_": "monai.transforms.Lambdad", "keys": "image",
                                                            "func": f"$lambda x: ({e[1:]}, x)[1]"})
        return f"code form {kind}", _bundle(mutate)

    def types(r: np.random.Generator) -> tuple[str, Callable]:
        kind = int(r.integers(7))
        bad: list[tuple[list[Any], Any]] = [
            (["preprocessing", "transforms", 3, "pixdim"], "abc"),
            (["preprocessing", "transforms", 3, "pixdim"], [1e-6, 1e-6, 1e-6]),
            (["network_def", "channels"], [10**6, 10**6]),
            (["inferer", "roi_size"], [-5, "x", None]),
            (["preprocessing", "transforms", 4, "select_fn"], "os.getcwd"),
            (["inferer", "device"], "cuda:99"),
            (["inferer", "sw_batch_size"], 10**9),
        ]
        path, value = bad[kind]

        def mutate(i: dict, m: dict, w: dict) -> None:
            node: Any = i
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = value
        return f"argument {'::'.join(map(str, path))}={str(value)[:30]}", _bundle(mutate)

    def metadata(r: np.random.Generator) -> tuple[str, Callable]:
        kind = int(r.integers(8))

        def mutate(i: dict, m: dict, w: dict) -> None:
            fmt = m["network_data_format"]
            if kind == 0:
                m["network_data_format"] = []
            elif kind == 1:
                fmt["inputs"] = "image"
            elif kind == 2:
                fmt["inputs"]["image"]["num_channels"] = 10**9
            elif kind == 3:
                fmt["outputs"]["pred"]["num_channels"] = "two"
            elif kind == 4:
                fmt["outputs"]["pred"]["channel_def"] = ["background", "organ"]
            elif kind == 5:
                m["name"] = {"nested": ["not", "a", "name"]}
            elif kind == 6:
                fmt["inputs"]["image"]["num_channels"] = -3
            else:
                fmt["outputs"]["pred"] = 7
        return f"metadata form {kind}", _bundle(mutate)

    def nesting(r: np.random.Generator) -> tuple[str, Callable]:
        depth = int(r.integers(200, 961))
        where = int(r.integers(3))

        def build(case_dir: Path, world: dict[str, Path]) -> Path:
            deep = "[" * depth + "1" + "]" * depth
            inference, metadata = bundle_inference(), bundle_metadata()
            if where == 0:
                meta_text = json.dumps(metadata)[:-1] + f', "references": {deep}}}'
                return write_bundle(case_dir / "bundle", inference, meta_text, world)
            if where == 1:
                text = json.dumps(inference)[:-1] + f', "datalist": {deep}}}'
            else:
                inference["network_def"]["channels"] = "__DEEP__"
                text = json.dumps(inference).replace('"__DEEP__"', deep)
            return write_bundle(case_dir / "bundle", text, metadata, world)
        return f"{depth}-deep list at site {where}", build

    def yaml_bomb(r: np.random.Generator) -> tuple[str, Callable]:
        levels = int(r.integers(12, 37))
        target = int(r.integers(2))

        def build(case_dir: Path, world: dict[str, Path]) -> Path:
            lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x"]']
            lines += [f"l{n}: &l{n} [*l{n - 1}, *l{n - 1}]" for n in range(1, levels)]
            bomb = "\n".join(lines) + "\n"
            inference = json.dumps(bundle_inference())
            if target == 0:  # the bomb beside the entries, in the inference config
                text = bomb + "\n".join(f"{k}: {json.dumps(v)}" for k, v in json.loads(inference).items()) + "\n"
                return write_bundle(case_dir / "bundle", text, bundle_metadata(), world, "inference.yaml")
            text = bomb + "\n".join(f"{k}: {json.dumps(v)}" for k, v in bundle_metadata().items()) + \
                f"\nreferences: *l{levels - 1}\n"
            return write_bundle(case_dir / "bundle", json.loads(inference), text, world, "inference.json",
                                "metadata.yaml")
        return f"YAML aliases expanding to 8*2^{levels - 1} leaves in {'inference' if target == 0 else 'metadata'}", \
            build

    def special(r: np.random.Generator) -> tuple[str, Callable]:
        kind = int(r.integers(4))

        def build(case_dir: Path, world: dict[str, Path]) -> Path:
            folder = write_bundle(case_dir / "bundle", bundle_inference(), bundle_metadata(), world)
            name = ["inference.json", "metadata.json"][kind % 2]
            target = folder / "configs" / name
            target.unlink()
            if kind < 2:
                os.mkfifo(target)
            else:
                target.symlink_to("/dev/zero")
            return folder
        return ["inference.json is a named pipe", "metadata.json is a named pipe",
                "inference.json -> /dev/zero", "metadata.json -> /dev/zero"][kind], build

    def harmless(r: np.random.Generator) -> tuple[str, Callable]:
        kind = int(r.integers(6))

        def mutate(i: dict, m: dict, w: dict) -> None:
            if kind == 1:
                i["network_def"]["_target_"] = "monai.networks.nets.UNet"
            elif kind == 2:  # MONAI's old "#" separator and a relative id, both to plain values
                i["keys_def"] = {"img": "image"}
                i["preprocessing"]["transforms"][4]["keys"] = "@keys_def#img"
                i["preprocessing"]["transforms"][5]["keys"] = "@::::0::keys"
                i["preprocessing"]["_desc_"] = "the bundle's preprocessing"
            elif kind == 3:
                m["changelog"] = {"0.1.0": "first"}
                m["references"] = ["see https://example.org (text only)"]
            elif kind == 4:
                i["preprocessing"]["transforms"][0]["reader"] = "NibabelReader"
            elif kind == 5:
                i["inferer"]["mode"] = "gaussian"
                i["network_def"]["act"] = ["prelu", {"init": 0.3}]
        return f"harmless form {kind}", _bundle(mutate)

    gens = [("code", "refuse", reader), ("code", "refuse", merger), ("code", "refuse", nested),
            ("reference", "refuse", reference), ("url", "refuse", url), ("code", "refuse", code),
            ("type", "refuse", types), ("metadata", "refuse", metadata), ("nesting", "refuse", nesting),
            ("yaml", "refuse", yaml_bomb), ("special-file", "refuse", special), ("harmless", "ok", harmless)]
    weights = np.array([3, 2, 3, 3, 1, 2, 3, 3, 2, 2, 1, 1.5], float)
    out = []
    for k in range(n):
        klass, expect, gen = gens[int(rng.choice(len(gens), p=weights / weights.sum()))]
        what, build = gen(rng)
        out.append(ModelCase(start + k, klass, "bundle", expect, what, build))
    return out


# ---- nnU-Net variants -----------------------------------------------------------------------------------------------
def _nnunet(mutate: Callable[[dict[str, Any], dict[str, Any]], None]) -> Callable:
    def build(case_dir: Path, world: dict[str, Path]) -> Path:
        folder = copy_nnunet(world["nnunet"], case_dir / "Dataset900_Tiny" / world["nnunet"].name)
        plans, dataset = json.loads((folder / "plans.json").read_text()), json.loads(
            (folder / "dataset.json").read_text())
        mutate(plans, dataset)
        write_json(folder / "plans.json", plans)
        write_json(folder / "dataset.json", dataset)
        return folder
    return build


def nnunet_name_mutations(payload: str = PAYLOAD) -> list[tuple[str, Callable[[dict, dict], None]]]:
    """Every plans / dataset.json field nnU-Net imports or looks up by name, set to the payload (or an unknown
    name) in every configuration; used by the fuzz test and, on the real nnU-Net test folder, by the CLI tests."""
    def configs(p: dict) -> list[dict]:
        return [c for c in p["configurations"].values() if "architecture" in c] or list(p["configurations"].values())

    def set_kw(key: str, value: Any) -> Callable[[dict, dict], None]:
        return lambda p, d: [c["architecture"]["arch_kwargs"].__setitem__(key, value) for c in configs(p)]

    def set_cfg(key: str, value: Any) -> Callable[[dict, dict], None]:
        return lambda p, d: [c.__setitem__(key, value) for c in configs(p)]

    def requires(p: dict, d: dict) -> None:
        for c in configs(p):
            c["architecture"]["_kw_requires_import"] = [*c["architecture"].get("_kw_requires_import", []),
                                                        "conv_bias"]
            c["architecture"]["arch_kwargs"]["conv_bias"] = f"{payload}.fn"

    return [
        ("network_class_name", lambda p, d: [c["architecture"].__setitem__("network_class_name", f"{payload}.Net")
                                             for c in configs(p)]),
        ("conv_op", set_kw("conv_op", f"{payload}.Layer")),
        ("norm_op", set_kw("norm_op", f"{payload}.Layer")),
        ("dropout_op", set_kw("dropout_op", f"{payload}.Layer")),
        ("nonlin", set_kw("nonlin", f"{payload}.Layer")),
        ("_kw_requires_import", requires),
        ("preprocessor_name", set_cfg("preprocessor_name", "EvilPreprocessor")),
        ("normalization_schemes", set_cfg("normalization_schemes", ["EvilNormalization"])),
        ("resampling_fn_data", set_cfg("resampling_fn_data", f"{payload}.fn")),
        ("label_manager", lambda p, d: p.__setitem__("label_manager", f"{payload}.Layer")),
        ("image_reader_writer", lambda p, d: p.__setitem__("image_reader_writer", f"{payload}.Reader")),
        ("overwrite_image_reader_writer", lambda p, d: d.__setitem__("overwrite_image_reader_writer",
                                                                     f"{payload}.Reader")),
    ]


def nnunet_cases(rng: np.random.Generator, start: int, n: int) -> list[ModelCase]:
    """``n`` seeded variants of the tiny nnU-Net folder's plans.json / dataset.json."""
    names = nnunet_name_mutations()

    def cfg(p: dict) -> dict:
        return p["configurations"]["3d_fullres"]

    fields: list[tuple[str, Callable[[dict, dict], None]]] = [
        ("transpose_forward [0,0,1]", lambda p, d: p.__setitem__("transpose_forward", [0, 0, 1])),
        ("patch_size 'x'", lambda p, d: cfg(p).__setitem__("patch_size", "x")),
        ("spacing missing", lambda p, d: cfg(p).pop("spacing")),
        ("normalization_schemes []", lambda p, d: cfg(p).__setitem__("normalization_schemes", [])),
        ("use_mask_for_norm 'no'", lambda p, d: cfg(p).__setitem__("use_mask_for_norm", "no")),
        ("kernel_sizes one short", lambda p, d: cfg(p)["architecture"]["arch_kwargs"]["kernel_sizes"].pop()),
        ("features 10**6", lambda p, d: cfg(p)["architecture"]["arch_kwargs"].__setitem__("features_per_stage",
                                                                                          [10**6, 10**6])),
        ("labels a list", lambda p, d: d.__setitem__("labels", ["background", "organ"])),
        ("channel_names a list", lambda p, d: d.__setitem__("channel_names", ["CT"])),
        ("regions without order", lambda p, d: d["labels"].__setitem__("organ", [1, 2])),
        ("no background", lambda p, d: d["labels"].pop("background")),
        ("numTraining 'three'", lambda p, d: d.__setitem__("numTraining", "three")),
        ("configurations a list", lambda p, d: p.__setitem__("configurations", [cfg(p)])),
        ("architecture missing", lambda p, d: cfg(p).pop("architecture")),
        ("intensity properties missing", lambda p, d: p.pop("foreground_intensity_properties_per_channel")),
        ("plans a list", None),
    ]
    cycles: list[tuple[str, Callable[[dict, dict], None]]] = [
        ("inherits_from itself", lambda p, d: cfg(p).__setitem__("inherits_from", "3d_fullres")),
        ("two-configuration cycle", lambda p, d: (p["configurations"].__setitem__("3d_lowres", {
            "inherits_from": "3d_fullres"}), cfg(p).__setitem__("inherits_from", "3d_lowres"))),
        ("missing parent", lambda p, d: cfg(p).__setitem__("inherits_from", "3d_nothing")),
    ]
    def old_format(p: dict, d: dict) -> None:  # the pre-2.4 plans format, which nnU-Net converts itself
        c = cfg(p)
        kw = c.pop("architecture")["arch_kwargs"]
        c.update({"UNet_class_name": "PlainConvUNet", "UNet_base_num_features": 4, "unet_max_num_features": 8,
                  "n_conv_per_stage_encoder": kw["n_conv_per_stage"],
                  "n_conv_per_stage_decoder": kw["n_conv_per_stage_decoder"], "num_pool_per_axis": [1, 1, 1],
                  "pool_op_kernel_sizes": kw["strides"], "conv_kernel_sizes": kw["kernel_sizes"]})

    harmless: list[tuple[str, Callable[[dict, dict], None]]] = [
        ("intact", lambda p, d: None),
        ("the pre-2.4 plans format", old_format),
        ("extra fields", lambda p, d: (p.__setitem__("comment", "made by hand"), d.__setitem__("licence", "CC-BY"))),
        ("a lowres configuration inheriting fullres", lambda p, d: p["configurations"].__setitem__(
            "3d_lowres", {"inherits_from": "3d_fullres", "spacing": [4.0, 3.0, 3.0], "data_identifier": "low"})),
    ]

    def file_case(kind: int) -> tuple[str, Callable]:
        def build(case_dir: Path, world: dict[str, Path]) -> Path:
            folder = copy_nnunet(world["nnunet"], case_dir / "Dataset900_Tiny" / world["nnunet"].name)
            target = folder / ("plans.json" if kind % 2 == 0 else "dataset.json")
            if kind < 2:
                target.write_text("[" * 900 + "]" * 900)
            else:
                target.unlink()
                if kind == 2:
                    os.mkfifo(target)
                else:
                    target.symlink_to("/dev/zero")
            return folder
        return ["plans.json 900 deep", "dataset.json 900 deep", "plans.json a named pipe",
                "dataset.json -> /dev/zero"][kind], build

    out = []
    for k in range(n):
        roll = float(rng.random())
        if roll < 0.42:
            what, mutate = names[int(rng.integers(len(names)))]
            out.append(ModelCase(start + k, "nnunet-name", "nnunet", "refuse", what, _nnunet(mutate)))
        elif roll < 0.75:
            what, mutate = fields[int(rng.integers(len(fields)))]
            if mutate is None:
                def build(case_dir: Path, world: dict[str, Path]) -> Path:
                    folder = copy_nnunet(world["nnunet"], case_dir / "Dataset900_Tiny" / world["nnunet"].name)
                    write_json(folder / "plans.json", [nnunet_plans()])
                    return folder
                out.append(ModelCase(start + k, "nnunet-field", "nnunet", "refuse", what, build))
            else:
                out.append(ModelCase(start + k, "nnunet-field", "nnunet", "refuse", what, _nnunet(mutate)))
        elif roll < 0.85:
            what, mutate = cycles[int(rng.integers(len(cycles)))]
            out.append(ModelCase(start + k, "inheritance", "nnunet", "refuse", what, _nnunet(mutate)))
        elif roll < 0.93:
            what, build = file_case(int(rng.integers(4)))
            out.append(ModelCase(start + k, "special-file", "nnunet", "refuse", what, build))
        else:
            what, mutate = harmless[int(rng.integers(len(harmless)))]
            out.append(ModelCase(start + k, "harmless", "nnunet", "ok", what, _nnunet(mutate)))
    return out
