"""``segment``: run a segmentation model and write its label map in the input's geometry."""

from __future__ import annotations

import argparse

from ..errors import ModelError
from ..io import read_inputs, write_json, write_volume
from .common import VOLUME_SUFFIXES, add_model_arguments, check_output_path, open_model, progress_from

HELP = "segment a volume; writes a label map with the input's exact geometry"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--output", required=True, help="label map to write (.nii.gz, .nrrd, .mha)")
    parser.add_argument("--probabilities", help="also write the class probabilities as a multi-channel volume")


def run(args: argparse.Namespace) -> int:
    out = check_output_path(args.output, VOLUME_SUFFIXES)
    progress = progress_from(args)
    model = open_model(args)
    if model.task != "segmentation":
        raise ModelError(f"model {model.name!r} is a {model.task} model; use `classify`")
    volume = read_inputs(args.input, model)
    prediction = model.predict(volume, progress=progress.sub(0.0, 0.9))
    assert prediction.labels is not None and prediction.probabilities is not None
    write_volume(prediction.labels, out)
    if args.probabilities:
        write_volume(prediction.probabilities, check_output_path(args.probabilities, VOLUME_SUFFIXES))
    write_json({"model": model.name, **prediction.summary()}, str(out) + ".json")
    progress(1.0, f"wrote {out}")
    return 0
