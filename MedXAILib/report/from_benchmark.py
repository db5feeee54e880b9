"""A case report for one case of a finished benchmark run, from what the run stored.

The stored heat map (``maps/<case>__<method>.npz``) and quality numbers (``units/<case>__<method>.json``) are shown as
the run computed them; only the prediction is recomputed (the model's function is deterministic) and localisation
against the reference. The dataset and model are those named in the run's ``benchmark.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..explain.base import Cost
from ..volume import Volume
from .case import CaseReport, build_case_report


@dataclass
class _StoredTarget:
    described: dict[str, Any]

    @property
    def class_name(self) -> str:
        return str(self.described.get("class_name"))

    def describe(self) -> dict[str, Any]:
        return dict(self.described)


@dataclass
class StoredExplanation:
    """The parts of an :class:`~MedXAILib.explain.Explanation` a report shows, read back from a benchmark run."""

    heatmap: Volume
    method: str
    target: _StoredTarget
    cost: Cost
    params: dict[str, Any] = field(default_factory=dict)


def benchmark_case_report(run: str | Path, case_id: str, method: str | None = None,
                          device: str = "cpu") -> tuple[CaseReport, Any]:
    """The report of ``case_id`` in the benchmark run folder ``run`` (``method``: default the first one stored).

    Returns the report and the loaded model. Raises :class:`InputError` when the run, the case or the method is not
    there (the message lists what is).
    """
    from ..benchmark import UnitStore
    from ..datasets import open_dataset
    from ..models import load_model

    folder = Path(run)
    try:
        settings = json.loads((folder / "benchmark.json").read_text())
    except (OSError, ValueError):
        raise InputError(f"{folder}: not a benchmark run folder (no readable benchmark.json)") from None
    store = UnitStore(folder)
    methods = [m for m in settings.get("methods", []) if method is None or m == method]
    records = {m: store.read(case_id, m) for m in methods}
    ok = [m for m in methods if (records[m] or {}).get("status") == "ok" and m != "random"] or \
         [m for m in methods if (records[m] or {}).get("status") == "ok"]
    if not ok:
        cases = sorted({r.get("case_id") for r in store.records()})
        raise InputError(
            f"{folder}: no finished unit for case {case_id!r}"
            + (f" and method {method!r}" if method else "")
            + f"; the run holds cases {', '.join(map(str, cases[:10]))}{' …' if len(cases) > 10 else ''} "
            f"and methods {', '.join(settings.get('methods', []))}"
        )
    chosen = ok[0]
    record = records[chosen]
    assert record is not None
    heat = store.read_map(case_id, chosen)
    if heat is None:
        raise InputError(f"{folder}: the heat map of {case_id} / {chosen} is missing from maps/")
    dataset = open_dataset(settings["dataset"])
    model = load_model(settings["model"], device=device)
    case = dataset[case_id]
    image, truth = case.load()
    boxes = case.boxes_for(image.shape[1:]) if getattr(case, "boxes", None) else {}
    heatmap = image.with_array(heat[None], channel_names=[])
    explanation = StoredExplanation(
        heatmap=heatmap, method=chosen, target=_StoredTarget(record.get("target") or {}),
        cost=Cost(seconds=float(record.get("seconds_explain") or 0.0), forward_passes=0, backward_passes=0),
        params=dict(settings.get("params", {}).get(chosen, {})),
    )
    reference = truth if isinstance(truth, Volume) else None
    prediction = model.predict(image)
    report = build_case_report(model, image, prediction, explanation, reference, case=case_id, quality=[],
                               quality_values=record, boxes=boxes)
    report.sections["Provenance"].append(("benchmark", f"{folder} (fold {record.get('fold')}, method {chosen}; "
                                                      "map and quality numbers as stored by the run)"))
    return report, model
