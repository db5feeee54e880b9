"""``python -m MedXAILib speed`` (formerly ``bench``): how fast each explainer is — MedXAI's explainers timed
against captum, MONAI, pytorch-grad-cam and naive loops on the same model and input.

Modules: :mod:`~MedXAILib.speed.cases` (inputs), :mod:`~MedXAILib.speed.references` (the other implementations),
:mod:`~MedXAILib.speed.timing` (median of runs, peak RSS), :mod:`~MedXAILib.speed.config` (sizes and sample counts),
:mod:`~MedXAILib.speed.suite` (running it), :mod:`~MedXAILib.speed.report` (agreement, targets, tables).
"""

from .config import BenchConfig, full_config, quick_config
from .suite import run_bench

__all__ = ["BenchConfig", "full_config", "quick_config", "run_bench"]
