"""The *Model* section's logic: the models and methods the core offers, read once in the background (mixin).

The lists live in one :class:`~MedXAILogicLib.workflow_catalog.CatalogCache` for the whole Slicer session, shared by
every logic object: the panel starts a refresh when it opens for the first time (it shows the built-in models at
once, read from their description files) and when *Refresh* is pressed; the panel's timer drains it
(:meth:`ModelLogic.pollCatalog`). A model file or folder is described in the background too
(:meth:`ModelLogic.startDescribe`). Nothing here blocks unless a ``…Blocking``/console method is called.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..i18n import tr as _

#: The parameter node's model name for "a model file or folder" (the path is in ``modelPath``).
MODEL_FILE_CHOICE = "model file or folder"
#: Offered until the core has listed its methods (and when it cannot).
METHOD_CHOICES = ("gradcam", "gradcampp", "hirescam", "scorecam", "lrp", "ig", "gradientshap", "kernelshap", "lime",
                  "occlusion")


_CACHE: list[Any] = []  # the session's one CatalogCache, made on first use (the module file imports this at startup)


def session_catalog() -> Any:
    """The :class:`~MedXAILogicLib.workflow_catalog.CatalogCache` every logic object of this session shares."""
    if not _CACHE:
        from ..workflow_catalog import CatalogCache

        _CACHE.append(CatalogCache())
    return _CACHE[0]


class ModelLogic:
    """Mixin of the module logic: the model and method catalogue, model options."""

    @property
    def catalog(self) -> Any:
        """The session's model and method lists (shared by every logic object)."""
        return session_catalog()

    # -- the catalogue -------------------------------------------------------------------------------------------
    def builtinModels(self) -> list:
        """The built-in models, read from their description files (instant; no child process)."""
        from MedXAILogicLib import catalog

        return catalog.builtin_entries()

    def startCatalogRefresh(self, force: bool = False) -> bool:
        """Read the model and method lists in the background unless they are cached (``force``: read them again).

        Returns True when a refresh is running after the call.
        """
        if force or not self.catalog.loaded:
            self.catalog.refresh(self.workflow())
        return self.catalog.running

    def pollCatalog(self) -> bool:
        """Drain a running refresh; True once, when it has just ended."""
        return self.catalog.poll()

    def listModels(self, refresh: bool = False):
        """``(entries, note)``: the models ``models --json`` lists (built-in ones if it cannot). Blocks (the
        console); the panel uses :meth:`startCatalogRefresh`."""
        if refresh or self.catalog.models is None:
            self.startCatalogRefresh(force=refresh)
            self.catalog.wait(idle=self._idle)
        return self.currentModels()

    def currentModels(self) -> tuple[list, str | None]:
        """What is known now, without waiting: the listed models, or the built-in ones until they are listed."""
        if self.catalog.models is None:
            return self.builtinModels(), None
        return list(self.catalog.models.values()), self.catalog.note

    def listMethods(self, refresh: bool = False) -> dict:
        """``{method: record}`` from ``methods --json`` (blocks; empty when the core cannot list them)."""
        if refresh or self.catalog.methods is None:
            self.startCatalogRefresh(force=refresh)
            self.catalog.wait(idle=self._idle)
        return self.catalog.methods or {}

    def knownModel(self, model: str):
        """The entry of a listed model or an already described path (None when unknown: no child is started)."""
        if not model:
            return None
        models, _note = self.currentModels()
        by_name = {e.name: e for e in models}
        return by_name.get(model) or self.catalog.described.get(model)

    def startDescribe(self, path: str):
        """Describe a model file or folder in the background; :meth:`describedEntry` reads the ended task."""
        return self.workflow().start_describe(path)

    def describedEntry(self, path: str, task: Any):
        """The entry of an ended describe task (cached for ``path``).

        Raises:
            JobFailedError, CancelledError: the core could not load the model (its one-line error).
        """
        entry = task.wait()["value"]
        self.catalog.described[path] = entry
        return entry

    def modelEntry(self, model: str):
        """What a model is (task, channels, classes): from the model list, or by describing a file or folder
        (blocks while the core loads it; the panel uses :meth:`startDescribe`)."""
        entry = self.knownModel(model)
        if entry is None:
            if not model:
                raise ValueError(_("Choose a model"))
            entry = self.describedEntry(model, self.startDescribe(model))
        return entry

    def isClassificationModel(self, model: str) -> bool:
        """Is the model a classifier? Read from its description (the model list, or the file or folder itself)."""
        return self.modelEntry(model).is_classification

    # -- methods -------------------------------------------------------------------------------------------------
    def methodNames(self, entry: Any = None) -> list:
        """The methods that can explain ``entry`` (all listed ones when it is unknown)."""
        from MedXAILogicLib import catalog

        methods = self.catalog.methods or {}
        if not methods:
            return list(METHOD_CHOICES)
        return [name for name, record in methods.items() if entry is None or catalog.supports(record, entry)]

    def methodRecord(self, method: str) -> dict:
        """The ``methods --json`` record of a method (empty when unknown)."""
        return dict((self.catalog.methods or {}).get(method) or {})

    def methodParameterSpecs(self, method: str) -> list:
        """Widget specifications of the method's parameters (type, default, range, decimals, help)."""
        from MedXAILogicLib import catalog

        record = self.methodRecord(method)
        return catalog.parameter_specs(record) if record else []

    @staticmethod
    def methodArguments(specs: Sequence[Any], values: Mapping[str, Any]) -> list:
        """``--param key=value`` flags for the values that differ from the method's defaults."""
        from MedXAILogicLib import catalog

        return catalog.method_arguments(specs, values)

    # -- the parameter node -> arguments ---------------------------------------------------------------------------
    @staticmethod
    def modelFromParameters(parameterNode: Any) -> str:
        """What ``--model`` takes for the panel's choice (a listed model, or the chosen file or folder)."""
        if parameterNode.modelName == MODEL_FILE_CHOICE:
            path = str(parameterNode.modelPath or "").strip()
            if not path or path == ".":
                raise ValueError(_("Choose a model file or folder"))
            return path
        return parameterNode.modelName

    @staticmethod
    def modelOptions(parameterNode: Any, entry: Any = None):
        """The nnU-Net / TotalSegmentator options of the panel (:class:`~MedXAILogicLib.catalog.ModelOptions`); for
        a TotalSegmentator task of several models the organ is the explained class."""
        from MedXAILogicLib import catalog

        organ = parameterNode.targetClass if entry is not None and entry.needs_class_target else ""
        return catalog.ModelOptions(folds=parameterNode.nnunetFolds, checkpoint=parameterNode.nnunetCheckpoint,
                                    mirroring=parameterNode.nnunetMirroring, fast=parameterNode.totalSegmentatorFast,
                                    organ=organ)
