"""``python -m MedXAILib tradeoff``: the accuracy–explainability trade-off of right-for-the-right-reasons training.

Trains one model per ``--weights`` value with ``train --explanation-loss rrr --explanation-mask …`` on the same
folds and seeds (``DIR/train-…-w{λ}``, resumable; λ = 0 is plain training and reuses a ``shortcut`` run's models in
the same folder), measures each fold model's accuracy on clean (and, with a planted artifact, swapped) held-out
data and each method's localisation, faithfulness and artifact mass, and writes ``DIR/tradeoff.csv``,
``DIR/tradeoff_maps.csv``, ``DIR/tradeoff.json`` and ``DIR/tradeoff.png`` (:mod:`MedXAILib.shortcut.tradeoff`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import add_progress_argument
from ..errors import InputError
from ..output_names import WILDCARD, name_with
from ..outputs import OutputSpec
from .shortcut import add_artifact_arguments, add_training_arguments, settings_from_args, trained_model_files

HELP = "the accuracy–explainability trade-off: one right-for-the-right-reasons model per weight"
DESCRIPTION = (
    "Train one model per explanation weight (right for the right reasons: the squared input gradient of the "
    "log-probabilities outside the allowed region, Ross et al. 2017) and measure accuracy (clean and with the "
    "planted artifact swapped) against each method's localisation, faithfulness and artifact mass, per fold."
)

RESULT_FILES = ("tradeoff.csv", "tradeoff_maps.csv", "tradeoff.json", "tradeoff.png")


def _folder_files(folder: Path, args: argparse.Namespace) -> list[Path]:
    """The files of ``--output DIR``: one trained-model folder per weight (``train-ROLE`` for λ = 0,
    ``train-ROLE-rrr-MASK-w<λ>`` for the others; ROLE ``confounded`` with a planted artifact, else ``clean``) and the
    results."""
    from ..shortcut.runner import model_folder

    role = "confounded" if getattr(args, "artifact", None) else "clean"
    plain = model_folder(folder, role).name
    penalised = name_with(model_folder(folder, role, 1.0, args.explanation_mask).name.removesuffix("1"), WILDCARD)
    return [*trained_model_files(folder, [plain, penalised]), *(folder / n for n in RESULT_FILES)]


OUTPUTS = {"output": OutputSpec(folder=True, derived=_folder_files)}
RESUMABLE = True
DEFAULT_WEIGHTS = "0,0.1,1,10,100"


def _weights(text: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"--weights must be comma-separated numbers; got {text!r}") from None
    if not values:
        raise InputError("--weights needs at least one weight")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, metavar="KIND:PATH")
    parser.add_argument("--task", required=True, choices=("classification", "segmentation"))
    parser.add_argument("--methods", default="gradcam,ig", help="comma-separated methods (default gradcam,ig)")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder (reruns resume)")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help=f"explanation weights λ (default {DEFAULT_WEIGHTS})")
    parser.add_argument("--explanation-mask", required=True, choices=("annotation", "artifact"),
                        help="allowed region: annotation (the finding's boxes or label map) or artifact (everywhere "
                             "but the planted artifact)")
    parser.add_argument("--explain-cases", type=int, default=0, metavar="N",
                        help="explain N held-out cases per weight (a seeded draw, half positive), 0 = all (default)")
    parser.add_argument("--faithfulness-steps", type=int, default=10, help="deletion/insertion steps (default 10)")
    parser.add_argument("--param", action="append", default=[], metavar="METHOD:KEY=VALUE",
                        help="a method parameter, e.g. ig:steps=16; repeatable")
    add_artifact_arguments(parser, required=False)
    add_training_arguments(parser)
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    from ..progress import Progress
    from ..shortcut.tradeoff import TradeoffSettings, run_tradeoff

    settings = settings_from_args(args, TradeoffSettings, weights=_weights(args.weights),
                                  explanation_mask=args.explanation_mask, explain_cases=args.explain_cases,
                                  faithfulness_steps=args.faithfulness_steps)
    result = run_tradeoff(settings, Progress(args.progress))
    if args.progress == "json":
        print(json.dumps({"result": {k: result[k] for k in ("summary", "recovery", "outputs", "timing")}}))
        return 0
    metric = result["metric"]
    for w, s in result["summary"].items():
        acc, sw = s.get(metric, {}), s.get(f"{metric}_swapped", {})
        text = f"λ={w}: {metric} {_ms(acc)}"
        if sw.get("mean") is not None:
            text += f", swapped {_ms(sw)}"
        print(text)
    rec = result.get("recovery")
    if rec and rec.get("recovered_fraction") is not None:
        print(f"λ={rec['to_weight']:g} recovers {100 * rec['recovered_fraction']:.0f}% of the swapped {metric} loss "
              f"of λ={rec['from_weight']:g} ({rec['swapped_loss']:.3f}); clean {metric} changes by "
              f"{rec['clean_change']:+.3f}")
    print(f"wrote {result['outputs']['csv']} and {result['outputs']['figure']} ({result['timing']['total_s']:.0f} s)")
    return 0


def _ms(d: dict) -> str:
    if d.get("mean") is None:
        return "–"
    return f"{d['mean']:.3f} ± {d['sd']:.3f}" if d.get("sd") is not None else f"{d['mean']:.3f}"
