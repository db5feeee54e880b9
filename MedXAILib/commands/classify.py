"""``classify``: run a classification model and print or write its class probabilities."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError, ModelError
from ..io import read_inputs, write_json
from ..outputs import OutputSpec
from .common import add_model_arguments, open_model, progress_from

HELP = "classify an image; prints (or writes) the probability of each class"
OUTPUTS = {"output": OutputSpec((".json",))}  # checked by the CLI before any work (MedXAILib.outputs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--output", help="JSON file to write (default: print to stdout)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability above which a label is predicted")


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.threshold <= 1.0:  # also refuses nan
        raise InputError(f"--threshold {args.threshold}: a probability threshold lies between 0 and 1")
    progress = progress_from(args)
    model = open_model(args)
    if model.task != "classification":
        raise ModelError(f"model {model.name!r} is a {model.task} model; use `segment`")
    volume = read_inputs(args.input, model)
    prediction = model.predict(volume, progress=progress.sub(0.0, 0.95), threshold=args.threshold)
    result = {"model": model.name, "input": args.input, **prediction.summary()}
    if args.output:
        write_json(result, args.output)
        progress(1.0, f"wrote {args.output}")
    else:
        progress(1.0, "done")
        if args.progress != "json":
            print(json.dumps(result, indent=2))
        else:
            print(json.dumps({"result": result}))
    return 0
