"""What every section of the panel has: the ``.ui`` widgets, the logic, the parameter node, the job controls."""

from __future__ import annotations

from typing import Any


class Section:
    """One part of the panel. Subclasses connect their widgets in :meth:`setup`, copy the parameter node's code-set
    choices into their widgets in :meth:`restore` (a new or loaded scene), and refresh what is enabled in
    :meth:`update` (any change of the parameter node)."""

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.ui = panel.ui
        self.logic = panel.logic

    @property
    def parameterNode(self) -> Any:
        return self.panel.parameterNode

    @property
    def jobs(self) -> Any:
        return self.panel.jobs

    def setup(self) -> None:
        """Connect the section's widgets (once)."""

    def restore(self) -> None:
        """Show the parameter node's code-set choices (after a scene was loaded or a parameter node set)."""

    def update(self) -> None:
        """Refresh enabled states and texts from the parameter node."""

    def log(self, text: str) -> None:
        self.panel.log(text)
