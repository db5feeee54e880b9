"""Arguments and helpers shared by the model commands (segment, classify, explain, demo)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from ..cli import add_progress_argument
from ..errors import InputError
from ..models import Model, builtin_model_names, load_model
from ..progress import Progress


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
            help="input image; repeat once per channel in the model's channel order, or give one 4D file",
        )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    parser.add_argument(
        "--allow-unsafe-pickle", action="store_true",
        help="allow checkpoints that need arbitrary unpickling (this can run code stored in the file)",
    )
    parser.add_argument(
        "--trust-bundle-code", action="store_true",
        help="let a MONAI bundle run its own code: $ expressions and _target_s outside MedXAI's allow-list of "
        "MONAI networks, transforms and inferers (only for bundles whose author you trust)",
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
                      trust_bundle_code=getattr(args, "trust_bundle_code", False), options=model_options(args))


def progress_from(args: argparse.Namespace) -> Progress:
    return Progress(getattr(args, "progress", "bar"))


def check_output_path(path: str, suffixes: Sequence[str]) -> Path:
    p = Path(path)
    name = p.name.lower()
    if not any(name.endswith(s) for s in suffixes):
        raise InputError(f"{p}: the output must end with one of {', '.join(suffixes)}")
    return p


VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
