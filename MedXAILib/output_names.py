"""Output paths whose names are only partly known before a command runs.

A command declares every file it will write before any work (:mod:`MedXAILib.outputs`). Some names depend on what
the run finds: ``cf_<channel>.nii.gz`` takes the model's channel names, ``step<NN>.nii.gz`` the number of steps a
counterfactual search takes, ``units/<case>__<method>.json`` the cases of a dataset. Such a name is declared with
:data:`WILDCARD` standing for the unknown part (any run of characters inside one path component, never a ``/``), so
``folder / name_with("step", WILDCARD, ".nii.gz")`` reserves every ``step*.nii.gz`` of the folder.

The wildcard is the NUL character, which no POSIX path can contain, so a literal ``*`` or ``[`` in a user's path is
never mistaken for one. This module answers three questions about such paths, after resolving their literal
folders (symlinks, ``..``):

- :func:`matches` — is a concrete path one of the names a pattern reserves?
- :func:`may_overlap` — can two patterns name the same file? (conservative: ``True`` when unsure)
- :func:`existing` — which files on disk a pattern names now (to compare with the inputs, by inode).
"""

from __future__ import annotations

import glob
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator

#: Stands for any run of characters (possibly none) inside one path component of a declared output.
WILDCARD = "\x00"


def has_wildcard(path: str | os.PathLike) -> bool:
    return WILDCARD in str(path)


def shown(path: str | os.PathLike) -> str:
    """The path as a user reads it: the wildcard written ``*``."""
    return str(path).replace(WILDCARD, "*")


def name_with(*parts: str) -> str:
    """A file name from literal parts and :data:`WILDCARD` (e.g. ``name_with("step", WILDCARD, ".nii.gz")``)."""
    return "".join(parts)


def resolved(path: str | os.PathLike) -> Path:
    """``path`` made absolute with its literal leading folders resolved (symlinks, ``..``); the components from the
    first one holding a wildcard on are kept as written."""
    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    parts = p.parts
    first = next((i for i, part in enumerate(parts) if WILDCARD in part), len(parts))
    head = Path(*parts[:first]).resolve() if first else Path(p.anchor)
    return head.joinpath(*parts[first:]) if first < len(parts) else head


@lru_cache(maxsize=256)
def _component(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(piece) for piece in pattern.split(WILDCARD)), re.S)


def _component_matches(pattern: str, name: str) -> bool:
    return pattern == name if WILDCARD not in pattern else _component(pattern).fullmatch(name) is not None


def matches(pattern: str | os.PathLike, path: str | os.PathLike) -> bool:
    """True when the concrete ``path`` is one of the files ``pattern`` names (both resolved first)."""
    a, b = resolved(pattern).parts, resolved(path).parts
    return len(a) == len(b) and all(_component_matches(x, y) for x, y in zip(a, b))


def _components_overlap(x: str, y: str) -> bool:
    if WILDCARD not in x or WILDCARD not in y:
        return _component_matches(x, y) if WILDCARD in x else _component_matches(y, x)
    # both hold a wildcard: a common name exists when the literal heads agree and the literal tails agree
    # (exact for one wildcard each; with more, a "yes" may be a false alarm, which only refuses an odd pair)
    hx, tx = x.split(WILDCARD, 1)[0], x.rsplit(WILDCARD, 1)[1]
    hy, ty = y.split(WILDCARD, 1)[0], y.rsplit(WILDCARD, 1)[1]
    return (hx.startswith(hy) or hy.startswith(hx)) and (tx.endswith(ty) or ty.endswith(tx))


def may_overlap(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two (possibly wildcard) paths can name the same file."""
    x, y = resolved(a).parts, resolved(b).parts
    return len(x) == len(y) and all(_components_overlap(p, q) for p, q in zip(x, y))


def existing(pattern: str | os.PathLike) -> Iterator[Path]:
    """Every file or folder on disk that ``pattern`` names now (a symlink there is yielded as the link)."""
    text = str(resolved(pattern))
    if WILDCARD not in text:
        if os.path.lexists(text):
            yield Path(text)
        return
    expression = "*".join(glob.escape(piece) for piece in text.split(WILDCARD))
    for found in glob.iglob(expression):  # glob's * stops at "/", as the wildcard does
        yield Path(found)


__all__ = ["WILDCARD", "existing", "has_wildcard", "matches", "may_overlap", "name_with", "resolved", "shown"]
