"""``python -m MedXAILib bench``: MedXAI's explainers timed against captum, MONAI, pytorch-grad-cam and naive loops.

Modules: :mod:`~MedXAILib.bench.cases` (inputs), :mod:`~MedXAILib.bench.references` (the other implementations),
:mod:`~MedXAILib.bench.timing` (median of runs, peak RSS), :mod:`~MedXAILib.bench.config` (sizes and sample counts),
:mod:`~MedXAILib.bench.suite` (running it), :mod:`~MedXAILib.bench.report` (agreement, targets, tables).
"""

from .config import BenchConfig, full_config, quick_config
from .suite import run_bench

__all__ = ["BenchConfig", "full_config", "quick_config", "run_bench"]
