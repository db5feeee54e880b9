"""MONAI bundles, run as MONAI runs them: the :class:`BundleModel` adapter.

A bundle folder holds ``configs/inference.json`` (or ``.yaml``), ``configs/metadata.json`` and ``models/model.pt``
(a state_dict, read without unpickling code) or ``models/model.ts``. Its model function is executed with MONAI's own
objects, parsed from the config by ``monai.bundle.ConfigParser`` under the consent rule of :mod:`.bundle_config`:

- :meth:`BundleModel.prepare` — the input Volume becomes the ``MetaTensor`` MONAI's ``LoadImaged`` would produce
  (channel-first ``(C, I, J, K)`` array, RAS affine), and the bundle's ``preprocessing`` Compose runs from the
  transform after the loader (``EnsureChannelFirstd``, ``Orientationd``, ``Spacingd``, ``NormalizeIntensityd``, …).
  The model grid is MONAI's: tensor axes follow the transformed image's (I, J, K)-ordered affine, not ours.
- :meth:`BundleModel.infer` — the bundle's ``inferer`` (e.g. ``SlidingWindowInferer`` with its roi, overlap, blend
  mode and padding) applied to the bundle's ``network_def`` with the bundle's weights; autograd flows through it.
- :meth:`BundleModel.prediction_from_logits` — the bundle's ``postprocessing`` as MONAI runs it
  (:mod:`.bundle_post`): its steps, in order, on the model grid give the label map (then ``Invertd`` when it has
  none); its activation (else softmax / sigmoid as its output type says) and ``Invertd`` give the probabilities on
  the input grid. Steps that need code are skipped with a note unless trusted.
- :meth:`BundleModel.to_input_grid` — MONAI's ``Invertd`` applied to explanation maps (linear interpolation).

What cannot be honoured is a :class:`~MedXAILib.errors.ModelError` naming the entry (a loader-less preprocessing that
needs files, a 2D bundle, an inferer without a known window plan for layer methods); it is never approximated.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ModelError
from ..preprocessing import GridChange, axis_moves, take_by_axis_moves
from ..volume import Volume
from . import bundle_config as bc
from .bundle_metadata import bundle_card, bundle_io, read_metadata
from .bundle_post import PostPlan, plan_postprocessing, run_postprocessing
from .bundle_schema import ALWAYS_SKIPPED
from .checkpoints import load_weights_into
from .description import ModelDescription
from .function import WindowPlan, make_window_plan
from .model import Model, PreparedInput
from .prediction import Prediction
from .schema_types import SchemaError
from .torchscript import load_torchscript

_LOADERS = ("LoadImaged", "LoadImage")


class BundleModel(Model):
    """A MONAI bundle executed through ``monai.bundle`` (see the module docstring).

    Attributes:
        preprocessing: the bundle's preprocessing ``Compose`` (MONAI object).
        inferer: the bundle's inferer (MONAI object).
        post: how the bundle's postprocessing makes the labels and the probabilities (:mod:`.bundle_post`).
        notes: what was skipped or substituted, in words (shown in sidecars).
    """

    def __init__(self, network: torch.nn.Module, description: ModelDescription, device: str, *,
                 preprocessing: Any, inferer: Any, post: PostPlan, image_key: str, image_only: bool,
                 notes: list[str]) -> None:
        super().__init__(network, description, device)
        self.preprocessing = preprocessing
        self.inferer = inferer
        self.post = post
        self.image_key = image_key
        self.image_only = image_only
        self.notes = notes
        transforms = list(getattr(preprocessing, "transforms", [preprocessing]))
        start = 0
        for i, t in enumerate(transforms):
            if type(t).__name__ in _LOADERS:
                start = i + 1
        self._after_loader = transforms[start:]

    # ---- prepare -------------------------------------------------------------------------------------------------
    def _as_loaded(self, volume: Volume) -> Any:
        from monai.data import MetaTensor

        arr = np.ascontiguousarray(volume.array.astype(np.float32).transpose(0, 3, 2, 1))  # (C, I, J, K)
        affine = torch.as_tensor(volume.ijk_to_ras, dtype=torch.float64)
        meta = {"original_channel_dim": 0, "spatial_shape": np.asarray(arr.shape[1:]), "space": "RAS",
                "original_affine": volume.ijk_to_ras.copy(), "filename_or_obj": "medxai-input"}
        return MetaTensor(torch.from_numpy(arr), affine=affine, meta=meta)

    def prepare(self, volume: Volume) -> PreparedInput:
        from monai.transforms import Compose

        if self.spatial_dims != 3:
            raise ModelError(f"bundle {self.name!r}: only 3D bundles are supported")
        self.check_input(volume)
        data: dict[str, Any] = {self.image_key: self._as_loaded(volume)}
        if not self.image_only:
            data[f"{self.image_key}_meta_dict"] = dict(data[self.image_key].meta)
        pre = self.preprocessing
        try:
            data = Compose(self._after_loader, map_items=getattr(pre, "map_items", True),
                           unpack_items=getattr(pre, "unpack_items", False), lazy=getattr(pre, "lazy", False))(data)
        except Exception as exc:  # noqa: BLE001 - MONAI wraps transform errors in RuntimeError with the transform
            raise ModelError(f"bundle {self.name!r}: its preprocessing failed on this input ({exc})") from None
        img = data[self.image_key]
        tensor = torch.as_tensor(img).detach().float().clone()[None].to(self.device)
        affine = np.asarray(img.affine, dtype=float)
        state = {"data": data, "model_ijk_to_ras": affine,
                 "model_spacing": np.linalg.norm(affine[:3, :3], axis=0)}
        return PreparedInput(tensor=tensor, volume=volume, grid=GridChange(tuple(volume.shape), tuple(img.shape[1:])),
                             state=state)

    # ---- the function --------------------------------------------------------------------------------------------
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """The bundle's inferer with its network: ``(B, C, *grid)`` → ``(B, N, *grid)`` (differentiable)."""
        out = self.inferer(inputs=x, network=self.network)
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"bundle {self.name!r}: its inferer returned {type(out).__name__}, not one tensor")
        return out.as_tensor() if hasattr(out, "as_tensor") else out

    def window_plan(self, grid: tuple[int, ...]) -> WindowPlan | None:
        from monai.inferers import SimpleInferer, SlidingWindowInferer

        inf = self.inferer
        if isinstance(inf, SlidingWindowInferer):
            return make_window_plan(grid, inf.roi_size, inf.overlap, str(inf.mode), inf.sigma_scale,
                                    str(inf.padding_mode), float(inf.cval))
        if isinstance(inf, SimpleInferer):
            return None
        raise ModelError(f"bundle {self.name!r}: layer maps through its inferer {type(inf).__name__} are not "
                         "supported (no window plan); use a gradient or perturbation method, or --param exact=false")

    def function_info(self, grid: tuple[int, ...] | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"adapter": "BundleModel", "inferer": type(self.inferer).__name__,
                                "preprocessing": [type(t).__name__ for t in self._after_loader],
                                "postprocessing": [type(t).__name__ for t in self.post.steps],
                                "notes": list(self.notes)}
        if grid is not None:
            try:
                plan = self.window_plan(tuple(grid))
            except ModelError:
                plan = None
            if plan is not None:
                info.update(plan.describe())
        return info

    # ---- back to the input --------------------------------------------------------------------------------------
    def _invert(self, maps: torch.Tensor, prepared: PreparedInput, nearest: bool = False) -> np.ndarray:
        """``(M, *model grid)`` → ``(M, K, J, I)`` float32 on the input grid with MONAI's ``Invertd``."""
        from monai.data import MetaTensor
        from monai.transforms import Invertd

        data = prepared.state["data"]
        img = data[self.image_key]
        mt = MetaTensor(maps.detach().float().cpu(), meta=copy.deepcopy(img.meta))
        d = {"pred": mt, self.image_key: img}
        inv = Invertd(keys="pred", transform=self.preprocessing, orig_keys=self.image_key, nearest_interp=nearest,
                      to_tensor=True)
        out = torch.as_tensor(inv(d)["pred"]).float().cpu().numpy()
        return self._to_volume_order(out, prepared)

    def _to_volume_order(self, arr: np.ndarray, prepared: PreparedInput) -> np.ndarray:
        out = np.ascontiguousarray(arr.transpose(0, 3, 2, 1)).astype(np.float32)
        if tuple(out.shape[1:]) != tuple(prepared.volume.shape):
            raise ModelError(f"bundle {self.name!r}: its inverse gave shape {out.shape[1:]}, the input has "
                             f"{prepared.volume.shape}; its preprocessing is not invertible by MONAI")
        return out

    def to_input_grid(self, maps: torch.Tensor, prepared: PreparedInput) -> np.ndarray:
        grid = prepared.model_shape
        t = maps.detach().float()
        if tuple(t.shape[1:]) != tuple(grid):
            t = F.interpolate(t[None], size=grid, mode="trilinear", align_corners=False)[0]
        return self._invert(t, prepared)

    def mask_to_model_grid(self, masks: np.ndarray, prepared: PreparedInput) -> torch.Tensor:
        """Input-grid masks onto MONAI's model grid by the two affines (nearest; tiny regions kept by linear > 0)."""
        grid = prepared.model_shape
        model_aff = np.asarray(prepared.state["model_ijk_to_ras"], dtype=float)
        to_input = np.linalg.inv(prepared.volume.ijk_to_ras) @ model_aff  # model (a, b, c) → input (i, j, k)
        moved = axis_moves(to_input)
        if moved is not None:  # the same voxels, axes permuted and flipped (BraTS): indexing, not resampling
            return torch.from_numpy(take_by_axis_moves(masks, moved, grid)).to(self.device)
        m = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[None]  # (1, M, K, J, I)
        axes = [torch.arange(n, dtype=torch.float64) for n in grid]
        abc = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        ijk = abc @ torch.from_numpy(to_input[:3, :3]).T + torch.from_numpy(to_input[:3, 3])
        size = torch.tensor(prepared.volume.shape[::-1], dtype=torch.float64)  # (I, J, K)
        norm = (2 * ijk + 1) / size - 1  # grid_sample's align_corners=False coordinates, (x=i, y=j, z=k)
        g = norm.reshape(1, *grid, 3).float()
        near = F.grid_sample(m, g, mode="nearest", align_corners=False)[0]
        if not (near.flatten(1).sum(1).gt(0).all() or m.sum() == 0):
            near = (F.grid_sample(m, g, mode="bilinear", align_corners=False)[0] > 0).float()
        return near.to(self.device)

    def voxel_to_model_grid(self, voxel: tuple[int, int, int], prepared: PreparedInput) -> tuple[int, ...]:
        model_aff = np.asarray(prepared.state["model_ijk_to_ras"], dtype=float)
        ras = prepared.volume.ijk_to_ras @ np.array([*voxel, 1.0])
        abc = np.linalg.inv(model_aff) @ ras
        return tuple(int(np.clip(round(float(v)), 0, n - 1)) for v, n in zip(abc[:3], prepared.model_shape))

    def prediction_from_logits(self, logits: torch.Tensor, prepared: PreparedInput,
                               threshold: float = 0.5) -> Prediction:
        """The bundle's own postprocessing on the model grid, mapped back as MONAI maps it (:mod:`.bundle_post`)."""
        d = self.description
        if d.task == "classification":  # class scores need no inverse; the activation is the bundle's
            return super().prediction_from_logits(logits, prepared, threshold)
        probs_mt, labels_mt = run_postprocessing(self.post, logits.detach()[0], prepared.state["data"],
                                                 self.image_key, self.preprocessing)
        probs = self._to_volume_order(probs_mt, prepared)
        labels = None if labels_mt is None else self._to_volume_order(labels_mt, prepared).astype(np.int16)
        labels_from_rule = labels is None
        if labels is None:
            labels = self._labels_from_probs(probs, threshold)
        vol = prepared.volume
        return Prediction(
            "segmentation", list(d.class_names),
            labels=Volume(labels.astype(np.int16), vol.ijk_to_ras.copy()),
            probabilities=Volume(probs, vol.ijk_to_ras.copy(), list(d.class_names)),
            logits_model_grid=logits.detach(),
            label_values=self.label_values() if labels_from_rule or d.output == "softmax" else None,
            notes=list(self.notes) + ([self._rule_note()] if labels_from_rule and d.output == "sigmoid" else []),
            overlapping=d.output == "sigmoid",
        )

    def _rule_note(self) -> str:
        values = ", ".join(f"{n}={v}" for n, v in zip(self.description.class_names, self.label_values()))
        return (f"label map made by MedXAI from the overlapping sigmoid outputs (probability >= 0.5, smaller regions "
                f"painted over larger ones): {values}; the probabilities keep every class separate")

    def _labels_from_probs(self, probs: np.ndarray, threshold: float) -> np.ndarray:
        d = self.description
        if d.output == "softmax":
            values = np.asarray([d.label_value(i) for i in range(d.n_classes)], dtype=np.int16)
            return values[probs.argmax(axis=0)][None]
        index = np.zeros(probs.shape[1:], dtype=np.int16)
        masks = [probs[c] >= threshold for c in range(probs.shape[0])]
        values = self.label_values()
        for c in sorted(range(len(masks)), key=lambda c: -int(masks[c].sum())):  # nested: smaller regions on top
            index[masks[c]] = values[c]
        return index[None]

    def divisor(self) -> int:
        arch = self.description.architecture or {}
        if arch.get("name") == "SegResNet":
            return 2 ** (len(arch.get("kwargs", {}).get("blocks_down", (1, 2, 2, 4))) - 1)
        return super().divisor()


def _split_postprocessing(config: dict[str, Any], trust: bool) -> tuple[dict[str, Any], list[str]]:
    """The config with saving steps removed and, unless trusted, every postprocessing step that breaks the schema
    removed too, with notes saying which and why (such steps are never built)."""
    notes: list[str] = []
    post = config.get("postprocessing")
    if not isinstance(post, dict) or not isinstance(post.get("transforms"), list):
        return config, notes
    kept = []
    for i, t in enumerate(post["transforms"]):
        name = str(t.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(t, dict) else ""
        if name in ALWAYS_SKIPPED:
            continue
        if not trust:
            found = bc.check_step(config, f"postprocessing::transforms::{i}")
            if found is not None:
                notes.append(f"postprocessing step {i} ({name or 'entry'}) skipped: {found.where} {found.problem}; "
                             f"pass {bc.TRUST_FLAG} to run it")
                continue
        kept.append(t)
    cfg = dict(config)
    cfg["postprocessing"] = {**post, "transforms": kept}
    return cfg, notes


def _parse(folder: Path, config: dict[str, Any], wanted: list[str], trust_code: bool) -> dict[str, Any]:
    """The MONAI objects of the ``wanted`` entries: checked and parsed from the checked entries only (or, trusted,
    from the whole config)."""
    if trust_code:
        parser = bc.trusted_parser(config, folder)
    else:
        try:
            ids = bc.check_entries(config, wanted)
        except SchemaError as exc:
            raise bc.refuse(folder, exc) from None
        parser = bc.safe_parser(config, ids, folder)
    parsed: dict[str, Any] = {}
    for key in wanted:
        try:
            parsed[key] = parser.get_parsed_content(key)
        except Exception as exc:  # noqa: BLE001 - MONAI raises many types for bad configs
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
            raise ModelError(f"{folder}: cannot build the bundle's {key} ({type(exc).__name__}: {first[:200]})") \
                from None
    return parsed


def load_bundle_model(folder: Path, device: str = "cpu", trust_code: bool = False,
                      allow_unsafe_pickle: bool = False) -> BundleModel:
    """Load a MONAI bundle folder as a :class:`BundleModel` (see the module docstring and :mod:`.bundle_config`).

    Raises:
        BundleCodeError: without ``trust_code``, an entry breaks the typed schema (code, names, URLs, types).
        ModelError: a missing, unreadable or oversized config or weights, or a bundle MedXAI cannot run exactly.
    """
    folder = Path(folder)
    config = bc.read_config(folder, "inference")
    if config is None:
        raise ModelError(f"{folder}: a MONAI bundle needs configs/inference.json (or .yaml)")
    for key in ("network_def", "preprocessing", "inferer"):
        if key not in config:
            raise ModelError(f"{folder}: the bundle's inference config has no {key!r} entry")
    metadata = read_metadata(folder)
    io = bundle_io(metadata, folder)
    config, notes = _split_postprocessing(config, trust_code)
    wanted = ["network_def", "preprocessing", "inferer"] + (["postprocessing"] if "postprocessing" in config else [])
    parsed = _parse(folder, config, wanted, trust_code)
    post = plan_postprocessing(list(getattr(parsed.get("postprocessing"), "transforms", [])), len(io["classes"]))
    notes += post.notes
    net_def = config["network_def"]
    arch = None
    if isinstance(net_def, dict):
        arch = {"name": str(net_def.get("_target_", "")).rsplit(".", 1)[-1],
                "kwargs": {k: v for k, v in net_def.items() if not k.startswith("_")}}
    roi = [int(r) for r in getattr(parsed["inferer"], "roi_size", None) or []]
    desc = ModelDescription(
        name=str(metadata.get("name") or folder.name), task=io["task"], spatial_dims=io["spatial_dims"],
        channel_names=io["channels"], class_names=io["classes"], output=post.output,
        architecture=arch, card=bundle_card(metadata, folder), source=str(folder),
        patch_size=roi if roi and all(r > 0 for r in roi) else None,  # the inferer's window (MONAI's axis order)
    )
    network = parsed["network_def"]
    if not isinstance(network, torch.nn.Module):
        raise ModelError(f"{folder}: the bundle's network_def built a {type(network).__name__}, not a torch network")
    weights, ts = folder / "models" / "model.pt", folder / "models" / "model.ts"
    if weights.exists():
        load_weights_into(network, weights, allow_unsafe_pickle)
    elif ts.exists():
        network = load_torchscript(ts)
    else:
        raise ModelError(f"{folder}: the bundle has no models/model.pt or models/model.ts")
    loader = next((t for t in getattr(parsed["preprocessing"], "transforms", []) if type(t).__name__ in _LOADERS),
                  None)
    image_key = str(getattr(loader, "keys", ["image"])[0]) if loader is not None else "image"
    image_only = bool(getattr(getattr(loader, "_loader", None), "image_only", True)) if loader is not None else True
    return BundleModel(network, desc, device, preprocessing=parsed["preprocessing"], inferer=parsed["inferer"],
                       post=post, image_key=image_key, image_only=image_only, notes=notes)
