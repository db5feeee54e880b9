"""The model catalogue (``python -m MedXAILib models``) and the ``scheme:NAME`` model resolvers.

JSON contract (what ``models --json`` prints; the Slicer panel codes against it)::

    {"models": [{"name": str,                                         # what --model takes (e.g. monai:NAME)
                 "source": "builtin" | "cached" | "zoo" | "bundle" | "nnunet" | "totalsegmentator" | "file",
                 "task": "segmentation" | "classification" | null,     # null: not known before download
                 "spatial_dims": 2 | 3 | null,
                 "channels": [str], "classes": [str],
                 "card": {"name": str, "version": str, "training_data": str, "intended_use": str, ...},
                 "label_values": [int] | null,                        # class values in label maps, if not indices
                 "load": str}]}                                       # the same as name (kept for clarity)

Hooks for other formats (e.g. nnU-Net, TotalSegmentator), without touching this module's callers:

- :func:`register_model_source` — a function ``() -> list[dict]`` returning entries in the form above;
- :func:`register_resolver` — a function ``(name, device, trust_code, allow_unsafe_pickle) -> Model`` for
  ``--model SCHEME:NAME`` (``monai:`` is registered by :mod:`.zoo`).
"""

from __future__ import annotations

from typing import Any, Callable

ModelSource = Callable[[], list[dict[str, Any]]]
Resolver = Callable[..., Any]

_SOURCES: list[ModelSource] = []
_RESOLVERS: dict[str, Resolver] = {}
SOURCE_KINDS = ("builtin", "cached", "zoo", "bundle", "nnunet", "totalsegmentator", "file")


def register_model_source(fn: ModelSource) -> ModelSource:
    """Add a catalogue source (usable as a decorator). Sources must be cheap and never reach the network."""
    if fn not in _SOURCES:
        _SOURCES.append(fn)
    return fn


def register_resolver(scheme: str, fn: Resolver) -> None:
    """Make ``--model SCHEME:NAME`` load through ``fn(name, device=, trust_code=, allow_unsafe_pickle=)``."""
    _RESOLVERS[scheme.lower()] = fn


def resolver_for(text: str) -> tuple[Resolver, str] | None:
    """``(resolver, name)`` for a ``scheme:NAME`` model reference, or None (``C:\\…`` paths are not schemes)."""
    _load_builtin_sources()
    if ":" not in text:
        return None
    scheme, name = text.split(":", 1)
    if len(scheme) < 2 or scheme.lower() not in _RESOLVERS:
        return None
    return _RESOLVERS[scheme.lower()], name


def entry(
    name: str, source: str, task: str | None, spatial_dims: int | None, channels: list[str], classes: list[str],
    card: dict[str, Any], load: str | None = None, label_values: list[int] | None = None,
) -> dict[str, Any]:
    """One catalogue entry in the contract's form (checks ``source``); ``name`` is what ``--model`` takes."""
    if source not in SOURCE_KINDS:
        raise ValueError(f"unknown model source kind {source!r}")
    return {"name": name, "source": source, "task": task, "spatial_dims": spatial_dims, "channels": list(channels),
            "classes": list(classes), "card": card, "label_values": label_values, "load": load or name}


def list_models() -> list[dict[str, Any]]:
    """Every entry of every registered source (a failing source is reported as one entry-less warning)."""
    _load_builtin_sources()
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for fn in _SOURCES:
        for e in fn():
            key = (e["name"], e["source"])
            if key not in seen:
                seen.add(key)
                out.append(e)
    return out


def _load_builtin_sources() -> None:
    # zoo: the builtin, cached and zoo sources and the monai: resolver; nnunet_sources (which imports zoo first, so
    # built-in models are listed first): the nnunet and totalsegmentator sources and the totalsegmentator: resolver
    from . import nnunet_sources, zoo  # noqa: F401
