"""``python -m MedXAILib shortcut``: a reliance benchmark with planted truth.

Trains a clean and a confounded model alike (``DIR/train-clean``, ``DIR/train-confounded``, resumable like
``train``), proves by intervention on held-out cases how far the confounded one relies on the artifact, explains
both with every method and scores each method on whether its maps show that reliance. Writes ``DIR/shortcut.json``,
``DIR/shortcut.csv``, ``DIR/interventions.csv``, ``DIR/masks/``, ``DIR/figures/`` and ``DIR/report.html``
(see :mod:`MedXAILib.shortcut.runner`). The planted-artifact options are shared with ``train`` and ``tradeoff``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..cli import add_progress_argument
from ..errors import InputError
from ..output_names import WILDCARD
from ..outputs import OutputSpec

RESULT_FILES = ("shortcut.json", "shortcut.csv", "interventions.csv", "report.html")


def trained_model_files(folder: Path, names: list[str]) -> list[Path]:
    """The files of the ``DIR/<name>`` model folders (``train``'s own layout; a name may hold the wildcard)."""
    from ..training.crossval import output_files

    return [f for name in names for f in output_files(folder / name)]


def _folder_files(folder: Path, args: argparse.Namespace) -> list[Path]:
    """The files of ``--output DIR``: the trained models, the results, a mask per case and the figures."""
    each = [folder / "masks" / WILDCARD, folder / "figures" / WILDCARD]
    from ..shortcut.runner import model_folder

    models = [model_folder(folder, role).name for role in ("clean", "confounded")]  # exactly these two
    return [*trained_model_files(folder, models), *(folder / n for n in RESULT_FILES), *each]


HELP = "does an explanation show what the model relies on? a planted-artifact benchmark with two trained models"
DESCRIPTION = (
    "Plant an artifact (tag, patch, intensity) confounded with a finding, train a clean and a confounded model "
    "with the same folds and seeds, measure the confounded model's reliance by intervention (AUC or Dice on clean "
    "and swapped held-out images), and score each explanation method: artifact relevance mass, top-k IoU, "
    "detection AUC and rank correlation with the measured effect. Rerunning resumes the trained folds."
)

#: The output folder is checked before any work; trained folds persist one by one so that a killed run resumes,
#: and the result files are written as one set at the end.
OUTPUTS = {"output": OutputSpec(folder=True, derived=_folder_files)}
RESUMABLE = True
DEFAULT_METHODS = "gradcam,ig,random"


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return value


def add_artifact_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """The planted-artifact options (``shortcut``, ``tradeoff``, ``train``)."""
    g = parser.add_argument_group("planted artifact")
    g.add_argument("--finding", default=None,
                   help="the finding the artifact is confounded with (classification: one of the dataset's findings; "
                        "segmentation: a label or region name, default the whole foreground)")
    g.add_argument("--artifact", required=required, choices=("tag", "patch", "intensity"), default=None,
                   help="tag: a bright letter near an upper corner (a laterality marker); patch: a square of fixed "
                        "intensity; intensity: a smooth hyperintense blob (MRI)")
    g.add_argument("--strength", type=_unit_interval, default=0.9,
                   help="probability that the artifact accompanies a positive case in training (a negative: 1 − "
                        "strength); 0.5 = no confounding (default 0.9)")
    g.add_argument("--artifact-size", type=float, default=None, metavar="MM",
                   help="letter height, square side or blob FWHM in mm (default: 12%% / 10%% / 12%% of the smallest "
                        "in-plane field of view)")
    g.add_argument("--artifact-contrast", type=float, default=2.0, metavar="SD",
                   help="intensity blob peak in standard deviations of the foreground (default 2)")
    g.add_argument("--artifact-seed", type=int, default=None,
                   help="seeds the artifacts' positions, sizes and presence (default: --seed)")


def artifact_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The artifact spec dict of the command line (None without ``--artifact``), checked."""
    from ..shortcut import ArtifactSpec

    if not getattr(args, "artifact", None):
        for flag in ("artifact_size",):
            if getattr(args, flag, None) is not None:
                raise InputError(f"--{flag.replace('_', '-')} needs --artifact")
        return None
    seed = args.artifact_seed if getattr(args, "artifact_seed", None) is not None else args.seed
    spec = ArtifactSpec(args.artifact, float(args.strength), int(seed), args.artifact_size,
                        float(args.artifact_contrast))
    spec.check()
    return spec.as_dict()


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` options every model of a shortcut or trade-off run shares."""
    from ..training import PRESETS
    from .common import number_list

    g = parser.add_argument_group("training (as `train`; every model gets the same)")
    g.add_argument("--folds", type=int, default=5, help="patient-level folds (default 5)")
    g.add_argument("--seed", type=int, default=0, help="seeds folds, weights, sampling and the artifacts")
    g.add_argument("--architecture", default=None, metavar="PRESET|JSON",
                   help=f"a preset ({', '.join(PRESETS)}) or a MONAI network as JSON (default unet / resnet)")
    g.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    g.add_argument("--steps-per-epoch", type=int, default=25, help="optimiser steps per epoch (default 25)")
    g.add_argument("--batch-size", type=int, default=2, help="samples per step (default 2)")
    g.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 0.002)")
    g.add_argument("--input-size", type=number_list(int, "--input-size"), default=None, metavar="J,I",
                   help="classifier input size in pixels (default 256,256)")
    g.add_argument("--spacing", type=number_list(float, "--spacing"), default=None, metavar="K,J,I",
                   help="model grid spacing in mm (segmentation; default 2,2,2 in 3D)")
    g.add_argument("--patch", type=number_list(int, "--patch"), default=None, metavar="K,J,I",
                   help="segmentation training patch in voxels (default 32,64,64; 2D 128,128)")
    g.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    g.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, metavar="KIND:PATH",
                        help="e.g. phantom-chest:60, chestxray14:/data/nih, deepmedic:/data/brats2015")
    parser.add_argument("--task", required=True, choices=("classification", "segmentation"))
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated explanation methods (default {DEFAULT_METHODS}; random is a control)")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder (reruns resume)")
    parser.add_argument("--explain-cases", type=int, default=0, metavar="N",
                        help="explain N held-out cases (a seeded draw, half positive), 0 = every one (default)")
    parser.add_argument("--param", action="append", default=[], metavar="METHOD:KEY=VALUE",
                        help="a method parameter, e.g. ig:n_steps=16; repeatable")
    add_artifact_arguments(parser, required=True)
    add_training_arguments(parser)
    add_progress_argument(parser)


def method_list(text: str) -> list[str]:
    methods = [m.strip() for m in str(text).split(",") if m.strip()]
    if not methods:
        raise InputError("--methods needs at least one method")
    return methods


def method_params(items: list[str]) -> dict[str, dict[str, str]]:
    from .benchmark import _params

    return _params(items)


def settings_from_args(args: argparse.Namespace, cls: Any, **extra: Any) -> Any:
    """The settings dataclass ``cls`` (shortcut or trade-off) from the shared options."""
    artifact = artifact_from_args(args)
    if args.threads < 1:
        raise InputError(f"--threads must be at least 1; got {args.threads}")
    return cls(
        dataset=args.dataset, task=args.task, finding=args.finding, artifact=artifact,
        methods=method_list(args.methods), output=str(args.output), folds=args.folds, seed=args.seed,
        architecture=args.architecture, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size, lr=args.lr, input_size=args.input_size, spacing=args.spacing, patch=args.patch,
        threads=args.threads, device=args.device, params=method_params(args.param), **extra,
    )


def run(args: argparse.Namespace) -> int:
    from ..progress import Progress
    from ..shortcut.runner import ShortcutSettings, run_shortcut

    settings = settings_from_args(args, ShortcutSettings, explain_cases=args.explain_cases)
    result = run_shortcut(settings, Progress(args.progress))
    if args.progress == "json":
        print(json.dumps({"result": {k: result[k] for k in ("reliance", "methods", "outputs", "timing")}}))
        return 0
    from ..shortcut.report import methods_rows, reliance_rows

    for header, rows in (reliance_rows(result), methods_rows(result)):
        print(_text_table(header, rows))
        print()
    print(f"wrote {result['outputs']['report']} ({result['timing']['total_s']:.0f} s)")
    return 0


def _text_table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[f"{v:.3f}" if isinstance(v, float) else ("–" if v is None else str(v)) for v in r]
                        for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells)
