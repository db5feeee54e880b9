"""What the panel offers, read from the core in the background: the models, the methods, a model file's description.

Each ``start_*`` returns a :class:`~.workflow_base.Task` at once (outputs ``{"value": …}``); the blocking variants
wait for it. :class:`CatalogCache` keeps what was read for the whole Slicer session, so the module opens at once
with the last lists (the built-in models until the first listing ends) and reads them again only when asked.
Qt-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from MedXAILib.errors import CancelledError, InputError

from . import catalog
from .jobs import JobResult
from .workflow_base import JobFailedError, Task

#: Seconds a listing may take before it is cancelled (the first one imports torch and MONAI in the child).
LISTING_TIMEOUT_S = 300.0


class CatalogJobs:
    """Mixin of :class:`~.workflow.Workflow`: ``models --json``, ``methods --json`` and describing a model path."""

    def start_query(self, command: str, args: list[str], parse: Callable[[str], Any],
                    prefix: list[str] | None = None) -> Task:
        """Start a short listing command; its task's outputs hold ``"value"``, the parsed stdout."""
        def finish(task: Task, result: JobResult) -> dict[str, Any]:
            try:
                return {"value": parse("\n".join(result.stdout))}
            except ValueError as exc:
                raise InputError(str(exc)) from None

        return self._task(command, args, self._workdir(), finish, None, prefix=prefix)

    def start_list_models(self) -> Task:
        """``models --json`` in the background; read its end with :func:`models_from_task`."""
        return self.start_query("models", ["models", "--json"], catalog.parse_models_json)

    def start_list_methods(self) -> Task:
        """``methods --json`` in the background; outputs ``"value"``: ``{method: record}``."""
        return self.start_query("methods", ["methods", "--json"], catalog.parse_methods_json)

    def start_describe(self, path: str) -> Task:
        """Describe a model file or folder with the core's own loader, in the background (``"value"``: an entry)."""
        return self.start_query("describe", ["-c", catalog.DESCRIBE_SCRIPT, str(path)], catalog.parse_describe_json,
                                prefix=self.python)

    # -- blocking variants (the Python console, tests) -----------------------------------------------------------
    def list_models(self, idle: Callable[[], None] | None = None, timeout: float = LISTING_TIMEOUT_S
                    ) -> tuple[list[catalog.ModelEntry], str | None]:
        """The models ``models --json`` lists, and a note when only the built-in ones could be listed."""
        task = self.start_list_models()
        try:
            task.wait(timeout=timeout, idle=idle)
        except (JobFailedError, InputError, CancelledError):
            pass
        return models_from_task(task)

    def describe_model(self, path: str, idle: Callable[[], None] | None = None, timeout: float = LISTING_TIMEOUT_S
                       ) -> catalog.ModelEntry:
        """Describe a model file or folder (task, channels, classes).

        Raises:
            JobFailedError: the core could not load it (the message is its one-line error).
        """
        return self.start_describe(path).wait(timeout=timeout, idle=idle)["value"]

    def list_methods(self, idle: Callable[[], None] | None = None, timeout: float = LISTING_TIMEOUT_S
                     ) -> dict[str, dict[str, Any]]:
        """``{method: record}`` from ``methods --json`` (parameters, defaults, dims, tasks).

        Raises:
            JobFailedError: the command failed.
        """
        return self.start_list_methods().wait(timeout=timeout, idle=idle)["value"]


def models_from_task(task: Task) -> tuple[list[catalog.ModelEntry], str | None]:
    """``(entries, note)`` from a finished ``models --json`` task.

    A failed, cancelled or older core (no ``models`` command) gives the built-in models, read from their description
    files, and a note that says why.
    """
    if task.status == "done":
        return task.outputs["value"], None
    stderr = task.result.stderr if task.result is not None else []
    if catalog.is_missing_command(stderr, "models"):
        note = "this MedXAILib has no `models` command: only the built-in models are listed"
    else:
        why = task.error or task.status
        note = f"the model list could not be read ({why}): only the built-in models are listed"
    return catalog.builtin_entries(), note


@dataclass
class CatalogCache:
    """The models and methods the core offers, read once per Slicer session in the background.

    Attributes:
        models: ``{name: entry}``; None until a listing ended (the built-in models are offered meanwhile).
        note: why only the built-in models are listed (None when the core listed them).
        methods: ``{method: record}`` from ``methods --json``; None until read, empty when it could not be.
        described: ``{path: entry}`` for model files and folders described so far.
        tasks: the running listing tasks (empty when none runs).
    """

    models: dict[str, catalog.ModelEntry] | None = None
    note: str | None = None
    methods: dict[str, dict[str, Any]] | None = None
    described: dict[str, catalog.ModelEntry] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        return self.models is not None and self.methods is not None

    @property
    def running(self) -> bool:
        return bool(self.tasks)

    def refresh(self, flow: Any) -> None:
        """Start reading both lists again in the background (nothing happens while a refresh runs)."""
        if self.running:
            return
        self.tasks = {"models": flow.start_list_models(), "methods": flow.start_list_methods()}

    def poll(self) -> bool:
        """Drain the running listings; True when the last one has just ended (the lists are then up to date)."""
        if not self.tasks:
            return False
        for task in self.tasks.values():
            task.process_events()
        if not all(task.finished for task in self.tasks.values()):
            return False
        models_task, methods_task = self.tasks["models"], self.tasks["methods"]
        entries, self.note = models_from_task(models_task)
        self.models = {e.name: e for e in entries}
        self.methods = methods_task.outputs["value"] if methods_task.status == "done" else {}
        if methods_task.status != "done":
            self.note = "; ".join(n for n in (self.note, f"the method list could not be read ({methods_task.error})")
                                  if n)
        self.tasks = {}
        return True

    def wait(self, idle: Callable[[], None] | None = None, timeout: float = LISTING_TIMEOUT_S) -> None:
        """Block until the running refresh ends (the console's ``listModels(refresh=True)``)."""
        import time

        start = time.monotonic()
        while self.running and not self.poll():
            if time.monotonic() - start > timeout:
                self.cancel()
                break
            if idle is not None:
                idle()
            time.sleep(0.05)

    def cancel(self) -> None:
        """Stop the running listings (the lists keep their last values)."""
        for task in self.tasks.values():
            task.cancel()
        self.tasks = {}
