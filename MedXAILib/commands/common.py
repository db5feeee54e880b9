"""Arguments and helpers shared by the model commands (segment, classify, explain, demo)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..cli import add_progress_argument
from ..errors import InputError
from ..models import Model, builtin_model_names, load_model
from ..progress import Progress


def add_model_arguments(parser: argparse.ArgumentParser, inputs: bool = True) -> None:
    parser.add_argument(
        "--model", required=True,
        help=f"a built-in model ({', '.join(builtin_model_names()) or 'none installed'}) or a model file or folder",
    )
    if inputs:
        parser.add_argument(
            "--input", action="append", required=True, metavar="FILE",
            help="input image; repeat once per channel in the model's channel order, or give one 4D file",
        )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    parser.add_argument(
        "--allow-unsafe-pickle", action="store_true",
        help="allow checkpoints that need arbitrary unpickling (this can run code stored in the file)",
    )
    add_progress_argument(parser)


def open_model(args: argparse.Namespace) -> Model:
    return load_model(args.model, device=args.device, allow_unsafe_pickle=args.allow_unsafe_pickle)


def progress_from(args: argparse.Namespace) -> Progress:
    return Progress(getattr(args, "progress", "bar"))


def check_output_path(path: str, suffixes: Sequence[str]) -> Path:
    p = Path(path)
    name = p.name.lower()
    if not any(name.endswith(s) for s in suffixes):
        raise InputError(f"{p}: the output must end with one of {', '.join(suffixes)}")
    return p


VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
