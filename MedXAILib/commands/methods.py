"""``methods``: list every registered explanation method, what it supports and what it costs."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "list the explanation methods: what each supports, its cost model and parameters"
DESCRIPTION = (
    "List every explanation method that `explain --method` accepts: 2D/3D, classification/segmentation, the target "
    "kinds it can explain (class, region, voxel), whether it needs gradients, its cost model, its parameters with "
    "their defaults (set them with `explain --param KEY=VALUE`) and its reference."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object {\"methods\": [...]} instead")


def describe_methods() -> list[dict[str, Any]]:
    """One JSON-ready record per registered method, sorted by name."""
    from ..explain import available_methods

    out: list[dict[str, Any]] = []
    for name, cls in sorted(available_methods().items()):
        out.append(
            {
                "name": name,
                "title": cls.title,
                "dims": list(cls.dims),
                "tasks": list(cls.tasks),
                "target_kinds": list(cls.target_kinds),
                "needs_gradients": bool(cls.needs_gradients),
                "display": cls.display,
                "cost_model": cls.cost_model,
                "params": {k: _jsonable(v) for k, v in cls.params.items()},
                "reference": cls.reference,
                "module": cls.__module__.rsplit(".", 1)[-1],
            }
        )
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _fmt_param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def format_table(records: list[dict[str, Any]]) -> str:
    """A plain-text table (one row per method) followed by each method's parameters, cost model and reference."""
    short_task = {"classification": "cls", "segmentation": "seg"}
    header = ("name", "title", "dims", "tasks", "targets", "gradients")
    rows = [
        (
            r["name"],
            r["title"],
            "/".join(f"{d}D" for d in r["dims"]),
            "/".join(short_task.get(t, t) for t in r["tasks"]),
            "/".join(r["target_kinds"]),
            "yes" if r["needs_gradients"] else "no",
        )
        for r in records
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.append("")
    for r in records:
        params = " ".join(f"{k}={_fmt_param(v)}" for k, v in r["params"].items()) or "(none)"
        lines.append(f"{r['name']}:")
        lines.append(f"  cost:       {r['cost_model'] or 'not stated'}")
        lines.append(f"  parameters: {params}")
        lines.append(f"  reference:  {r['reference'] or 'not stated'}")
    lines.append("")
    lines.append("cls = classification, seg = segmentation; set a parameter with `explain --param KEY=VALUE`.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    records = describe_methods()
    if args.json:
        from ..conventions import conventions_table

        print(json.dumps({"methods": records, "conventions": conventions_table()}))
    else:
        print(format_table(records))
    return 0
