"""``compare``: explain one case and target with several methods and measure how far they agree (triangulation)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..io import read_inputs, read_label_map
from ..outputs import OutputSpec
from .common import add_model_arguments, open_model, progress_from
from .explain import _voxel

HELP = "run several methods on one case and target: pairwise agreement, consensus map and a figure"


def _folder_files(folder: Path, args: argparse.Namespace) -> list[Path]:
    """The files of ``--output DIR``: one map and sidecar per method, the consensus maps, the report and figure."""
    from ..compare import parse_methods

    names = [n for m in parse_methods(args.methods) for n in (f"{m}.nrrd", f"{m}.nrrd.json")]
    names += ["consensus.nrrd", "consensus_agreement.nrrd", "agreement.json"]
    names += [] if args.no_figure else ["agreement.png"]
    return [folder / n for n in names]


#: Checked by the CLI before any work (see MedXAILib.outputs); every file in the folder is written as one set.
OUTPUTS = {"output": OutputSpec(folder=True, derived=_folder_files)}
DESCRIPTION = (
    "Explain the same target with every method of --methods, then write DIR/<method>.nrrd, DIR/agreement.json "
    "(pairwise Spearman rho, SSIM and top-k IoU matrices, each method's agreement with the consensus), "
    "DIR/consensus.nrrd (rank-averaged normalised maps), DIR/consensus_agreement.nrrd (per-voxel agreement) and "
    "DIR/agreement.png."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--methods", required=True, help="two or more methods, comma-separated (see `methods`)")
    parser.add_argument("--target", metavar="LABEL", help="class name or index to explain")
    parser.add_argument("--region", metavar="MASK", help="label map on the input grid: explain this region")
    parser.add_argument("--voxel", metavar="I,J,K", help="explain one voxel (input voxel indices)")
    parser.add_argument(
        "--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
        help="a parameter of one method, e.g. occlusion.window_mm=16; repeatable",
    )
    parser.add_argument("--topk", type=float, default=5.0, help="k of the top-k%% IoU (default 5)")
    parser.add_argument(
        "--values", choices=("display", "signed"), default="display",
        help="compare each map as displayed (positive part or |h|; default) or its signed values",
    )
    parser.add_argument("--compare-region", choices=("object", "all"), default="object",
                        help="voxels compared: the object (any input channel non-zero; default) or all voxels")
    parser.add_argument("--map-resampling", choices=("interpolate", "sum"), default="interpolate",
                        help="how maps reach the input grid (see docs/conventions.md)")
    parser.add_argument("--no-figure", action="store_true", help="skip agreement.png")
    parser.add_argument("--output", required=True, type=Path, help="folder to write")


def method_params(items: list[str]) -> dict[str, dict[str, str]]:
    """``METHOD.KEY=VALUE`` items → {method: {key: value}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        method, dot, key = head.partition(".")
        if not sep or not dot or not method.strip() or not key.strip():
            raise InputError(f"--param {item!r}: write METHOD.KEY=VALUE, e.g. occlusion.window_mm=16")
        out.setdefault(method.strip(), {})[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from ..compare import compare, parse_methods, write_comparison

    methods = parse_methods(args.methods)
    params = method_params(args.param)
    progress = progress_from(args)
    model = open_model(args)
    volume = read_inputs(args.input, model)
    region = read_label_map(args.region, reference=volume, what="region mask") if args.region else None
    result = compare(
        model, volume, methods, label=args.target, region=region, voxel=_voxel(args.voxel), params=params,
        values=args.values, topk_percent=args.topk, map_resampling=args.map_resampling,
        region_of_comparison=args.compare_region,
        progress=progress.sub(0.0, 0.95),
    )
    extra = {"model": model.name, "input": args.input, "conventions": {"map_resampling": args.map_resampling}}
    write_comparison(result, args.output, volume, extra, figure=not args.no_figure)
    progress(1.0, f"wrote {args.output}")
    if args.progress != "json":
        mp = result.report["mean_pairwise"]
        print(f"wrote {args.output}: mean pairwise Spearman {_fmt(mp['spearman'])}, SSIM {_fmt(mp['ssim'])}, "
              f"top-{args.topk:g}% IoU {_fmt(mp['topk_iou'])}; consensus agreement "
              f"{_fmt(result.report['consensus_agreement_mean'])} "
              f"(chance {_fmt(result.report['consensus_agreement_chance']['mean'])})")
    return 0


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"
