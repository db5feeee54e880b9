"""Gather everything a one-page case report shows into a :class:`CaseReport` (no drawing here).

Numbers: per-class predicted volumes (mL) and, with a reference label map, Dice, IoU and HD95 (mm) per class
(:func:`MedXAILib.metrics.segmentation.segmentation_metrics`); the top classes with their probabilities
(classification); the method with its parameters and cost, its cascading-randomisation sanity verdict and stability
(:func:`MedXAILib.quality.evaluate_explanation`), localisation against the reference when there is one; the model
card; the time and the software versions.
"""

from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..volume import Volume
from .card import model_card

DEFAULT_QUALITY = ("sanity", "stability")


@dataclass
class CaseReport:
    """What a case report shows.

    Attributes:
        case: the case's name. task: ``segmentation`` or ``classification``.
        image: the input Volume ``(C, K, J, I)``; ``display_channel`` is the channel drawn.
        heatmap: the explanation ``(1, K, J, I)``. labels: the predicted label map ``(1, K, J, I)`` (segmentation).
        reference: the reference label map, or None. class_values: class name → label value (segmentation).
        probabilities: class name → probability (classification), highest first.
        rows: sections of ``(label, value)`` text rows, in page order (``Prediction``, ``Method`` …).
        card: :func:`model_card`. explained: what the map explains, in words.
        boxes: reference boxes of a 2D image, finding → ``(x, y, w, h)`` in pixels (x = column I, y = row J).
    """

    case: str
    task: str
    image: Volume
    heatmap: Volume
    display_channel: int
    explained: str
    card: dict[str, Any]
    labels: Volume | None = None
    reference: Volume | None = None
    class_values: dict[str, int] = field(default_factory=dict)
    probabilities: dict[str, float] = field(default_factory=dict)
    predicted: list[str] = field(default_factory=list)
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    software: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready content (no arrays)."""
        return {"case": self.case, "task": self.task, "explained": self.explained, "card": self.card,
                "probabilities": self.probabilities, "predicted": self.predicted, "sections": self.sections,
                "created": self.created, "software": self.software}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}g}" if abs(float(value)) < 1e4 else f"{float(value):.0f}"
    return str(value)


def software_versions() -> dict[str, str]:
    """MedXAI and the libraries whose code made the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"MedXAI": __version__, "python": platform.python_version()}
    for pkg in ("torch", "monai", "numpy", "SimpleITK", "captum", "highdicom"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def _segmentation_rows(prediction: Any, reference: Volume | None, desc: Any) -> list[tuple[str, str]]:
    from ..dicom.terminology import is_background
    from ..metrics.segmentation import segmentation_metrics

    labels = prediction.labels
    vox = labels.voxel_volume_ml
    values = {name: desc.label_value(i) for i, name in enumerate(desc.class_names) if not is_background(name)}
    scores: dict[str, Any] = {}
    if reference is not None:
        present = [v for v in values.values() if (labels.array == v).any() or (reference.array == v).any()]
        if present:
            scores = segmentation_metrics(labels, reference, labels=present)
    rows = []
    for name, value in values.items():
        text = f"{float((labels.array == value).sum()) * vox:.1f} mL"
        s = scores.get(str(value))
        if reference is not None:
            if s is None:
                text += "  (absent in prediction and reference)"
            else:
                text += (f"   Dice {_fmt(s['dice'])}   HD95 {_fmt(s['hd95_mm'])} mm   "
                         f"reference {s['volume_ml_reference']:.1f} mL")
        rows.append((name, text))
    return rows


def build_case_report(
    model: Any,
    volume: Volume,
    prediction: Any,
    explanation: Any,
    reference: Volume | None = None,
    case: str = "case",
    quality: Sequence[str] | None = DEFAULT_QUALITY,
    quality_values: dict[str, Any] | None = None,
    boxes: dict[str, tuple[float, float, float, float]] | None = None,
) -> CaseReport:
    """Assemble a case report.

    Args:
        model, volume, prediction, explanation: the model, its input ``(C, K, J, I)``, ``model.predict(volume)`` and
            an :class:`~MedXAILib.explain.Explanation` of it.
        reference: a label map on the input grid (segmentation), for Dice / HD95 and localisation.
        quality: quality families to compute now (``sanity``, ``stability``, ``faithfulness``…); None or empty: none.
        quality_values: already computed quality numbers (e.g. a benchmark's row); used as they are.
        boxes: reference boxes (2D images), drawn on the image and the explanation.
    """
    from ..quality import evaluate_explanation

    desc = model.description
    q: dict[str, Any] = dict(quality_values or {})
    families = [f for f in (quality or []) if f]
    if reference is not None and model.task == "segmentation" and "localisation" not in families:
        families.append("localisation")
    if families:
        q.update(evaluate_explanation(model, volume, explanation, reference, families))
    sections: dict[str, list[tuple[str, str]]] = {}
    report = CaseReport(
        case=case, task=model.task, image=volume, heatmap=explanation.heatmap,
        display_channel=volume.n_channels - 1, explained=_explained(explanation), card=model_card(model),
        reference=reference, sections=sections, quality=q, boxes=dict(boxes or {}),
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        software=software_versions(),
    )
    if model.task == "segmentation":
        report.labels = prediction.labels
        report.class_values = {n: desc.label_value(i) for i, n in enumerate(desc.class_names)}
        sections["Prediction"] = _segmentation_rows(prediction, reference, desc)
    else:
        probs = {n: float(p) for n, p in zip(desc.class_names, prediction.class_probabilities)}
        report.probabilities = dict(sorted(probs.items(), key=lambda kv: -kv[1]))
        report.predicted = [desc.class_names[i] for i in prediction.predicted]
        sections["Prediction"] = [
            (name, f"{p:.3f}{'  predicted' if name in report.predicted else ''}")
            for name, p in list(report.probabilities.items())[:5]
        ]
    sections["Explanation"] = _method_rows(explanation, q)
    sections["Model"] = [
        ("name / version", f"{report.card['name']}  ({report.card['version']})"),
        ("task", report.card["task"]),
        ("inputs", ", ".join(report.card["inputs"])),
        ("training data", report.card["training_data"]),
        ("intended use", report.card["intended_use"]),
        ("", report.card["statement"]),
    ]
    sections["Provenance"] = [
        ("created", report.created),
        ("software", ", ".join(f"{k} {v}" for k, v in report.software.items())),
        ("input", _input_text(volume)),
    ]
    return report


def _explained(explanation: Any) -> str:
    t = explanation.target.describe()
    what = {"class": "the score of", "region": "the summed logits of", "voxel": "one voxel of"}.get(t["kind"], "")
    return f"{explanation.method}: {what} {t.get('class_name')}".replace("  ", " ")


def _method_rows(explanation: Any, q: dict[str, Any]) -> list[tuple[str, str]]:
    cost = explanation.cost.as_dict() if hasattr(explanation.cost, "as_dict") else {}
    params = ", ".join(f"{k}={v}" for k, v in (explanation.params or {}).items()
                       if v not in (None, "") and not isinstance(v, (list, dict)))
    rows = [("method", f"{explanation.method}" + (f"  ({params})" if params else "")),
            ("explains", _explained(explanation)),
            ("cost", f"{_fmt(cost.get('seconds'))} s" + (
                f", {cost['forward_passes']} forward / {cost.get('backward_passes', 0)} backward passes"
                if cost.get("forward_passes") else ""))]
    if "sanity_passed" in q:
        verdict = "PASSED" if q["sanity_passed"] else "FAILED"
        rows.append(("sanity check", f"{verdict}: SSIM to the randomised model's map {_fmt(q['sanity_ssim'])} vs "
                                     f"baseline {_fmt(q['sanity_baseline_ssim'])} (pass if lower)"))
    else:
        rows.append(("sanity check", "not run"))
    if "stability_ssim" in q:
        rows.append(("stability", f"SSIM {_fmt(q['stability_ssim'])} (noise {_fmt(q.get('stability_ssim_noise'))}, "
                                  f"rotation {_fmt(q.get('stability_ssim_rotation'))}, scaling "
                                  f"{_fmt(q.get('stability_ssim_scaling'))}), max-sensitivity "
                                  f"{_fmt(q.get('max_sensitivity'))}"))
    else:
        rows.append(("stability", "not run"))
    if "deletion_auc" in q:
        rows.append(("faithfulness", f"deletion AUC {_fmt(q['deletion_auc'])}, insertion AUC "
                                     f"{_fmt(q.get('insertion_auc'))}"))
    if "pointing_game" in q:
        rows.append(("localisation", f"pointing game {_fmt(q['pointing_game'])}, relevance mass in the reference "
                                     f"{_fmt(q.get('relevance_mass'))}"))
    return rows


def _input_text(volume: Volume) -> str:
    size = " x ".join(str(s) for s in volume.shape[::-1])
    spacing = " x ".join(f"{s:.3g}" for s in volume.spacing)
    text = f"{volume.n_channels} channel(s) {', '.join(volume.channel_names)}; {size} voxels at {spacing} mm"
    if volume.dicom is not None:
        text += f"; DICOM {volume.dicom.modality} series {volume.dicom.series_instance_uid or '(no UID)'}"
    return text
