"""The catalogue's entry form and the hooks for extra model sources and ``scheme:NAME`` resolvers (lowest layer).

JSON contract (what ``models --json`` prints; the Slicer panel codes against it)::

    {"models": [{"name": str,                                         # what --model takes (e.g. monai:NAME)
                 "source": "builtin" | "cached" | "zoo" | "bundle" | "nnunet" | "totalsegmentator" | "file",
                 "task": "segmentation" | "classification" | null,     # null: not known before download
                 "spatial_dims": 2 | 3 | null,
                 "channels": [str], "classes": [str],
                 "card": {"name": str, "version": str, "training_data": str, "intended_use": str, ...},
                 "label_values": [int] | null,                        # class values in label maps, if not indices
                 "load": str}],                                       # the same as name (kept for clarity)
     "skipped": [{"name": str, "source": str, "reason": str}]}        # what could not be listed, and why

The built-in sources and resolvers are one explicit list in :mod:`.catalogue`. This module holds only what every
source shares (:func:`entry`, :func:`skipped`) and two hooks for formats added from outside the package:

- :func:`register_model_source` — a function ``() -> list[dict]`` returning entries (or :func:`skipped` records);
- :func:`register_resolver` — a function ``(name, device, trust_code, allow_unsafe_pickle) -> Model`` for
  ``--model SCHEME:NAME``.
"""

from __future__ import annotations

from typing import Any, Callable

ModelSource = Callable[[], list[dict[str, Any]]]
Resolver = Callable[..., Any]

#: Sources and resolvers added from outside MedXAILib (the built-in ones are listed in :mod:`.catalogue`).
EXTRA_SOURCES: list[ModelSource] = []
EXTRA_RESOLVERS: dict[str, Resolver] = {}
SOURCE_KINDS = ("builtin", "cached", "zoo", "bundle", "nnunet", "totalsegmentator", "file")
SKIPPED = "skipped"


def register_model_source(fn: ModelSource) -> ModelSource:
    """Add a catalogue source (usable as a decorator). Sources must be cheap and never reach the network."""
    if fn not in EXTRA_SOURCES:
        EXTRA_SOURCES.append(fn)
    return fn


def register_resolver(scheme: str, fn: Resolver) -> None:
    """Make ``--model SCHEME:NAME`` load through ``fn(name, device=, trust_code=, allow_unsafe_pickle=)``."""
    EXTRA_RESOLVERS[scheme.lower()] = fn


def entry(
    name: str, source: str, task: str | None, spatial_dims: int | None, channels: list[str], classes: list[str],
    card: dict[str, Any], load: str | None = None, label_values: list[int] | None = None,
) -> dict[str, Any]:
    """One catalogue entry in the contract's form (checks ``source``); ``name`` is what ``--model`` takes."""
    if source not in SOURCE_KINDS:
        raise ValueError(f"unknown model source kind {source!r}")
    return {"name": name, "source": source, "task": task, "spatial_dims": spatial_dims, "channels": list(channels),
            "classes": list(classes), "card": card, "label_values": label_values, "load": load or name}


def skipped(name: str, source: str, reason: str) -> dict[str, Any]:
    """A record for something a source found but could not list (``models`` names it and goes on)."""
    return {SKIPPED: True, "name": name, "source": source, "reason": reason}
