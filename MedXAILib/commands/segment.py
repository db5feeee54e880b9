"""``segment``: run a segmentation model and write its label map in the input's geometry."""

from __future__ import annotations

import argparse
import sys

from ..errors import ModelError
from ..io import read_inputs, write_json, write_volume
from ..models.cards import domain_check
from .common import VOLUME_SUFFIXES, add_model_arguments, check_output_path, open_model, progress_from

HELP = "segment a volume; writes a label map with the input's exact geometry"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--output", required=True, help="label map to write (.nii.gz, .nrrd, .mha)")
    parser.add_argument(
        "--probabilities", metavar="FILE",
        help="also write the per-class probabilities (softmax or sigmoid, as the model says) as one 4-D image "
        "(x, y, z, class) in the input's geometry, classes in the model's order (see the sidecar)",
    )
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="a model option; repeatable (nnU-Net: tta=false turns mirroring off)",
    )


def run(args: argparse.Namespace) -> int:
    out = check_output_path(args.output, VOLUME_SUFFIXES)
    progress = progress_from(args)
    model = open_model(args)
    if args.param:
        raise ModelError(f"unknown model option(s) {', '.join(args.param)}; segment takes tta=true|false")
    if model.task != "segmentation":
        raise ModelError(f"model {model.name!r} is a {model.task} model; use `classify`")
    volume = read_inputs(args.input, model)
    prediction = model.predict(volume, progress=progress.sub(0.0, 0.9))
    assert prediction.labels is not None and prediction.probabilities is not None
    write_volume(prediction.labels, out)
    sidecar = {"model": model.name, "card": model.card(), **prediction.summary(),
               "function": model.function_info(tuple(prediction.logits_model_grid.shape[2:]))
               if prediction.logits_model_grid is not None else None}
    warning = domain_check(model, volume)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
        sidecar["domain_warning"] = warning
    if args.probabilities:
        prob_path = check_output_path(args.probabilities, VOLUME_SUFFIXES)
        write_volume(prediction.probabilities, prob_path, four_d=True)
        sidecar["probabilities"] = {"file": str(prob_path), "layout": "x, y, z, class",
                                    "classes": list(prediction.class_names), "activation": model.description.output}
    write_json(sidecar, str(out) + ".json")
    progress(1.0, f"wrote {out}")
    return 0
