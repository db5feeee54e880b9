"""Arguments and helpers shared by the model commands (segment, classify, explain, demo)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from ..cli import add_progress_argument
from ..errors import InputError
from ..models import Model, builtin_model_names, load_model
from ..progress import Progress


def number_list(kind: type, what: str):  # noqa: ANN202 - argparse type factory
    """An argparse ``type`` for comma- (or ``x``-) separated numbers of ``kind`` (``"2,2,1"``, ``"96x96"``)."""
    def parse(text: str) -> list:
        parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
        try:
            values = [kind(p.strip()) for p in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected comma-separated numbers, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{what}: expected comma-separated numbers, got {text!r}")
        return values

    return parse


def add_model_arguments(parser: argparse.ArgumentParser, inputs: bool = True) -> None:
    parser.add_argument(
        "--model", required=True,
        help=f"a built-in model ({', '.join(builtin_model_names()) or 'none installed'}), a model file or folder "
        "(a MONAI bundle folder is run through MONAI), or monai:NAME (a Model Zoo bundle, downloaded once); "
        "`python -m MedXAILib models` lists them",
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
    parser.add_argument(
        "--trust-model-code", "--trust-bundle-code", dest="trust_model_code", action="store_true",
        help="let a model file run code: a MONAI bundle's $ expressions, classes and arguments outside MedXAI's "
        "typed schema, and an nnU-Net plan's own class names (only for models whose author you trust; see "
        "docs/security.md). --trust-bundle-code is the same flag",
    )
    nn = parser.add_argument_group("nnU-Net and TotalSegmentator models")
    nn.add_argument("--folds", help="folds to ensemble, e.g. 0,1,2 or all (default: every fold present)")
    nn.add_argument("--checkpoint", choices=["final", "best"], help="checkpoint_final.pth (default) or _best.pth")
    nn.add_argument("--fast", action="store_true", help="TotalSegmentator: the low-resolution (--fast) model")
    add_progress_argument(parser)


def _pop_model_params(args: argparse.Namespace) -> dict[str, Any]:
    """Model options given as ``--param KEY=VALUE`` (``tta=true|false``), removed from the method parameters."""
    out: dict[str, Any] = {}
    keep = []
    for item in getattr(args, "param", None) or []:
        key, _, value = item.partition("=")
        if key.strip() == "tta":
            v = value.strip().lower()
            if v not in ("true", "false", "1", "0", "on", "off"):
                raise InputError(f"--param tta={value!r}: write tta=true or tta=false")
            out["tta"] = v in ("true", "1", "on")
        else:
            keep.append(item)
    if getattr(args, "param", None) is not None:
        args.param = keep
    return out


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """Format options for :func:`load_model` from the command line (nnU-Net folds, checkpoint, TTA, …)."""
    from ..models.nnunet_folder import parse_folds

    opts: dict[str, Any] = {
        "folds": parse_folds(getattr(args, "folds", None)),
        "checkpoint": getattr(args, "checkpoint", None),
        "fast": True if getattr(args, "fast", False) else None,
        "target": getattr(args, "target", None),
    }
    opts.update(_pop_model_params(args))
    return opts


def open_model(args: argparse.Namespace) -> Model:
    return load_model(args.model, device=args.device, allow_unsafe_pickle=args.allow_unsafe_pickle,
                      trust_model_code=getattr(args, "trust_model_code", False), options=model_options(args))


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
