"""``explain``: a heat map of why the model said what it said, in the input's geometry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputError
from ..io import read_inputs, read_label_map, write_json, write_volume
from ..models.cards import domain_check
from ..output_names import WILDCARD, name_with
from ..outputs import OutputSpec
from ..volume import Volume
from .common import (
    DICOM_OUTPUT_SUFFIXES,
    VOLUME_SUFFIXES,
    add_dicom_output_arguments,
    add_model_arguments,
    check_dicom_inputs,
    check_output_path,
    open_model,
    print_notes,
    progress_from,
)

COUNTERFACTUAL_METHODS = ("counterfactual", "sedc")
HELP = "explain a prediction with a heat map (Grad-CAM and other methods; see `methods`)"
SERIES_STEP = "step{:02d}.nii.gz"  # the files of --series, one per step (channel names added as in channel_path)


def _channel_files(path: Path, _args: argparse.Namespace) -> list[Path]:
    return [_with_channel(path, WILDCARD)]  # cf_<channel>.nii.gz: one per channel of a multi-channel input


def _series_files(folder: Path, _args: argparse.Namespace) -> list[Path]:
    return [folder / name_with("step", WILDCARD, ".nii.gz")]  # step<NN>.nii.gz and step<NN>_<channel>.nii.gz


#: Every file explain writes, checked by the CLI before any work (see MedXAILib.outputs): OUTPUT.json is the sidecar,
#: --channel-maps FILE has FILE.json (its channel names), --counterfactual FILE also names FILE_<channel> files,
#: --series DIR holds step<NN>[_<channel>].nii.gz.
OUTPUTS = {
    "output": OutputSpec(DICOM_OUTPUT_SUFFIXES, sidecars=(".json",)),
    "normalized": OutputSpec(DICOM_OUTPUT_SUFFIXES),
    "channel_maps": OutputSpec(VOLUME_SUFFIXES, sidecars=(".json",)),
    "shap_plot": OutputSpec((".png",)),
    "counterfactual": OutputSpec(VOLUME_SUFFIXES, derived=_channel_files),
    "series": OutputSpec(folder=True, derived=_series_files),
}
DESCRIPTION = (
    "Explain the model's output on an input. The default target is the predicted foreground (segmentation) or the "
    "top class (classification). Writes the signed raw heat map with the input's geometry, and beside it "
    "OUTPUT.json with the target, parameters, cost and per-channel importance."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--method", default="gradcam", help="explanation method (default gradcam)")
    parser.add_argument("--target", metavar="LABEL", help="class name or index to explain")
    parser.add_argument("--region", metavar="MASK", help="label map on the input grid: explain this region")
    parser.add_argument("--voxel", metavar="I,J,K", help="explain one voxel (input voxel indices)")
    parser.add_argument("--layer", help="layer for CAM methods (default: the model's cam_layer)")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a method parameter; repeatable"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the passes and estimated cost, then stop")
    parser.add_argument(
        "--output",
        help="heat map to write (.nrrd, .nii.gz, .mha), or .dcm for a DICOM Parametric Map referencing the DICOM "
        "input; required unless --dry-run",
    )
    parser.add_argument("--normalized", help="also write the normalised display map here (same formats)")
    parser.add_argument(
        "--channel-maps", metavar="FILE",
        help="also write the signed relevance of each input channel (sequence) as one 4-D image (x, y, z, channel) "
             "in the input's geometry, and FILE.json naming the channels in order; the heat map is their sum. For "
             "methods that attribute each input channel (saliency, ig, gradientshap, lrp, occlusion with "
             "per_channel=true, kernelshap/lime/partitionshap with per_channel_groups=true, counterfactuals); what "
             "`evaluate --msfi` scores",
    )
    add_dicom_output_arguments(parser)
    parser.add_argument(
        "--shap-plot", metavar="PNG",
        help="kernelshap / partitionshap / lime: also write shap's waterfall and bar plots of the per-supervoxel and "
        "per-sequence values here",
    )
    parser.add_argument(
        "--map-resampling", choices=("interpolate", "sum"), default="interpolate",
        help="how the model-grid map reaches the input grid: interpolate values (default; sums hold on the model "
        "grid) or sum (rescaled so the map's sum is kept); see docs/conventions.md",
    )
    parser.add_argument(
        "--counterfactual", metavar="FILE",
        help="counterfactual methods (counterfactual, sedc): write the counterfactual input here, in the input's "
             "geometry and units; multi-channel input gives one file per channel (FILE stem + _CHANNEL)",
    )
    parser.add_argument(
        "--series", metavar="FOLDER",
        help="counterfactual: write the progressive series here (step00 … stepNN, the last is the counterfactual)",
    )


def _params(args: argparse.Namespace) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in args.param:
        if "=" not in item:
            raise InputError(f"--param {item!r}: write KEY=VALUE")
        k, v = item.split("=", 1)
        params[k.strip()] = v.strip()
    if args.layer:
        params["layer"] = args.layer
    return params


def _voxel(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise InputError(f"--voxel {text!r}: give three integers i,j,k") from None
    if len(parts) != 3:
        raise InputError(f"--voxel {text!r}: give three integers i,j,k")
    return parts[0], parts[1], parts[2]


def explanation_conventions(method: str, params: dict, map_resampling: str) -> dict[str, str]:
    """The conventions an explanation used (see :mod:`MedXAILib.conventions`), for its sidecar."""
    out = {"map_resampling": map_resampling}
    if method == "scorecam":
        out["scorecam_weighting"] = str(params.get("weighting", "auto"))
    if method == "lrp" and "bias" in params:
        out["lrp_bias"] = str(bool(params["bias"])).lower()
    return out


def run(args: argparse.Namespace) -> int:
    from ..explain import explain
    from ..explain.budget import check_budget
    from ..explain.estimate import estimate_cost

    if not args.dry_run and not args.output:
        raise InputError("--output is required (or use --dry-run to see the cost)")
    if args.voxel and args.region:
        raise InputError("give either --region (explain a region) or --voxel (explain one voxel), not both")
    from ..dicom.output import is_dicom_output, model_identity, require_dicom_source

    out = check_output_path(args.output, DICOM_OUTPUT_SUFFIXES) if args.output else None
    if args.normalized:
        check_output_path(args.normalized, DICOM_OUTPUT_SUFFIXES)
    outputs = [] if args.dry_run else [args.output, args.normalized]
    check_dicom_inputs(outputs, args.input, args.dicom_fill_uids)
    if args.counterfactual:
        check_output_path(args.counterfactual, VOLUME_SUFFIXES)
    if args.channel_maps:
        check_output_path(args.channel_maps, VOLUME_SUFFIXES)
    if (args.counterfactual or args.series) and args.method not in COUNTERFACTUAL_METHODS:
        raise InputError(
            f"--counterfactual and --series need a counterfactual method ({', '.join(COUNTERFACTUAL_METHODS)}); "
            f"--method is {args.method}"
        )
    progress = progress_from(args)
    model = open_model(args)
    volume = read_inputs(args.input, model, allow_dicom_gaps=args.allow_dicom_gaps)
    source = None
    for path in outputs:
        if is_dicom_output(path):
            source = require_dicom_source(volume, path, args.input, args.dicom_fill_uids)
    region = read_label_map(args.region, reference=volume, what="region mask") if args.region else None
    voxel = _voxel(args.voxel)
    params = _params(args)
    if args.shap_plot and args.method not in ("kernelshap", "partitionshap", "lime"):
        raise InputError("--shap-plot is for kernelshap, partitionshap and lime (methods with per-supervoxel values)")
    if args.dry_run:
        est = estimate_cost(model, volume, args.method, params=params)
        print(json.dumps(est, indent=None if args.progress == "json" else 2))
        return 0
    check_budget(model, volume, args.method, params)  # absurd sample counts and batches: refused with the estimate
    expl = explain(
        model, volume, args.method, label=args.target, region=region, voxel=voxel, params=params,
        progress=progress.sub(0.0, 0.95), map_resampling=args.map_resampling,
    )
    assert out is not None
    if args.channel_maps and expl.channel_maps is None:  # known only once run; refused before anything is written
        raise InputError(
            f"--channel-maps: {expl.method} gives one map for all input channels, not one per channel; use a method "
            "that attributes each channel (saliency, ig, gradientshap, lrp, occlusion with per_channel=true, "
            "kernelshap/lime/partitionshap with per_channel_groups=true)"
        )
    sidecar = {"model": model.name, "input": args.input, "card": model.card(), **expl.summary(),
               "conventions": explanation_conventions(expl.method, expl.params, args.map_resampling)}
    warning = domain_check(model, volume)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
        sidecar["domain_warning"] = warning
    notes = list(volume.dicom.notes) if volume.dicom is not None else []
    for path, heatmap, normalized in ((str(out), expl.heatmap, False), (args.normalized, None, True)):
        if path is None:
            continue
        heatmap = expl.normalized() if normalized else heatmap
        if is_dicom_output(path):
            from ..dicom.pmap import write_parametric_map

            info = write_parametric_map(path, heatmap, source, model_identity(model), expl.method,
                                        normalized=normalized, fill_missing_uids=args.dicom_fill_uids)
            notes += [n for n in info.pop("notes") if n not in notes]
            sidecar["dicom_normalized" if normalized else "dicom"] = info
        else:
            write_volume(heatmap, path)
    if args.channel_maps:
        maps = expl.channel_maps
        assert maps is not None
        write_volume(maps, args.channel_maps, four_d=True)
        layout = {"file": str(args.channel_maps), "layout": "x, y, z, channel (a 4-D image; the first three axes "
                  "carry the input's geometry)", "channel_names": list(maps.channel_names),
                  "values": "signed relevance per input channel; their sum is the heat map"}
        write_json({**layout, "method": expl.method, "target": expl.target.describe(), "model": model.name},
                   str(args.channel_maps) + ".json")
        sidecar["channel_maps"] = layout
    if args.counterfactual:
        cf = expl.volumes["counterfactual"]
        sidecar["counterfactual_files"] = write_per_channel(cf, args.counterfactual)
        sidecar["counterfactual_channels"] = list(cf.channel_names)
    if args.series:
        sidecar["series_files"] = [write_per_channel(frame, str(Path(args.series) / SERIES_STEP.format(n)))
                                   for n, frame in enumerate(expl.volumes.get("series", []))]
    if notes:
        sidecar["notes"] = notes
    write_json(sidecar, str(out) + ".json")
    if args.shap_plot:
        from ..figures.shap_plots import shap_figure

        shap_figure(check_output_path(args.shap_plot, (".png",)), expl, list(model.description.channel_names))
    print_notes(notes)
    progress(1.0, f"wrote {out}")
    return 0


def channel_path(path: str | Path, channel: str) -> Path:
    """``cf.nii.gz`` + ``t1`` → ``cf_t1.nii.gz`` (the channel name added to the stem, the suffix kept)."""
    return _with_channel(path, "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in channel))


def _with_channel(path: str | Path, text: str) -> Path:
    p = Path(path)
    name = p.name
    suffix = next((s for s in VOLUME_SUFFIXES if name.lower().endswith(s)), p.suffix)
    return p.with_name(f"{name[: len(name) - len(suffix)]}_{text}{suffix}")


def write_per_channel(volume: Volume, path: str) -> list[str]:
    """Write a Volume as one file (one channel) or one file per channel named by :func:`channel_path`."""
    if volume.n_channels == 1:
        return [str(write_volume(volume, path))]
    return [str(write_volume(volume.channel(c), channel_path(path, n))) for c, n in enumerate(volume.channel_names)]
