"""Reading a MONAI bundle's config safely: the typed schema check, the consent rule, and the parser MONAI gets.

**A bundle config is code.** Its ``_target_`` entries name callables, ``$…`` strings are Python expressions, ``@id``
references pull in other entries, ``%file::id`` macros read other files, and many arguments of MONAI's own classes
are names MONAI imports (a reader, a merger class, a layer). Without ``--trust-model-code`` (``--trust-bundle-code``
is the same flag) MedXAI therefore checks the entries it needs (``network_def``, ``preprocessing``, ``inferer``,
``postprocessing``) against the typed schema of :mod:`.bundle_schema`, before anything is imported, called or
downloaded:

- every string is first read as MONAI reads it: ``#`` is MONAI's old id separator (``@a::b#c`` is ``@a::b::c``),
  relative ids (``@::x``, ``@::::x``) are made absolute from the entry's own id, exactly as
  ``ConfigParser.resolve_relative_ids`` does;
- a ``$`` expression, a ``%`` macro, a URL, ``_requires_`` or a ``_mode_`` other than ``default`` is refused
  wherever it is;
- a string that MONAI treats as a reference (the whole string is ``@id``) is followed to the entry it names, and that
  entry is checked against the type the referring argument needs (references are followed through the whole config;
  a cycle or a reference to nothing is refused);
- a component (``{"_target_": …}``) must be a class of :data:`~.bundle_schema.CLASSES` in the role the argument
  allows, with only the arguments and types listed there; names MONAI would import must be in its safe lists.

The :class:`monai.bundle.ConfigParser` is then built from the checked values only (:func:`safe_parser`): the needed
entries, plus exactly the sub-entries their references reach (siblings replaced by ``null``), every ``_target_``
rewritten to its full ``monai.…`` path. Nothing else in the config (its ``imports``, ``device``, datalists,
``initialize`` …) is ever seen by MONAI. A postprocessing step that breaks a rule (BraTS's ``Lambdad`` label mapping) is
skipped with a note; ``SaveImage*`` steps are always skipped (MedXAI writes outputs). With ``trust_code=True`` the full
config goes to MONAI as it is.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .bundle_metadata import find_config
from .bundle_schema import ENTRIES, Component, resolve_target
from .config_files import read_mapping
from .schema_types import AnyOf, SchemaError, Spec

TRUST_FLAG = "--trust-model-code"
TRUST_ALIAS = "--trust-bundle-code"
_SEP = "::"
_REF = re.compile(r"@\w*(?:::\w*)*")  # MONAI's ReferenceResolver.id_matcher, matched against the whole string
_RELATIVE = re.compile(r"(?:@|%)(?:::)+")  # MONAI's ConfigParser.relative_id_prefix
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://|^(?:www\.|ftp\.)", re.IGNORECASE)
#: Nesting of the check (levels of values and references together); deeper configs are refused.
MAX_WALK_DEPTH = 150
_RISKS = {
    "code": "building it would run code the bundle names",
    "download": "building it would reach the network",
    None: "MedXAI builds only what its typed schema of MONAI classes allows",
}


class BundleCodeError(ModelError):
    """A bundle entry would run code (or download) that was not consented to, or breaks the typed schema."""


def read_config(folder: Path, stem: str) -> dict[str, Any] | None:
    """``configs/<stem>.json`` / ``.yaml`` / ``.yml`` as a dict, read bounded (None when absent)."""
    path = find_config(folder, stem)
    if path is None:
        return None
    return read_mapping(path, "bundle config")


def resolve_relative_ids(entry_id: str, value: str) -> str:
    """``value`` as MONAI's ``ConfigParser.resolve_relative_ids`` turns it, given the id of the entry holding it:
    ``#`` becomes ``::`` everywhere in the string, and ``@::``/``%::`` prefixes become absolute ids.

    Raises:
        SchemaError: a relative id points above the top of the config (MONAI raises too).
    """
    value = value.replace("#", _SEP)
    current = entry_id.split(_SEP)
    for prefix in sorted(set(_RELATIVE.findall(value)), reverse=True):
        sym = "@" if "@" in prefix else "%"
        levels = prefix[1:].count(_SEP)
        if levels > len(current):
            raise SchemaError(entry_id, f"has the relative id {value[:60]!r}, which points above the config")
        new = "" if levels == len(current) else _SEP.join(current[:-levels]) + _SEP
        value = value.replace(prefix, sym + new)
    return value


def lookup(config: dict[str, Any], entry_id: str) -> Any:
    """The value MONAI registers under ``entry_id`` (dict keys exactly; list items by their decimal index)."""
    node: Any = config
    for part in entry_id.split(_SEP):
        if not part:
            raise KeyError(entry_id)  # MONAI's id "" is the whole config
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isascii() and part.isdigit() and str(int(part)) == part \
                and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(entry_id)
    return node


class _Checker:
    """Walks entries against their types, following references, and records every id the parser needs."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.needed: set[str] = set()
        self._done: set[tuple[str, int]] = set()
        self._active: list[str] = []
        self._depth = 0

    def walk(self, value: Any, spec: Spec, where: str) -> None:
        self._depth += 1
        try:
            if self._depth > MAX_WALK_DEPTH:
                raise SchemaError(where, f"nests deeper than {MAX_WALK_DEPTH} levels (values and references)")
            if isinstance(value, str):
                self._string(value, spec, where)
                return
            if isinstance(value, dict):
                if "_requires_" in value:
                    raise SchemaError(f"{where}::_requires_", "runs other entries first", "code")
                if "_target_" in value and not _accepts_components(spec):
                    raise SchemaError(where, f"instantiates {str(value['_target_'])[:80]!r} where MedXAI's schema "
                                      f"expects {spec.describe()}", "code")
            spec.check(value, where, self.walk)
        finally:
            self._depth -= 1

    def _string(self, raw: str, spec: Spec, where: str) -> None:
        value = resolve_relative_ids(where, raw)
        if value.startswith("%"):
            raise SchemaError(where, f"is a macro that reads another file or entry ({raw[:60]!r})", "code")
        if value.startswith("$"):
            raise SchemaError(where, f"is a Python expression ({raw[:60]!r})", "code")
        if _URL.search(value):
            raise SchemaError(where, f"holds a URL ({raw[:80]!r})", "download")
        if _REF.fullmatch(value):
            self._follow(value[1:], spec, where)
            return
        spec.check(value, where, self.walk)

    def _follow(self, target: str, spec: Spec, where: str) -> None:
        try:
            value = lookup(self.config, target)
        except KeyError:
            raise SchemaError(where, f"refers to @{target}, which is not in the config") from None
        if target in self._active:
            raise SchemaError(where, f"refers to @{target}, which refers back to itself "
                              f"({' → '.join(self._active[self._active.index(target):] + [target])})")
        self.needed.add(target)
        key = (target, id(spec))
        if key in self._done:
            return
        self._active.append(target)
        try:
            self.walk(value, spec, target)
        except SchemaError as exc:
            if exc.where == target:  # say which entry led here
                raise SchemaError(f"{where} → @{target}", exc.problem, exc.risk) from None
            raise
        finally:
            self._active.pop()
        self._done.add(key)


def _accepts_components(spec: Spec) -> bool:
    if isinstance(spec, Component):
        return True
    return isinstance(spec, AnyOf) and any(_accepts_components(o) for o in spec.options)


def check_entries(config: dict[str, Any], ids: list[str]) -> set[str]:
    """Check the top-level entries ``ids`` against :data:`~.bundle_schema.ENTRIES`; return every id the parser needs
    (the entries and the sub-entries their references reach).

    Raises:
        SchemaError: the first rule broken (its ``where`` is the MONAI id of the entry).
    """
    checker = _Checker(config)
    for entry_id in ids:
        checker.needed.add(entry_id)
        checker.walk(config[entry_id], ENTRIES[entry_id], entry_id)
    return checker.needed


def check_step(config: dict[str, Any], step_id: str) -> SchemaError | None:
    """The rule a single postprocessing step breaks (None when it passes)."""
    try:
        _Checker(config).walk(lookup(config, step_id), Component(("transform",)), step_id)
    except SchemaError as exc:
        return exc
    return None


def check_architecture(name: Any, kwargs: Any) -> SchemaError | None:
    """The rule a MedXAI description's ``{"name", "kwargs"}`` network breaks (None when it passes): the same network
    schema as a bundle's ``network_def``."""
    if not isinstance(kwargs, dict):
        return SchemaError("architecture::kwargs", "must be a mapping of argument names to values")
    config = {"architecture": {"_target_": name, **kwargs}}
    try:
        _Checker(config).walk(config["architecture"], ENTRIES["network_def"], "architecture")
    except SchemaError as exc:
        return exc
    return None


def refuse(folder: Path | str, exc: SchemaError, what: str = "bundle") -> BundleCodeError:
    """The one-line refusal: the entry, what it does, the risk, and the flag."""
    return BundleCodeError(
        f"{folder}: {what} entry {exc.where} {exc.problem}; {_RISKS.get(exc.risk, _RISKS[None])}. "
        f"Pass {TRUST_FLAG} (or {TRUST_ALIAS}) only if you trust this {what}'s author"
    )


def _qualify(node: Any) -> Any:
    """A copy with every ``_target_`` rewritten to its schema's full public path."""
    if isinstance(node, list):
        return [_qualify(v) for v in node]
    if isinstance(node, dict):
        out = {k: _qualify(v) for k, v in node.items()}
        spec = resolve_target(out.get("_target_"))
        if spec is not None:
            out["_target_"] = spec.path
        return out
    return node


def pruned_config(config: dict[str, Any], ids: set[str]) -> dict[str, Any]:
    """Only the entries ``ids`` of ``config``, at their own ids: a needed sub-entry's ancestors keep only the path to
    it (other keys dropped, other list items ``null``), so no unchecked value is copied."""
    out: dict[str, Any] = {}
    for entry_id in sorted(ids, key=lambda i: i.count(_SEP)):
        parts = entry_id.split(_SEP)
        if any(_SEP.join(parts[:n]) in ids for n in range(1, len(parts))):
            continue  # an ancestor is copied whole
        src: Any = config
        dst: Any = out
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            if isinstance(src, dict):
                child = src[part]
                if last:
                    dst[part] = copy.deepcopy(child)
                elif part not in dst:
                    dst[part] = {} if isinstance(child, dict) else [None] * len(child)
                src, dst = child, (dst[part] if not last else None)
            else:
                i = int(part)
                child = src[i]
                if last:
                    dst[i] = copy.deepcopy(child)
                elif dst[i] is None:
                    dst[i] = {} if isinstance(child, dict) else [None] * len(child)
                src, dst = child, (dst[i] if not last else None)
    return out


def safe_parser(config: dict[str, Any], ids: set[str], folder: Path) -> Any:
    """A ``ConfigParser`` over the checked entries ``ids`` only (:func:`pruned_config`), targets fully qualified."""
    from monai.bundle import ConfigParser

    return ConfigParser(_qualify(pruned_config(config, ids)))


def trusted_parser(config: dict[str, Any], folder: Path) -> Any:
    """A ``ConfigParser`` over the whole config (the trust flag), with ``bundle_root`` set to the folder."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(copy.deepcopy(config))
    parser["bundle_root"] = str(folder)
    return parser
