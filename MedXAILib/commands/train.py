"""``train``: k-fold, patient-level training of your own U-Net or classifier; each fold loads back as a model.

Writes ``DIR/splits.json``, ``DIR/fold{k}/model.json`` + ``weights.pt`` (use with ``--model DIR/fold{k}``),
``DIR/folds.json`` (every fold's cases and metrics) and ``DIR/summary.csv`` (mean ± sd over folds), and prints the
summary table. A rerun skips the folds already trained with the same options. See :mod:`MedXAILib.training.crossval`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from ..cli import add_progress_argument
from ..errors import InputError
from ..outputs import OutputSpec
from .common import number_list

HELP = "train your own U-Net or classifier with patient-level k-fold cross-validation"
DESCRIPTION = (
    "Train a segmentation U-Net or an image classifier on a dataset with the same patient-level folds as "
    "`benchmark` (DIR/splits.json). Each fold is evaluated on its held-out patients and saved as DIR/fold{k} "
    "(model.json + weights.pt), loadable with --model DIR/fold{k}. Fold metrics go to DIR/folds.json and "
    "DIR/summary.csv. Rerunning the same command skips finished folds."
)


def _folder_files(folder: Path, args: argparse.Namespace) -> list[Path]:
    """The files of ``--output DIR``: an autoencoder's two files, or the folds (each ``fold<k>`` folder is replaced
    as a whole), the splits and the summaries."""
    if args.task == "autoencoder":
        from ..training.autoencoder import DESCRIPTION_FILE, WEIGHTS_FILE

        return [folder / DESCRIPTION_FILE, folder / WEIGHTS_FILE]
    from ..training.crossval import output_files

    return output_files(folder)


#: Every file train writes, checked before any work (see MedXAILib.outputs); folds persist one by one so that a
#: killed run resumes.
OUTPUTS = {"output": OutputSpec(folder=True, derived=_folder_files)}
RESUMABLE = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training import PRESETS

    parser.add_argument("--dataset", required=True, metavar="KIND:PATH",
                        help="e.g. brats2021:/data/BraTS2021, chestxray14:/data/nih, phantom:6, phantom-chest:40")
    parser.add_argument(
        "--task", required=True, choices=("segmentation", "classification", "autoencoder"),
        help="autoencoder: fit a small MONAI AutoEncoder on the cohort in --model's input representation, for the "
             "plausibility of counterfactuals (explain --method counterfactual --param autoencoder=DIR)",
    )
    parser.add_argument("--model", help="--task autoencoder: the model whose preprocessing and grid it learns")
    parser.add_argument("--folds", type=int, default=5, help="number of patient-level folds (default 5)")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder (created; reruns resume)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the folds, the initial weights and the sampling")
    parser.add_argument(
        "--architecture", default=None, metavar="PRESET|JSON",
        help=f"a preset ({', '.join(PRESETS)}) or a MONAI network as JSON "
             "'{\"name\": \"UNet\", \"kwargs\": {\"channels\": [8, 16, 32], \"strides\": [2, 2]}}' "
             "(channel counts and spatial_dims are filled in); default unet / resnet",
    )
    parser.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    parser.add_argument("--steps-per-epoch", type=int, default=25, help="optimiser steps per epoch (default 25)")
    parser.add_argument("--patch", type=number_list(int, "--patch"), default=None, metavar="K,J,I",
                        help="segmentation training patch in voxels of the model grid (default 32,64,64; 2D 128,128)")
    parser.add_argument("--spacing", type=number_list(float, "--spacing"), default=None, metavar="K,J,I",
                        help="model grid spacing in mm (default 2,2,2 for 3D segmentation)")
    parser.add_argument("--input-size", type=number_list(int, "--input-size"), default=None, metavar="J,I",
                        help="classifier input size in pixels (default 256,256)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW; default 0.002)")
    parser.add_argument("--batch-size", type=int, default=2, help="samples per step (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    parser.add_argument("--threads", "--worker-threads", dest="threads", type=int, default=None, metavar="N",
                        help="torch CPU threads per fold (default 2); the same N gives the same weights anywhere")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="train the folds in parallel on Dask, one fold per worker: local:N or a scheduler "
                             "address such as tcp://10.0.0.5:8786 (docs/cluster.md)")
    from .shortcut import add_artifact_arguments

    add_artifact_arguments(parser, required=False)
    g = parser.add_argument_group("explanation constraint (right for the right reasons, Ross et al. 2017)")
    g.add_argument("--explanation-loss", choices=("rrr",), default=None,
                   help="rrr: add λ · the squared input gradient of the log-probabilities outside the allowed region")
    g.add_argument("--explanation-weight", type=float, default=0.0, metavar="LAMBDA",
                   help="λ of the explanation loss (default 0: none)")
    g.add_argument("--explanation-mask", choices=("annotation", "artifact"), default=None,
                   help="allowed region: annotation (the finding's boxes or label map) or artifact (everywhere but "
                        "the planted artifact)")
    add_progress_argument(parser)


def config_from_args(args: argparse.Namespace):  # noqa: ANN201 - TrainConfig, imported lazily
    from ..training import TrainConfig
    from ..training.config import N_THREADS
    from .shortcut import artifact_from_args

    if args.folds < 2:
        raise InputError(f"--folds must be 2 or more; got {args.folds}")
    artifact = artifact_from_args(args) if hasattr(args, "artifact") else None
    return TrainConfig(
        dataset=args.dataset, task=args.task, output=args.output, folds=args.folds, seed=args.seed,
        architecture=args.architecture, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, patch=args.patch,
        spacing=args.spacing, input_size=args.input_size, lr=args.lr, batch_size=args.batch_size, device=args.device,
        threads=N_THREADS if getattr(args, "threads", None) is None else args.threads,
        finding=getattr(args, "finding", None), artifact=artifact,
        explanation_loss=getattr(args, "explanation_loss", None),
        explanation_weight=float(getattr(args, "explanation_weight", 0.0) or 0.0),
        explanation_mask=getattr(args, "explanation_mask", None),
    )


def run(args: argparse.Namespace) -> int:
    from ..models import resolve_device
    from ..progress import Progress
    from ..training import cross_validate, format_table

    if args.task == "autoencoder":
        return _run_autoencoder(args)
    if args.model:
        raise InputError("--model is for --task autoencoder; segmentation and classification train a new network")

    config = config_from_args(args)
    cluster = getattr(args, "cluster", None)
    if cluster:
        from ..cluster import parse_address

        parse_address(cluster)  # a malformed address is refused before the dataset is read
    else:
        resolve_device(config.device)  # refuse an unavailable device before any work (a cluster's GPUs are remote)
    progress = Progress(getattr(args, "progress", "bar"))
    result = cross_validate(config, progress, cluster=cluster)
    kept = sum(1 for f in result.folds if f.get("skipped"))
    if args.progress == "json":
        print(json.dumps({"result": {"output": str(result.output), "task": result.task, "summary": result.summary,
                                     "folds_kept": kept}}))
        return 0
    print(format_table(result))
    for note in result.notes:
        print(f"note: {note}")
    trained = len(result.folds) - kept
    print(
        f"{len(result.folds)} folds in {result.output} ({trained} trained, {kept} kept from an earlier run); "
        f"per-fold metrics: {result.output / 'folds.json'}, summary: {result.output / 'summary.csv'}; "
        f"use a fold with --model {result.output / 'fold0'}"
    )
    return 0


def _run_autoencoder(args: argparse.Namespace) -> int:
    from ..models import resolve_device
    from ..progress import Progress
    from ..training.autoencoder import train_autoencoder

    if not args.model:
        raise InputError("--task autoencoder needs --model (the model whose input representation it learns)")
    if args.cluster:
        raise InputError("--cluster trains the folds of segmentation and classification; an autoencoder trains in "
                         "this process (leave --cluster out)")
    resolve_device(args.device)
    progress = Progress(getattr(args, "progress", "bar"))
    desc = train_autoencoder(
        args.dataset, args.model, args.output, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, lr=args.lr,
        batch_size=args.batch_size, seed=args.seed, device=args.device, progress=progress,
    )
    if args.progress == "json":
        print(json.dumps({"result": {"output": args.output, "training": desc["training"]}}))
    else:
        t = desc["training"]
        print(f"autoencoder for {desc['for_model']} in {args.output}: train mse {t['final_train_mse']:.4f}, "
              f"held-out mse {t['held_out_mse']:.4f} ({t['n_train']} train / {t['n_held_out']} held-out cases); "
              f"use it with --param autoencoder={args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``train`` alone (same as ``python -m MedXAILib train``)."""
    from ..cli import main as cli_main

    return cli_main(["train", *(argv or [])])
