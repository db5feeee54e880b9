"""``python -m MedXAILib evaluate``: score a segmentation against a reference, or a heat map's localisation.

Two modes share the command:

- ``--prediction P --reference R`` — per-label Dice, IoU, HD95 (mm) and volumes (mL) →
  ``{"labels": {"1": {...}, ...}, "regions": {...}, "inputs": {...}}``.
- ``--heatmap H --reference R`` (and/or ``--box x,y,w,h`` for a 2D map) — localisation and complexity metrics of an
  explanation → flat keys named after the metrics (``pointing_game``, ``relevance_mass``, ``relevance_rank``,
  ``topk_dice_5pct``, ``sparseness_gini``, ``box_iobb``, …) plus ``inputs``.

``--msfi t1ce:0.5,flair:0.3,t2:0.2,t1:0`` adds the modality-specific feature importance of a per-channel heat map
(:mod:`MedXAILib.metrics.msfi`; ``msfi``, ``msfi_portions``), such as ``explain --channel-maps H`` writes (its channel
names are read from ``H.json``); the other metrics then score the sum over channels.

Metrics that need the model (faithfulness, stability, sanity: ``--model`` and ``--input``) are delegated to
``MedXAILib.quality.model_based_metrics(args, heatmap, reference) -> dict`` when that module exists; the flags are
accepted now and refused with a clear message until then.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Callable

import numpy as np

from .. import cli
from ..errors import InputError, MethodError
from ..outputs import OutputSpec
from ..progress import Progress, ProgressCallback
from ..volume import Volume

HELP = "score a segmentation against a reference, or how well a heat map localises the reference"
DESCRIPTION = (
    "Segmentation mode (--prediction): Dice, IoU, HD95 in mm and volumes in mL per label. "
    "Heat-map mode (--heatmap): pointing game, relevance mass and rank accuracy, top-k%% Dice/IoU, sparseness, "
    "and the ChestX-ray14 box protocol (--box). Results are written as JSON."
)
DEFAULT_TOPK = "1,5,10"
OUTPUTS = {"output": OutputSpec((".json",))}  # checked by the CLI before any work (MedXAILib.outputs)
QUALITY_MODULE = "MedXAILib.quality"
HD95_CHOICES = ("monai", "brats")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prediction", type=Path, help="predicted label map (segmentation mode)")
    mode.add_argument("--heatmap", type=Path, help="explanation heat map (heat-map mode)")
    parser.add_argument("--reference", type=Path, help="reference label map on the same voxel grid")
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "--labels",
        help="comma-separated label values, e.g. 1,2,4: the labels scored (segmentation) or merged into the "
        "reference region (heat map); default: every non-zero label",
    )
    parser.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="NAME=L1,L2",
        help="segmentation mode: also score labels merged into one region, e.g. whole_tumour=1,2,4 (repeatable)",
    )
    parser.add_argument("--heatmap-channel", type=int, default=None, help="channel of a multi-channel heat map")
    parser.add_argument(
        "--msfi", metavar="MODALITY:WEIGHT,...",
        help="heat-map mode: modality-specific feature importance (Jin et al., AAAI 2022) of a per-channel heat map "
             "against --reference, e.g. t1ce:0.5,flair:0.3,t2:0.2,t1:0 (clinician importances summing to 1); a "
             "one-channel map counts for every modality; the other metrics use the sum over channels",
    )
    parser.add_argument("--heatmap-channels", metavar="NAMES",
                        help="--msfi: the heat map's channel names in order, e.g. t1,t1ce,t2,flair (default: the names "
                             "explain --channel-maps recorded in HEATMAP.json, else the MedXAI brain order "
                             "t1,t1ce,t2,flair restricted to the --msfi modalities it holds)")
    parser.add_argument(
        "--tolerance-mm", type=float, default=0.0, help="pointing-game tolerance in mm (adds pointing_game_tol*)"
    )
    parser.add_argument(
        "--topk", default=DEFAULT_TOPK, help=f"top-k percentages for topk_dice/topk_iou (default {DEFAULT_TOPK})"
    )
    parser.add_argument("--box", help="reference box x,y,w,h in the heat map's pixels (2D ChestX-ray14 protocol)")
    parser.add_argument(
        "--box-threshold", type=float, default=0.5, help="threshold of the normalised map for the box (default 0.5)"
    )
    parser.add_argument("--hd95", choices=HD95_CHOICES, default="monai",
                        help="HD95 convention: monai (larger directed 95th percentile; default) or brats (pooled "
                        "95th percentile; 373 mm when one mask is empty, NaN/null when both are)")
    parser.add_argument("--relevance-mass", choices=("positive", "signed", "absolute"), default="positive",
                        help="relevance mass of positive relevance (default), signed (Quantus) or |h| (CLEVR-XAI)")
    parser.add_argument("--box-mode", choices=("largest", "each"), default="largest",
                        help="--box: box of the largest thresholded region (default) or one box per region")
    parser.add_argument("--stability-scaling", choices=("auto", "always", "never"), default="auto",
                        help="intensity-scaling perturbations: auto skips them when the model's normalisation makes "
                        "the map invariant (default)")
    parser.add_argument("--max-sensitivity", choices=("fixed", "quantus", "yeh"), default="fixed",
                        help="fixed perturbations, relative to the map's norm (default); or 200 uniform draws in an "
                        "r=0.2 ball: quantus (max-normalised maps, divided by the input's norm) or yeh (raw maps, "
                        "no denominator)")
    parser.add_argument("--faithfulness-curve", choices=("normalised", "rise"), default="normalised",
                        help="deletion/insertion curves divided by f(x) (default) or unnormalised as RISE")
    parser.add_argument("--faithfulness-baseline", choices=("blur", "mean", "noise", "rise"), default="blur",
                        help="baseline of deleted voxels (default blur); rise: zeros for deletion, blur for insertion")
    parser.add_argument("--model", help="model for faithfulness/stability/sanity metrics")
    parser.add_argument(
        "--input", nargs="+", action="extend", type=Path,
        help="the explained image(s), for model-based metrics; one per channel (--input a b or --input a --input b)",
    )
    parser.add_argument(
        "--method", help="the method that made the heat map (re-run by stability/sanity; default: the explain sidecar)"
    )
    parser.add_argument(
        "--quality", help="model-based metric families: faithfulness,stability,sanity (default all three)"
    )
    cli.add_progress_argument(parser)


# ---- argument parsing helpers ------------------------------------------------------------------------------------
def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"{what} must be comma-separated whole numbers (e.g. 1,2,4); got {text!r}") from None
    if not values:
        raise InputError(f"{what} is empty")
    return values


def _float_list(text: str, what: str, count: int | None = None) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"{what} must be comma-separated numbers; got {text!r}") from None
    if not values or (count is not None and len(values) != count):
        raise InputError(f"{what} needs {count or 'at least one'} comma-separated numbers; got {text!r}")
    return values


def _regions(items: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item in items:
        name, sep, labels = item.partition("=")
        name = name.strip()
        if not sep or not name or name.isdigit():
            raise InputError(f"--region must look like NAME=1,2,4 with a non-numeric name; got {item!r}")
        out[name] = _int_list(labels, f"--region {name}")
    return out


def _check_args(args: argparse.Namespace) -> None:
    """Refuse inconsistent flag combinations before any file is read."""
    if args.prediction is not None:
        if args.reference is None:
            raise InputError("--prediction needs --reference (the label map to compare with)")
        if args.model or args.input:
            raise InputError("--model/--input apply to heat-map mode (--heatmap), not to --prediction")
        if args.box:
            raise InputError("--box applies to heat-map mode (--heatmap), not to --prediction")
    else:
        if args.reference is None and not args.box:
            raise InputError("--heatmap needs --reference (a label map) or --box x,y,w,h")
        if args.region:
            raise InputError("--region applies to segmentation mode (--prediction)")
        if args.msfi and args.reference is None:
            raise InputError("--msfi needs --reference (the feature mask)")
        if args.msfi and args.heatmap_channel is not None:
            raise InputError("--msfi scores every channel of the heat map; drop --heatmap-channel")
        if args.msfi and _same_path(Path(str(args.heatmap) + ".json"), args.output):
            raise InputError(f"--output {args.output} is {args.heatmap}.json, which --msfi reads (the heat map's "
                             "channel names); give --output another path")
    if args.prediction is not None and (args.msfi or args.heatmap_channels):
        raise InputError("--msfi and --heatmap-channels apply to heat-map mode (--heatmap)")
    if args.heatmap_channels and not args.msfi:
        raise InputError("--heatmap-channels names the channels for --msfi")
    if args.tolerance_mm < 0:
        raise InputError(f"--tolerance-mm must be >= 0; got {args.tolerance_mm}")


def _same_path(a: Path, b: Path) -> bool:
    import os

    return os.path.realpath(a) == os.path.realpath(b) or (a.exists() and b.exists() and os.path.samefile(a, b))


def _model_based_hook(args: argparse.Namespace) -> Callable[..., dict] | None:
    """The plug-in ``model_based_metrics`` when ``--model``/``--input`` are given (MethodError if unavailable)."""
    if not (args.model or args.input):
        return None
    if not (args.model and args.input):
        raise InputError("model-based metrics need both --model and --input")
    try:
        module = importlib.import_module(QUALITY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != QUALITY_MODULE:
            raise
        module = None
    hook = getattr(module, "model_based_metrics", None)
    if hook is None:
        raise MethodError(
            "faithfulness, stability and sanity metrics need the model and are not implemented yet; "
            "drop --model/--input to get localisation and complexity metrics"
        )
    return hook


# ---- segmentation mode -----------------------------------------------------------------------------------------
def evaluate_segmentation(
    prediction: Volume,
    reference: Volume,
    labels: list[int] | None = None,
    regions: dict[str, list[int]] | None = None,
    hd95: str = "monai",
) -> dict[str, object]:
    """``{"labels": {...}, "regions": {...}}`` for a predicted label map against a reference (same grid).

    ``hd95`` is the HD95 convention (``monai`` or ``brats``; :func:`MedXAILib.metrics.segmentation.hd95_mm`).
    """
    from ..metrics.segmentation import segmentation_metrics

    scores = segmentation_metrics(prediction, reference, labels=labels, regions=regions, hd95=hd95)
    region_names = set(regions or {})
    out: dict[str, object] = {"labels": {k: v for k, v in scores.items() if k not in region_names}}
    if region_names:
        out["regions"] = {k: v for k, v in scores.items() if k in region_names}
    return out


def _run_segmentation(args: argparse.Namespace, progress: ProgressCallback) -> dict[str, object]:
    from .. import io

    labels = _int_list(args.labels, "--labels") if args.labels else None
    regions = _regions(args.region)
    progress(0.0, "reading label maps")
    reference = io.read_label_map(args.reference, what="reference")
    prediction = io.read_label_map(args.prediction, what="prediction")
    diff = reference.geometry_difference(prediction)
    if diff is not None:
        raise InputError(
            f"{args.prediction}: the prediction has {diff} than the reference {args.reference}; "
            "both must lie on the same voxel grid (resample first)"
        )
    progress(0.3, "scoring labels")
    result = evaluate_segmentation(prediction, reference, labels, regions, hd95=args.hd95)
    result["conventions"] = {"hd95": args.hd95}
    result["inputs"] = {
        "prediction": str(args.prediction),
        "reference": str(args.reference),
        "spacing_mm": [float(s) for s in reference.spacing],
    }
    return result


# ---- heat-map mode ---------------------------------------------------------------------------------------------
def reference_region(reference: Volume, labels: list[int] | None) -> np.ndarray:
    """The ``(K, J, I)`` boolean reference region: the given labels merged, or every non-zero label."""
    arr = reference.array[0]
    if labels is None:
        region = arr > 0
    else:
        present = sorted(int(v) for v in np.unique(arr) if v != 0)
        missing = [v for v in labels if v not in present]
        if missing:
            raise InputError(
                f"label {', '.join(map(str, missing))} is not in the reference "
                f"(labels present: {', '.join(map(str, present)) or 'none'})"
            )
        region = np.isin(arr, labels)
    if not region.any():
        raise InputError("the reference region is empty; localisation needs at least one reference voxel")
    return region


def _read_heatmap(args: argparse.Namespace) -> Volume:
    from .. import io

    vol = io.read_image(args.heatmap, grayscale_2d=False)
    if getattr(args, "msfi", None):
        vol = vol.with_array(vol.array.astype(np.float64))
        vol.check_finite(f"{args.heatmap}: the heat map")
        return vol
    if args.heatmap_channel is not None:
        if not 0 <= args.heatmap_channel < vol.n_channels:
            raise InputError(f"--heatmap-channel {args.heatmap_channel}: the heat map has {vol.n_channels} channel(s)")
        vol = vol.channel(args.heatmap_channel)
    elif vol.n_channels != 1:
        raise InputError(f"{args.heatmap}: the heat map has {vol.n_channels} channels; pick one with --heatmap-channel")
    vol = vol.with_array(vol.array.astype(np.float64))
    vol.check_finite(f"{args.heatmap}: the heat map")
    return vol


def _run_heatmap(
    args: argparse.Namespace, progress: ProgressCallback, hook: Callable[..., dict] | None
) -> dict[str, object]:
    from .. import io
    from ..metrics import localisation as loc
    from ..metrics.complexity import complexity_summary
    from ..metrics.localisation import localisation_summary

    labels = _int_list(args.labels, "--labels") if args.labels else None
    topk = _float_list(args.topk, "--topk")
    box = _float_list(args.box, "--box", count=4) if args.box else None
    importance = None
    if args.msfi:
        from ..metrics.msfi import parse_importance

        importance = parse_importance(args.msfi)
    progress(0.0, "reading heat map")
    heat = _read_heatmap(args)
    channel_maps = None
    if importance is not None:
        channel_maps, heat = heat, heat.with_array(heat.array.sum(axis=0, keepdims=True))
    reference = None
    result: dict[str, object] = {}
    if args.reference is not None:
        reference = io.read_label_map(args.reference, reference=heat, what="reference")
        progress(0.3, "localisation")
        region = reference_region(reference, labels)
        if importance is not None and channel_maps is not None:
            from ..metrics.msfi import msfi

            result.update(msfi(channel_maps.array, _msfi_channels(args, channel_maps.n_channels, importance),
                               importance, region))
        result.update(localisation_summary(heat.array[0], region, heat.spacing_kji, topk, args.tolerance_mm,
                                           args.relevance_mass))
    if box is not None:
        if not heat.is_2d:
            raise InputError(f"--box is for 2D heat maps; {args.heatmap} has {heat.shape[0]} slices")
        found = loc.box_localisation(heat.array[0], box, args.box_threshold, args.box_mode)
        result.update({"box_iobb": found["iobb"], "box_iou": found["iou"], "box_detected_xywh": found["box"]})
        if "boxes" in found:
            result["box_all_regions"] = found["boxes"]
    progress(0.7, "complexity")
    result.update(complexity_summary(heat.array[0]))
    if hook is not None:
        progress(0.8, "model-based metrics")
        result.update(hook(args, heat, reference))
    result["inputs"] = {
        "heatmap": str(args.heatmap),
        "reference": None if args.reference is None else str(args.reference),
        "reference_labels": labels if labels is not None else "all non-zero",
        "box_xywh": box,
        "box_threshold": args.box_threshold if box is not None else None,
    }
    result["conventions"] = heatmap_conventions(args, box is not None, hook is not None)
    return result


def channel_names_beside(heatmap: str | Path) -> list[str] | None:
    """The channel names ``explain --channel-maps FILE`` records in ``FILE.json`` (None when there is no such list).

    Raises:
        InputError: ``FILE.json`` exists but is not a readable JSON object, or its ``channel_names`` is not a list
            of names.
    """
    import json

    side = Path(str(heatmap) + ".json")
    if not side.is_file():
        return None
    if side.stat().st_size > 1 << 20:
        raise InputError(f"{side}: larger than 1 MiB; not the channel list explain --channel-maps writes")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{side}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict) or "channel_names" not in data:
        return None  # another sidecar (explain --output writes one without channel names)
    names = data["channel_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise InputError(f"{side}: channel_names must be a list of channel names; got {names!r}")
    return [n.lower() for n in names]


def _msfi_channels(args: argparse.Namespace, n: int, importance: dict[str, float]) -> list[str]:
    """The heat map's channel names for MSFI: ``--heatmap-channels``, else the names ``explain --channel-maps``
    recorded beside the map (``H.json``), else the brain order of the weighted modalities."""
    from ..datasets import BRAIN_CHANNELS

    recorded = channel_names_beside(args.heatmap)
    if recorded is not None and len(recorded) != n:
        raise InputError(f"{args.heatmap}.json names {len(recorded)} channel(s); {args.heatmap} has {n}")
    if args.heatmap_channels:
        names = [c.strip().lower() for c in args.heatmap_channels.split(",") if c.strip()]
        if len(names) != n:
            raise InputError(f"--heatmap-channels names {len(names)} channel(s); {args.heatmap} has {n}")
        if recorded is not None and names != recorded:
            raise InputError(f"--heatmap-channels {','.join(names)} contradicts {args.heatmap}.json, which names "
                             f"the channels {','.join(recorded)} in that order")
        return names
    if recorded is not None:
        return recorded
    if n == 1:
        return list(importance)
    brain = [c for c in BRAIN_CHANNELS if c in importance]
    if set(importance) <= set(BRAIN_CHANNELS) and len(brain) == n:
        return brain
    raise InputError(f"{args.heatmap} has {n} channels; name them with --heatmap-channels (e.g. "
                     f"{','.join(list(importance)[:n])})")


def heatmap_conventions(args: argparse.Namespace, box: bool, model_based: bool) -> dict[str, str]:
    """The conventions a heat-map evaluation used (see :mod:`MedXAILib.conventions`)."""
    out = {"relevance_mass": args.relevance_mass}
    if box:
        out["chestxray_box"] = f"{args.box_mode} (threshold {args.box_threshold:g})"
    if model_based:
        out.update({"stability_scaling": args.stability_scaling, "max_sensitivity": args.max_sensitivity,
                    "faithfulness_curve": args.faithfulness_curve,
                    "faithfulness_baseline": args.faithfulness_baseline})
    return out


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    progress = Progress(args.progress)
    if args.prediction is not None:
        result = _run_segmentation(args, progress)
    else:
        hook = _model_based_hook(args)
        result = _run_heatmap(args, progress, hook)
    from .. import io

    io.write_json(result, args.output)
    progress(1.0, "done")
    if args.progress != "json":
        print(f"wrote {args.output}")
    return 0
