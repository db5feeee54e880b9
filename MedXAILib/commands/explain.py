"""``explain``: a heat map of why the model said what it said, in the input's geometry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from ..io import read_inputs, read_label_map, write_json, write_volume
from ..volume import Volume
from .common import VOLUME_SUFFIXES, add_model_arguments, check_output_path, open_model, progress_from

COUNTERFACTUAL_METHODS = ("counterfactual", "sedc")
HELP = "explain a prediction with a heat map (Grad-CAM and other methods; see `methods`)"
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
    parser.add_argument("--output", help="heat map to write (.nrrd, .nii.gz, .mha); required unless --dry-run")
    parser.add_argument("--normalized", help="also write the normalised display map here")
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


def run(args: argparse.Namespace) -> int:
    from ..explain import explain
    from ..explain.estimate import estimate_cost

    if not args.dry_run and not args.output:
        raise InputError("--output is required (or use --dry-run to see the cost)")
    out = check_output_path(args.output, VOLUME_SUFFIXES) if args.output else None
    if args.counterfactual:
        check_output_path(args.counterfactual, VOLUME_SUFFIXES)
    if (args.counterfactual or args.series) and args.method not in COUNTERFACTUAL_METHODS:
        raise InputError(
            f"--counterfactual and --series need a counterfactual method ({', '.join(COUNTERFACTUAL_METHODS)}); "
            f"--method is {args.method}"
        )
    progress = progress_from(args)
    model = open_model(args)
    volume = read_inputs(args.input, model)
    region = read_label_map(args.region, reference=volume, what="region mask") if args.region else None
    voxel = _voxel(args.voxel)
    params = _params(args)
    if args.dry_run:
        est = estimate_cost(model, volume, args.method, params=params)
        print(json.dumps(est, indent=None if args.progress == "json" else 2))
        return 0
    expl = explain(
        model, volume, args.method, label=args.target, region=region, voxel=voxel, params=params,
        progress=progress.sub(0.0, 0.95),
    )
    assert out is not None
    sidecar = {"model": model.name, "input": args.input, **expl.summary()}
    write_volume(expl.heatmap, out)
    if args.normalized:
        write_volume(expl.normalized(), check_output_path(args.normalized, VOLUME_SUFFIXES))
    if args.counterfactual:
        cf = expl.volumes["counterfactual"]
        sidecar["counterfactual_files"] = write_per_channel(cf, args.counterfactual)
        sidecar["counterfactual_channels"] = list(cf.channel_names)
    if args.series:
        files = []
        for n, frame in enumerate(expl.volumes.get("series", [])):
            files.append(write_per_channel(frame, str(Path(args.series) / f"step{n:02d}.nii.gz")))
        sidecar["series_files"] = files
    write_json(sidecar, str(out) + ".json")
    progress(1.0, f"wrote {out}")
    return 0


def channel_path(path: str, channel: str) -> Path:
    """``cf.nii.gz`` + ``t1`` → ``cf_t1.nii.gz`` (the channel name added to the stem, the suffix kept)."""
    p = Path(path)
    name = p.name
    suffix = next((s for s in VOLUME_SUFFIXES if name.lower().endswith(s)), p.suffix)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in channel)
    return p.with_name(f"{name[: len(name) - len(suffix)]}_{safe}{suffix}")


def write_per_channel(volume: Volume, path: str) -> list[str]:
    """Write a Volume as one file (one channel) or one file per channel named by :func:`channel_path`."""
    if volume.n_channels == 1:
        return [str(write_volume(volume, path))]
    return [str(write_volume(volume.channel(c), channel_path(path, n))) for c, n in enumerate(volume.channel_names)]
