"""Explanation quality: how far can a heat map be trusted?

- :mod:`.faithfulness` — deletion / insertion curves and AUCs with a random-order control (Samek 2017, Petsiuk 2018);
- :mod:`.stability` — SSIM / Spearman under noise, ±5° rotations and intensity scaling, max-sensitivity (Yeh 2019);
- :mod:`.sanity` — cascading model-parameter randomisation (Adebayo 2018) with the random-pair baseline (Arun 2021);
- localisation and complexity come from :mod:`MedXAILib.metrics`.

:func:`evaluate_explanation` runs any of them on one explanation; :func:`model_based_metrics` is the hook that
``python -m MedXAILib evaluate --heatmap H --model M --input …`` calls. All work in 2D and 3D, in physical units.
"""

from .evaluation import (
    ALL_METRICS,
    DEFAULT_METRICS,
    DEFAULT_TOPK,
    MODEL_METRICS,
    complexity,
    evaluate_explanation,
    localisation,
    model_based_metrics,
    parse_metrics,
)
from .faithfulness import deletion_insertion
from .sanity import cascading_randomisation
from .stability import explain_map, stability

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "DEFAULT_TOPK",
    "MODEL_METRICS",
    "cascading_randomisation",
    "complexity",
    "deletion_insertion",
    "evaluate_explanation",
    "explain_map",
    "localisation",
    "model_based_metrics",
    "parse_metrics",
    "stability",
]
