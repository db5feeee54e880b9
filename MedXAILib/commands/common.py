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
            help="input image; repeat once per channel in the model's channel order, or give one 4D file. "
            "DICOM: a series folder, FOLDER::SERIES_INSTANCE_UID when it holds several, or one (multi-frame) file",
        )
        parser.add_argument(
            "--allow-dicom-gaps", action="store_true",
            help="accept a DICOM series with whole missing slices, filling them by linear interpolation (the "
            "command says which); without it such a series is refused",
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
DICOM_OUTPUT_SUFFIXES = VOLUME_SUFFIXES + (".dcm",)


def add_dicom_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dicom-fill-uids", action="store_true",
        help="for a .dcm output from a source whose Study/Series Instance UIDs were blanked (some anonymisers do): "
        "give the output new ones instead of refusing",
    )


def check_dicom_inputs(outputs: Sequence[str | None], inputs: Sequence[str], fill_uids: bool = False) -> None:
    """Before any work: a .dcm output needs DICOM inputs to reference, with Study / Series UIDs (or ``fill_uids``).

    The full check runs again on the series read (:func:`MedXAILib.dicom.output.require_dicom_source`).
    """
    from ..dicom import is_dicom_path
    from ..dicom.output import is_dicom_output, refuse_missing_uids
    from ..dicom.series import missing_series_uids, split_series_spec

    wanted = [o for o in outputs if is_dicom_output(o)]
    if not wanted:
        return
    if not is_dicom_path(inputs[0]):
        raise InputError(
            f"{wanted[0]}: a DICOM output must reference its source images, but the input {inputs[0]} is not DICOM; "
            "write .nii.gz / .nrrd instead, or give the DICOM series"
        )
    if split_series_spec(inputs[0])[0].exists() and not fill_uids:
        refuse_missing_uids(missing_series_uids(inputs[0]), wanted[0])


def print_notes(notes: Sequence[str]) -> None:
    """Tell the person running the command what was done on their behalf (stderr, one line each)."""
    import sys

    for note in notes:
        print(f"note: {note}", file=sys.stderr)
