"""Metrics: how good a model's output is, and how good an explanation of it is.

- :mod:`.segmentation` — Dice, IoU, HD95 (mm) and volumes (mL) per label of a label map against a reference.
- :mod:`.classification` — accuracy, precision, recall, F1 and AUC-ROC per label and macro-averaged.
- :mod:`.localisation` — pointing game, relevance mass / rank accuracy, top-k% overlap, the ChestX-ray14 box protocol.
- :mod:`.complexity` — sparseness (Gini index) and entropy of a heat map.
- :mod:`.similarity` — SSIM (2D/3D) and Spearman correlation between maps, random-pair baselines.
- :mod:`.agreement` — agreement between methods on one case: pairwise matrices, rank-averaged consensus.

Every function takes numpy arrays in the core's spatial layout ``(K, J, I)`` (plus spacing in mm where distances
matter); undefined values are ``None`` with a documented reason, never NaN — except where a convention's anchor
defines a NaN (``hd95_mm(convention="brats")`` of two empty masks; results written as JSON carry ``null`` and a note).
"""

from .classification import auc_roc, classification_metrics
from .complexity import complexity_entropy, sparseness_gini
from .localisation import (
    box_accuracy,
    box_from_map,
    box_localisation,
    box_overlap,
    pointing_game,
    relevance_mass,
    relevance_rank,
    topk_overlap,
)
from .segmentation import dice, hd95_mm, iou, segmentation_metrics, volume_ml
from .similarity import random_pair_baseline, spearman, ssim

__all__ = [
    "auc_roc",
    "box_accuracy",
    "box_from_map",
    "box_localisation",
    "box_overlap",
    "classification_metrics",
    "complexity_entropy",
    "dice",
    "hd95_mm",
    "iou",
    "pointing_game",
    "random_pair_baseline",
    "relevance_mass",
    "relevance_rank",
    "segmentation_metrics",
    "sparseness_gini",
    "spearman",
    "ssim",
    "topk_overlap",
    "volume_ml",
]
