"""``models``: list the built-in, cached and known models, with their task, inputs, classes and model card."""

from __future__ import annotations

import argparse
import json

HELP = "list the models --model accepts: built-in, cached Model Zoo bundles and known ones (with their cards)"
DESCRIPTION = (
    "List the models that `--model` accepts without a path: the built-in demo models, MONAI Model Zoo bundles already "
    "in the cache, and known Model Zoo bundles (downloaded on first use with `--model monai:NAME`). Each shows its "
    "task, input channels, classes and model card (version, training data, intended use). With --json, prints "
    '{"models": [{"name", "source", "task", "spatial_dims", "channels", "classes", "card", "label_values", "load"}], '
    '"skipped": [{"name", "source", "reason"}]} (name is what --model takes; skipped: models that could not be read, '
    "each named with the reason, without hiding the others). Nothing is downloaded and no network is reached."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help='print one JSON object {"models": [...]} instead')


def run(args: argparse.Namespace) -> int:
    import sys

    from ..models.catalogue import catalogue

    models, skipped = catalogue()
    if args.json:
        print(json.dumps({"models": models, "skipped": skipped}, indent=2, default=str))
        return 0
    for s in skipped:
        print(f"warning: skipped {s['name']} [{s['source']}]: {s['reason']}", file=sys.stderr)
    for m in models:
        card = m.get("card") or {}
        print(f"{m['load']}  [{m['source']}]  {m['task'] or '?'}, {m['spatial_dims'] or '?'}D")
        print(f"    inputs: {', '.join(m['channels']) or '?'}; classes: {', '.join(m['classes']) or '?'}")
        print(f"    version {card.get('version', 'unknown')}; trained on: {card.get('training_data', 'unknown')}")
        print(f"    intended use: {card.get('intended_use', 'unknown')}")
    return 0
