"""What the Slicer logic does, without Qt: inputs to files, the CLI in the background, outputs to nodes.

A :class:`Workflow` is bound to one MRML scene. Each ``start_*`` method writes the input nodes into a fresh
temporary folder (through the bridge and :mod:`MedXAILib.io`), starts ``python -m MedXAILib <command> …
--progress json`` with a :class:`~.jobs.JobRunner`, and returns a :class:`~.workflow_base.Task` at once. The caller
drains the task from its own loop (:meth:`Task.process_events`, driven by a ``QTimer`` in the panel) or blocks with
:meth:`Task.wait`. When the command succeeds the task turns its outputs into nodes on the calling thread; whatever
the ending, the temporary folder is removed. Cancelling kills the process tree and removes any node the task made.

The class is split the way the panel is, one mixin per section:

- :class:`~.workflow_base.WorkflowBase`: the plumbing (work folders, inputs to files, targets, reading outputs);
- :class:`~.workflow_catalog.CatalogJobs` (*Model*): the model and method lists, describing a model file;
- :class:`~.workflow_predict.PredictJobs` (*Apply*, predict step): ``segment``, ``classify``;
- :class:`~.workflow_explain.ExplainJobs` (*Explain*): ``explain`` and its cost estimate, counterfactuals, shap plots;
- :class:`~.workflow_evaluate.EvaluateJobs` (*Evaluate*): segmentation metrics and explanation quality;
- *Compare methods* and the *case report* are functions over a workflow (:mod:`.compare_job`, :mod:`.report`).

Devices: ``cpu`` hides the GPUs from the child (``CUDA_VISIBLE_DEVICES=""``); ``cuda`` asks for one through
``MEDXAI_DEVICE``. When a GPU job fails because memory ran out, it is run again on the CPU once (logged).
"""

from __future__ import annotations

from .results import format_cost, quality_numbers  # noqa: F401 - re-exported for the panel and the console
from .workflow_base import (  # noqa: F401 - re-exported: the panel and tests use them from here
    DEMO_CHANNELS,
    DEMO_CLASS_NAMES,
    JobFailedError,
    Task,
    WorkflowBase,
    child_environment,
    match_channels,
    medxailib_root,
    sequence_of,
)
from .workflow_catalog import CatalogCache, CatalogJobs, models_from_task  # noqa: F401
from .workflow_evaluate import EvaluateJobs
from .workflow_explain import COUNTERFACTUAL_METHODS, SHAP_PLOT_METHODS, ExplainJobs, is_counterfactual  # noqa: F401
from .workflow_predict import PredictJobs


class Workflow(CatalogJobs, PredictJobs, ExplainJobs, EvaluateJobs, WorkflowBase):
    """Runs MedXAI commands on the nodes of one scene (see the module docstring and :class:`WorkflowBase`)."""
