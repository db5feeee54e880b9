"""The model catalogue (``python -m MedXAILib models``) and ``--model SCHEME:NAME``, filled from one explicit list.

:data:`SOURCES` and :data:`RESOLVERS` name every built-in source and resolver; :mod:`.registry` adds the ones
registered from outside the package. The sources only read small JSON files (never import a model's code, never
reach the network), and one unreadable model never hides the others: :func:`catalogue` lists what it can and names
what it skipped.
"""

from __future__ import annotations

from typing import Any

from . import nnunet_sources, registry, totalsegmentator, zoo
from .registry import SKIPPED, ModelSource, Resolver, skipped

#: The built-in catalogue sources, in listing order (built-in models first).
SOURCES: tuple[tuple[str, ModelSource], ...] = (
    ("builtin", zoo.builtin_entries),
    ("cached", zoo.cached_entries),
    ("zoo", zoo.zoo_entries),
    ("nnunet", nnunet_sources.nnunet_results_models),
    ("totalsegmentator", nnunet_sources.totalsegmentator_models),
)
#: The built-in ``--model SCHEME:NAME`` resolvers.
RESOLVERS: dict[str, Resolver] = {
    "monai": zoo.resolve_monai,
    "totalsegmentator": totalsegmentator.load_totalsegmentator,
}


def catalogue() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(entries, skipped)``: every entry of every source, and ``{"name", "source", "reason"}`` for each model (or
    whole source) that could not be read."""
    from ..errors import MedXAIError

    out: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    sources = list(SOURCES) + [(getattr(fn, "__name__", "extra"), fn) for fn in registry.EXTRA_SOURCES]
    for label, fn in sources:
        try:
            found = fn()
        except (MedXAIError, OSError, ValueError, KeyError, TypeError) as exc:
            left.append({"name": label, "source": label, "reason": f"the source failed ({exc})"})
            continue
        for e in found:
            if e.get(SKIPPED):
                left.append({k: v for k, v in e.items() if k != SKIPPED})
                continue
            key = (e["name"], e["source"])
            if key not in seen:
                seen.add(key)
                out.append(e)
    return out, left


def list_models() -> list[dict[str, Any]]:
    """Every entry the catalogue can list (see :func:`catalogue` for what it skipped)."""
    return catalogue()[0]


def resolver_for(text: str) -> tuple[Resolver, str] | None:
    """``(resolver, name)`` for a ``scheme:NAME`` model reference, or None (``C:\\…`` paths are not schemes)."""
    if ":" not in text:
        return None
    scheme, name = text.split(":", 1)
    table = {**RESOLVERS, **registry.EXTRA_RESOLVERS}
    if len(scheme) < 2 or scheme.lower() not in table:
        return None
    return table[scheme.lower()], name


__all__ = ["RESOLVERS", "SOURCES", "catalogue", "list_models", "resolver_for", "skipped"]
