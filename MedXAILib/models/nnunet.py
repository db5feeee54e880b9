"""nnU-Net v2 trained-model folders as a :class:`Model`, run exactly as ``nnUNetPredictor`` runs them.

The model function, with nnU-Net's own code at every step it defines::

    Volume (C, K, J, I)  ──  nnU-Net's preprocessor (``run_case_npy``: transpose_forward, crop to non-zero,
        normalisation scheme per channel, resampling with its separate-z rule)  ──►  tensor (1, C, *model grid)
    infer, per fold:  pad_nd_image up to the patch  ──►  windows at compute_steps_for_sliding_window(step 0.5)
        ──►  per window: the network on the window and, when the checkpoint allows mirroring and TTA is on, on every
             combination of flipped axes, averaged (``_internal_maybe_mirror_and_predict``'s order)
        ──►  weighted by compute_gaussian(patch, 1/8, 10), accumulated in float16 and divided by the float16 sum of
             weights, as ``_internal_predict_sliding_window_return_logits`` does  ──►  logits of the fold
        folds summed in float16 and divided by their number  ──►  logits (1, N, *model grid)
    back:  nnU-Net's ``convert_predicted_logits_to_segmentation_with_correct_shape`` on the float16 logits
        (resampled to the cropped input shape, softmax/sigmoid, argmax or regions, un-cropped, transpose_backward).

The result equals ``nnUNetPredictor``'s on CPU (the tests measure max |Δp| = 0 to float32 rounding). Gradients: the
forward values are nnU-Net's float16 ones; the backward pass differentiates the same blend computed in float32 (the
float16 normaliser is ~6e-8 where only window corners reach, so its reciprocal would overflow to inf/NaN).
Explanation maps on the model grid go back with nnU-Net's probability resampling, zeros outside the crop.

Explainers: ``window_plan`` gives nnU-Net's windows and Gaussian (:class:`~.function.WindowPlan`; 2D configurations
as 3D windows one slice deep), ``network_pass`` is the per-window step (mirrors and folds included), and
``tta_passes()`` lists the flips each network call runs, in order, so per-pass layer maps can be flipped back and
summed, each pass carrying 1/P of the target (CAMs, LRP; ``docs/methods.md``). Several folds are one
:class:`FoldEnsemble` module (layers ``folds.K.…``); a CAM layer lies in one fold (default
``folds.0.decoder.stages.<last>``), so a CAM of an ensemble shows that fold's route to the score.

Unsupported (clear errors): cascades (``3d_cascade_fullres`` needs the low-res prediction as input), readers other than
SimpleITKIO/NibabelIO (e.g. NibabelIOWithReorient, 2D natural images), architectures that need timm (Primus).
"""

from __future__ import annotations

import contextlib
import io
import itertools
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ModelError
from ..preprocessing import GridChange, resize
from ..volume import Volume
from .description import ModelDescription
from .function import WindowPlan
from .model import Model, PreparedInput
from .nnunet_folder import NnUNetFolder, read_nnunet_folder
from .prediction import Prediction

SUPPORTED_READERS = ("SimpleITKIO", "NibabelIO")


class FoldEnsemble(torch.nn.Module):
    """Several folds' networks as one module: the mean of their logits (``folds.K`` are the fold networks)."""

    def __init__(self, networks: list[torch.nn.Module]) -> None:
        super().__init__()
        self.folds = torch.nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.folds[0](x)
        for net in self.folds[1:]:
            out = out + net(x)
        return out / len(self.folds)


def _class_table(label_manager: Any, dataset_json: dict[str, Any]) -> tuple[list[str], list[int], str]:
    """Class names, label values and ``softmax``/``sigmoid`` from nnU-Net's LabelManager and dataset.json."""
    labels = dataset_json["labels"]
    if label_manager.has_regions:
        names = [n for n, v in labels.items() if n != "background" and n != "ignore"]
        values = [int(v) for v in label_manager.regions_class_order]
        return names, values, "sigmoid"
    by_value = {int(v): str(n) for n, v in labels.items() if not isinstance(v, (list, tuple)) and n != "ignore"}
    values = [int(v) for v in label_manager.all_labels]
    return [by_value.get(v, f"label{v}") for v in values], values, "softmax"


class NnUNetModel(Model):
    """An nnU-Net v2 results folder (see the module docstring); build with :func:`load_nnunet_model`."""

    def __init__(self, loaded: NnUNetFolder, device: str = "cpu", tta: bool = True) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            framework = f"nnunetv2 {version('nnunetv2')}"
        except PackageNotFoundError:
            framework = "nnunetv2"
        self.loaded = loaded
        self.plans_manager, self.configuration_manager, self.label_manager = loaded.managers()
        cm = self.configuration_manager
        if cm.previous_stage_name is not None:
            raise ModelError(
                f"{loaded.folder}: configuration {loaded.configuration!r} is the second stage of a cascade (it needs "
                f"the {cm.previous_stage_name} prediction as an extra input); cascades are not supported, use the "
                "3d_fullres or 3d_lowres model folder"
            )
        reader = str(loaded.plans.get("image_reader_writer", "SimpleITKIO"))
        if reader not in SUPPORTED_READERS:
            raise ModelError(
                f"{loaded.folder}: the plans read images with {reader}; MedXAI gives nnU-Net the arrays SimpleITK "
                f"reads ({', '.join(SUPPORTED_READERS)} only)"
            )
        self.is_2d_config = len(cm.patch_size) == 2
        self.mirror_axes = loaded.mirror_axes
        self.tta = bool(tta)
        networks = loaded.build_networks()
        network = networks[0] if len(networks) == 1 else FoldEnsemble(networks)
        dj = loaded.dataset_json
        channels = dj.get("channel_names", dj.get("modality", {"0": "image"}))
        channel_names = [str(channels[k]) for k in sorted(channels, key=lambda s: int(s))]
        class_names, label_values, output = _class_table(self.label_manager, dj)
        prefix = "folds.0." if len(networks) > 1 else ""
        n_dec = len(getattr(getattr(networks[0], "decoder", None), "stages", []))
        cam_layer = f"{prefix}decoder.stages.{n_dec - 1}" if n_dec else None
        dataset_name = self.plans_manager.dataset_name
        description = ModelDescription(
            name=f"{dataset_name}/{loaded.folder.name}",
            task="segmentation",
            spatial_dims=3,
            channel_names=channel_names,
            class_names=class_names,
            output=output,
            preprocessing={"framework": framework,
                           "configuration": loaded.configuration, "nnunet_spacing": list(cm.spacing),
                           "normalization": list(cm.normalization_schemes)},
            patch_size=([1] if len(cm.patch_size) == 2 else []) + [int(p) for p in cm.patch_size],
            architecture={"name": cm.network_arch_class_name, "nnunet_trainer": loaded.trainer_name},
            cam_layer=cam_layer,
            label_values=label_values,
            training={"folds": [str(f) for f in loaded.folds], "checkpoint": loaded.checkpoint,
                      "trainer": loaded.trainer_name, "notes": list(loaded.notes)},
            card={"name": dataset_name, "version": loaded.folder.name,
                  "training_data": f"{dataset_name} ({dj.get('numTraining', '?')} training cases)",
                  "intended_use": str(dj.get("description", "unknown")), "source": str(loaded.folder),
                  "limitations": "; ".join(loaded.notes) or None},
            source=str(loaded.folder),
        )
        super().__init__(network, description, device)

    # ---- input --------------------------------------------------------------------------------------------------
    def check_input(self, volume: Volume) -> None:
        d = self.description
        if volume.n_channels != d.n_channels:
            raise InputError(
                f"model {d.name!r} takes {d.n_channels} channel(s) ({', '.join(d.channel_names)}, from its "
                f"dataset.json); the input has {volume.n_channels}. Give one --input per channel in that order"
            )
        if volume.is_2d and not self.is_2d_config:
            raise InputError(f"model {d.name!r} is a 3D nnU-Net configuration; give a 3D volume")
        volume.check_finite()

    def prepare(self, volume: Volume) -> PreparedInput:
        """nnU-Net's own preprocessing (``DefaultPreprocessor.run_case_npy`` or the plans' preprocessor)."""
        self.check_input(volume)
        cm = self.configuration_manager
        props: dict[str, Any] = {"spacing": [float(s) for s in volume.spacing_kji]}
        pre = cm.preprocessor_class(verbose=False)
        with contextlib.redirect_stdout(io.StringIO()):
            data, _, props = pre.run_case_npy(volume.array.astype(np.float32), None, props, self.plans_manager, cm,
                                              self.loaded.dataset_json)
        tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None].to(self.device)
        grid = GridChange(tuple(int(s) for s in volume.shape), tuple(int(s) for s in tensor.shape[2:]))
        prepared = PreparedInput(tensor=tensor, volume=volume, grid=grid, state={"properties": props})
        prepared.state["model_ijk_to_ras"] = volume.ijk_to_ras @ self._model_to_input_ijk(prepared)
        return prepared

    def _model_to_input_ijk(self, prepared: PreparedInput) -> np.ndarray:
        """4×4 map from model-grid (i, j, k) to input (i, j, k), voxel centres (transpose, crop, resampling)."""
        props = prepared.state["properties"]
        crop = props["shape_after_cropping_and_before_resampling"]
        model = prepared.model_shape
        a = np.eye(4)
        a[:3, :3] = 0.0
        for ax, t in enumerate(self.plans_manager.transpose_forward):
            s = crop[ax] / model[ax]
            row, col = 2 - int(t), 2 - ax
            a[row, col] = s
            a[row, 3] = props["bbox_used_for_cropping"][ax][0] + 0.5 * s - 0.5
        return a

    # ---- the model function ------------------------------------------------------------------------------------
    def divisor(self) -> int:
        strides = self.configuration_manager.network_arch_init_kwargs.get("strides") or [[1]]
        per_axis = np.prod([np.broadcast_to(np.asarray(s), (len(self.configuration_manager.patch_size),))
                            for s in strides], axis=0)
        return int(np.max(per_axis))

    def axis_divisors(self, ndim: int = 3) -> tuple[int, ...]:
        """What each model-grid axis is padded to a multiple of before a network pass (the product of the network's
        strides per axis; 1 for the slice axis of a 2D configuration). nnU-Net's patches are multiples of these, so
        a window is never padded."""
        strides = self.configuration_manager.network_arch_init_kwargs.get("strides") or [[1]]
        nd = len(self.configuration_manager.patch_size)
        per_axis = tuple(int(v) for v in np.prod([np.broadcast_to(np.asarray(s), (nd,)) for s in strides], axis=0))
        return (1,) * (ndim - nd) + per_axis

    def tta_passes(self) -> list[tuple[int, ...]]:
        """The flips (model-grid spatial axes, 0-based) each window runs, in order; ``()`` is the plain pass."""
        if not (self.tta and self.mirror_axes):
            return [()]
        axes = list(self.mirror_axes)
        combos = [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
        return [()] + [tuple(int(a) for a in c) for c in combos]

    def window_plan(self, grid: tuple[int, ...]) -> WindowPlan:
        """nnU-Net's windows over ``grid`` (step 0.5, Gaussian σ = patch/8; 2D configs as one-slice 3D windows)."""
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

        patch = tuple(int(p) for p in self.configuration_manager.patch_size)
        grid = tuple(int(g) for g in grid)
        lead = len(grid) - len(patch)
        pad = [(0, 0)] * lead + [((max(p - g, 0)) // 2, max(p - g, 0) - max(p - g, 0) // 2)
                                 for g, p in zip(grid[lead:], patch)]
        padded = tuple(g + a + b for g, (a, b) in zip(grid, pad))
        steps = compute_steps_for_sliding_window(padded[lead:], patch, 0.5)
        gauss = compute_gaussian(patch, sigma_scale=1.0 / 8, value_scaling_factor=10, device=torch.device("cpu"))
        windows = [tuple(slice(s, s + p) for s, p in zip(corner, patch)) for corner in itertools.product(*steps)]
        if lead:
            slices = [(slice(d, d + 1),) + w for d in range(padded[0]) for w in windows]
            roi: tuple[int, ...] = (1,) + patch
            importance = gauss.float().reshape(roi)
        else:
            slices, roi, importance = windows, patch, gauss.float()
        return WindowPlan(grid, roi, tuple(pad), slices, importance, (0.5,) * len(grid), "gaussian", 0.125)

    def function_info(self, grid: tuple[int, ...] | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "adapter": type(self).__name__, "framework": self.description.preprocessing.get("framework"),
            "configuration": self.loaded.configuration, "trainer": self.loaded.trainer_name,
            "folds": [str(f) for f in self.loaded.folds], "checkpoint": self.loaded.checkpoint,
            "mirroring": list(self.mirror_axes) if (self.tta and self.mirror_axes) else None,
            "mirroring_allowed_by_checkpoint": list(self.mirror_axes) if self.mirror_axes else None,
            "tta_passes_per_window": len(self.tta_passes()), "step_size": 0.5, "gaussian": True,
        }
        if grid is not None:
            plan = self.window_plan(tuple(grid))
            info.update({k: v for k, v in plan.describe().items() if k != "kind"})
        info["kind"] = "nnunet_sliding_window"
        return info

    def _mirrored(self, w: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
        """nnU-Net's ``_internal_maybe_mirror_and_predict``: ``net`` on ``w`` and on each flip, averaged."""
        passes = self.tta_passes()
        pred = net(w)
        for axes in passes[1:]:
            dims = [a + 2 for a in axes]
            pred = pred + torch.flip(net(torch.flip(w, dims)), dims)
        return pred / len(passes) if len(passes) > 1 else pred

    def fold_networks(self) -> list[torch.nn.Module]:
        """The folds' networks, in the order :meth:`infer` runs them."""
        return list(self.network.folds) if isinstance(self.network, FoldEnsemble) else [self.network]

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *grid)`` preprocessed → ``(B, N, *grid)`` logits, as ``nnUNetPredictor`` computes them.

        Per fold: nnU-Net's padding, windows, mirroring and Gaussian blend, accumulated in float16 exactly as
        ``_internal_predict_sliding_window_return_logits`` does (window contributions are added to a float16
        buffer, weights to a float16 normaliser); folds summed in float16 and divided by their number. The result is
        returned as float32 (holding the same float16 values). Differentiable with respect to ``x``.
        """
        from acvl_utils.cropping_and_padding.padding import pad_nd_image

        if x.shape[0] != 1:
            return torch.cat([self.infer(x[b:b + 1]) for b in range(x.shape[0])], 0)
        plan = self.window_plan(tuple(x.shape[2:]))
        data, revert = pad_nd_image(x[0], tuple(self.configuration_manager.patch_size), "constant", {"value": 0},
                                    True, None)
        crop = (slice(None),) + tuple(revert[1:])
        with_grad = torch.is_grad_enabled()
        t16: torch.Tensor | None = None
        t32: torch.Tensor | None = None
        nets = self.fold_networks()
        for net in nets:
            l16, l32 = self._sliding_window(data, plan, net, with_grad)
            t16 = l16[crop] if t16 is None else t16 + l16[crop]
            if l32 is not None:
                t32 = l32[crop] if t32 is None else t32 + l32[crop]
        assert t16 is not None
        if len(nets) > 1:
            t16 = t16 / len(nets)
            t32 = t32 / len(nets) if t32 is not None else None
        if t32 is None:
            return t16.float()[None]
        # nnU-Net's float16 values forward; the gradient of the same blend computed in float32 backward (the float16
        # normaliser's reciprocal overflows where only window corners reach, which would turn gradients into NaN)
        return (t32 + (t16.float() - t32).detach())[None]

    def _sliding_window(
        self, data: torch.Tensor, plan: WindowPlan, net: torch.nn.Module, with_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One fold's blend over the padded ``(C, *padded)`` data: nnU-Net's float16 accumulation, and (when
        gradients are wanted) the same sums in float32 (see :meth:`infer`)."""
        g16 = plan.importance.to(data.device, torch.float16)
        g32 = g16.float()
        shape = (self.label_manager.num_segmentation_heads,) + plan.padded
        acc16 = torch.zeros(shape, device=data.device, dtype=torch.float16)
        norm16 = torch.zeros(plan.padded, device=data.device, dtype=torch.float16)
        acc32 = torch.zeros(shape, device=data.device) if with_grad else None
        norm32 = torch.zeros(plan.padded, device=data.device) if with_grad else None
        for sl in plan.slices:
            w = data[(slice(None),) + sl][None]
            if self.is_2d_config:
                pred = self._mirrored(w[:, :, 0], net)[0][:, None]
            else:
                pred = self._mirrored(w, net)[0]
            acc16[(slice(None),) + sl] += pred.detach().float() * g16
            norm16[sl] += g16
            if acc32 is not None and norm32 is not None:
                acc32[(slice(None),) + sl] += pred.float() * g32
                norm32[sl] += g32
        out32 = acc32 / norm32 if acc32 is not None and norm32 is not None else None
        return acc16 / norm16, out32

    def network_pass(self, x: torch.Tensor) -> torch.Tensor:
        """The function inside one window, applied to the whole of ``x``: the (fold-averaged) network on ``x`` and on
        each mirrored copy when TTA is on, averaged (nnU-Net's per-window step); each axis zero-padded at the end to
        a multiple of its total stride and cropped back. 2D configurations: slice by slice. Over a window this is
        exactly what :meth:`infer` computes there; over the whole grid it is the opt-in approximation."""
        if self.is_2d_config:
            slices = [self._pass_padded(x[:, :, d]) for d in range(x.shape[2])]
            return torch.stack(slices, dim=2)
        return self._pass_padded(x)

    def _pass_padded(self, x: torch.Tensor) -> torch.Tensor:
        per_axis = self.axis_divisors(x.ndim - 2)
        spatial = tuple(x.shape[2:])
        flat: list[int] = []
        for s, d in reversed(list(zip(spatial, per_axis))):
            flat.extend([0, int((-s) % int(d))])
        out = self._mirrored(torch.nn.functional.pad(x, flat) if any(flat) else x, self.network)
        return out[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]

    # ---- back to the input ---------------------------------------------------------------------------------------
    def prediction_from_logits(
        self, logits: torch.Tensor, prepared: PreparedInput, threshold: float = 0.5
    ) -> Prediction:
        """nnU-Net's own export: logits resampled to the cropped input, nonlinearity, labels, un-cropped."""
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        props = dict(prepared.state["properties"])
        seg, probs = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits[0].detach().cpu().to(torch.float16), self.plans_manager, self.configuration_manager,
            self.label_manager, props, return_probabilities=True, num_threads_torch=torch.get_num_threads(),
        )
        vol = prepared.volume
        d = self.description
        kwargs: dict[str, Any] = {}
        if "label_values" in Prediction.__dataclass_fields__:
            kwargs["label_values"] = list(d.label_values or [])
        return Prediction(
            "segmentation", list(d.class_names),
            labels=Volume(np.asarray(seg)[None].astype(np.int16), vol.ijk_to_ras.copy()),
            probabilities=Volume(np.asarray(probs, dtype=np.float32), vol.ijk_to_ras.copy(), list(d.class_names)),
            logits_model_grid=logits, **kwargs,
        )

    def to_input_grid(self, maps: torch.Tensor, prepared: PreparedInput) -> np.ndarray:
        """``(M, *model grid or layer shape)`` → ``(M, K, J, I)`` float32: linear onto the model grid, then
        nnU-Net's probability resampling to the cropped input shape, zeros outside the crop, transpose back."""
        props = prepared.state["properties"]
        t = maps.detach().float().cpu()
        if tuple(t.shape[1:]) != prepared.model_shape:
            t = resize(t[None], prepared.model_shape, "linear")[0]
        pm, cm = self.plans_manager, self.configuration_manager
        spacing_t = [props["spacing"][i] for i in pm.transpose_forward]
        crop_shape = props["shape_after_cropping_and_before_resampling"]
        current = cm.spacing if len(cm.spacing) == len(crop_shape) else [spacing_t[0], *cm.spacing]
        with contextlib.redirect_stdout(io.StringIO()):
            r = cm.resampling_fn_probabilities(t, crop_shape, current, spacing_t)
        r = r.cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r)
        full = np.zeros((r.shape[0],) + tuple(props["shape_before_cropping"]), dtype=np.float32)
        box = tuple(slice(int(a), int(b)) for a, b in props["bbox_used_for_cropping"])
        full[(slice(None),) + box] = r
        return np.ascontiguousarray(full.transpose([0] + [i + 1 for i in pm.transpose_backward]))

    def mask_to_model_grid(self, masks: np.ndarray, prepared: PreparedInput) -> torch.Tensor:
        """``(M, K, J, I)`` masks → transpose, crop, nearest resize onto the model grid (tiny regions kept)."""
        props = prepared.state["properties"]
        m = np.asarray(masks, dtype=np.float32).transpose([0] + [i + 1 for i in self.plans_manager.transpose_forward])
        box = tuple(slice(int(a), int(b)) for a, b in props["bbox_used_for_cropping"])
        t = torch.from_numpy(np.ascontiguousarray(m[(slice(None),) + box]))
        grid = prepared.model_shape
        if tuple(t.shape[1:]) != grid:
            near = resize(t[None], grid, "nearest")[0]
            if not (near.flatten(1).sum(1).gt(0).all() or t.sum() == 0):
                near = (resize(t[None], grid, "linear")[0] > 0).float()
            t = near
        return t.to(self.device)

    def voxel_to_model_grid(self, voxel: tuple[int, int, int], prepared: PreparedInput) -> tuple[int, ...]:
        props = prepared.state["properties"]
        i, j, k = voxel
        idx = (k, j, i)
        out = []
        for ax, t in enumerate(self.plans_manager.transpose_forward):
            c = idx[int(t)] - int(props["bbox_used_for_cropping"][ax][0])
            crop = props["shape_after_cropping_and_before_resampling"][ax]
            g = prepared.model_shape[ax]
            out.append(min(max(int((c + 0.5) * g / crop), 0), g - 1))
        return tuple(out)


def load_nnunet_model(
    folder: str, device: str = "cpu", folds: list[int | str] | None = None, checkpoint: str = "final",
    tta: bool = True, allow_unsafe_pickle: bool = False, trust_code: bool = False,
) -> NnUNetModel:
    """Load an nnU-Net v2 trained-model folder (default: every fold present, ``checkpoint_final.pth``, TTA on where
    the checkpoint allows mirroring). Its plans.json and dataset.json are checked against
    :mod:`.nnunet_schema` first, unless ``trust_code``."""
    loaded = read_nnunet_folder(folder, folds, checkpoint, allow_unsafe_pickle, trust_code)
    return NnUNetModel(loaded, device=device, tta=tta)
