"""The type vocabulary of MedXAI's model-file schemas (MONAI bundle configs, nnU-Net plans and dataset.json).

A schema says, for every entry a framework would read, what it must be: a number in a range, a string from a list,
a list of bounded length, a mapping with known keys, or — for anything the framework would *import or call by
name* — a :class:`SafeName` from an explicit list of known safe names. Checking a value imports, calls and downloads
nothing: the specs below look only at JSON values (``None``, bool, int, float, str, list, dict).

Entries are named as MONAI names them (``preprocessing::transforms::0::reader``). A spec's :meth:`Spec.check`
receives ``walk(value, spec, where)``, the checker's own recursion, so that a bundle checker can follow ``@``
references and refuse ``$`` expressions at every level (:mod:`.bundle_config`), while the nnU-Net checker walks plain
JSON (:func:`plain_walk`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

Walk = Callable[[Any, "Spec", str], None]


class SchemaError(Exception):
    """A value breaks its schema: ``where`` names the entry, ``problem`` says how, ``risk`` marks code/URL risks."""

    def __init__(self, where: str, problem: str, risk: str | None = None) -> None:
        super().__init__(f"{where}: {problem}")
        self.where, self.problem, self.risk = where, problem, risk


def kind_of(value: Any) -> str:
    """A short name of a JSON value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "a component (_target_ " + repr(value.get("_target_"))[:60] + ")" if "_target_" in value else "a mapping"
    return type(value).__name__


class Spec:
    """One schema type. ``describe()`` is what the message says was expected."""

    def check(self, value: Any, where: str, walk: Walk) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def fail(self, value: Any, where: str) -> SchemaError:
        return SchemaError(where, f"must be {self.describe()}, not {kind_of(value)}")


@dataclass(frozen=True)
class Bool(Spec):
    def check(self, value: Any, where: str, walk: Walk) -> None:
        if not isinstance(value, bool):
            raise self.fail(value, where)

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Const(Spec):
    """Exactly one value (e.g. ``pretrained`` must be false: true would download weights)."""

    value: Any
    why: str = ""

    def check(self, value: Any, where: str, walk: Walk) -> None:
        if value != self.value or type(value) is not type(self.value):
            raise SchemaError(where, f"must be {self.value!r}{' (' + self.why + ')' if self.why else ''}, not "
                              f"{kind_of(value)}", "download" if "download" in self.why else None)

    def describe(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Int(Spec):
    lo: int = 0
    hi: int = 2**31 - 1

    def check(self, value: Any, where: str, walk: Walk) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise self.fail(value, where)

    def describe(self) -> str:
        return f"an integer in [{self.lo}, {self.hi}]"


@dataclass(frozen=True)
class Num(Spec):
    lo: float = -1e12
    hi: float = 1e12

    def check(self, value: Any, where: str, walk: Walk) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or not self.lo <= float(value) <= self.hi:
            raise self.fail(value, where)

    def describe(self) -> str:
        return f"a number in [{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Str(Spec):
    """A plain string (data, never imported): of at most ``max_len`` characters, one of ``choices`` when given
    (compared case-insensitively when ``fold_case``)."""

    choices: tuple[str, ...] = ()
    max_len: int = 256
    fold_case: bool = True

    def check(self, value: Any, where: str, walk: Walk) -> None:
        if not isinstance(value, str) or len(value) > self.max_len:
            raise self.fail(value, where)
        if self.choices:
            seen = value.lower() if self.fold_case else value
            allowed = [c.lower() for c in self.choices] if self.fold_case else list(self.choices)
            if seen not in allowed:
                raise self.fail(value, where)

    def describe(self) -> str:
        return f"one of {', '.join(repr(c) for c in self.choices)}" if self.choices else "a string"


@dataclass(frozen=True)
class SafeName(Spec):
    """A string the framework imports or calls by name: it must be one of ``names`` (never imported here).

    ``what`` says who uses the name (``"MONAI's LoadImage"``, ``"nnU-Net (pydoc.locate)"``).
    """

    names: tuple[str, ...]
    what: str
    fold_case: bool = False

    def check(self, value: Any, where: str, walk: Walk) -> None:
        if not isinstance(value, str):
            raise self.fail(value, where)
        key = value.lower() if self.fold_case else value
        allowed = {n.lower() for n in self.names} if self.fold_case else set(self.names)
        if key not in allowed:
            shown = ", ".join(self.names[:8]) + (", …" if len(self.names) > 8 else "")
            raise SchemaError(where, f"names {value[:80]!r}, which {self.what} would import or call by name, and it "
                              f"is not a known safe name ({shown})", "code")

    def describe(self) -> str:
        return f"a known safe name for {self.what}"


@dataclass(frozen=True)
class Null(Spec):
    def check(self, value: Any, where: str, walk: Walk) -> None:
        if value is not None:
            raise self.fail(value, where)

    def describe(self) -> str:
        return "null"


@dataclass(frozen=True)
class AnyOf(Spec):
    """The first alternative that accepts the value. When none does, the message is a code or URL risk found by
    any alternative, else the deepest problem found, else "expected A or B"."""

    options: tuple[Spec, ...]

    def check(self, value: Any, where: str, walk: Walk) -> None:
        errors: list[SchemaError] = []
        for option in self.options:
            try:
                walk(value, option, where)
                return
            except SchemaError as exc:
                errors.append(exc)
        risky = [e for e in errors if e.risk]
        if risky:
            raise risky[0]
        deeper = [e for e in errors if e.where != where]
        if deeper:
            raise max(deeper, key=lambda e: len(e.where))
        raise self.fail(value, where)

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)


def opt(spec: Spec) -> Spec:
    """``spec`` or null."""
    return AnyOf((Null(), spec))


@dataclass(frozen=True)
class Seq(Spec):
    item: Spec
    min_len: int = 0
    max_len: int = 64

    def check(self, value: Any, where: str, walk: Walk) -> None:
        if not isinstance(value, list) or not self.min_len <= len(value) <= self.max_len:
            raise self.fail(value, where)
        for i, v in enumerate(value):
            walk(v, self.item, f"{where}::{i}")

    def describe(self) -> str:
        return f"a list of {self.min_len}–{self.max_len} items ({self.item.describe()})"


def one_or_seq(spec: Spec, max_len: int = 8) -> Spec:
    """A value or a list of such values (MONAI's per-key / per-axis arguments)."""
    return AnyOf((spec, Seq(spec, 1, max_len)))


@dataclass(frozen=True)
class Map(Spec):
    """A mapping with known keys (each with its spec); ``required`` keys must be present. Other keys are refused, or
    checked against ``extra`` when given (then named with letters, digits, spaces and ``_-.`` only)."""

    fields: dict[str, Spec] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    extra: Spec | None = None
    max_keys: int = 256

    def check(self, value: Any, where: str, walk: Walk) -> None:
        if not isinstance(value, dict) or len(value) > self.max_keys:
            raise self.fail(value, where)
        for k in self.required:
            if k not in value:
                raise SchemaError(where, f"has no {k!r} entry")
        known = [k for k in self.fields if k in value]  # in the schema's order: what decides safety comes first
        for k, v in [(k, value[k]) for k in known] + [(k, v) for k, v in value.items() if k not in self.fields]:
            spec = self.fields.get(k)
            if spec is None:
                if self.extra is None:
                    raise SchemaError(f"{where}::{k}", "is not an entry MedXAI's schema knows here "
                                      f"(known: {', '.join(sorted(self.fields)) or 'none'})")
                if not isinstance(k, str) or not k or len(k) > 128 or not all(c.isalnum() or c in "_-. "
                                                                              for c in k):
                    raise SchemaError(where, f"has an entry named {str(k)[:60]!r}; names are letters, digits and _-.")
                spec = self.extra
            walk(v, spec, f"{where}::{k}")

    def describe(self) -> str:
        return "a mapping" + (f" with {', '.join(sorted(self.fields))}" if self.fields else "")


@dataclass(frozen=True)
class Data(Spec):
    """Pure data of bounded size: null, bool, finite numbers, strings, and lists / mappings of them (``depth``
    levels deep). Never a component, expression or name: used for entries a framework only reads."""

    depth: int = 4

    def check(self, value: Any, where: str, walk: Walk) -> None:
        if value is None or isinstance(value, (bool, str)):
            if isinstance(value, str) and len(value) > 4096:
                raise self.fail(value, where)
            return
        if isinstance(value, (int, float)):
            if not math.isfinite(float(value)):
                raise self.fail(value, where)
            return
        if self.depth <= 0 or not isinstance(value, (list, dict)):
            raise self.fail(value, where)
        inner = Data(self.depth - 1)
        items: Iterable[tuple[Any, Any]] = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            walk(v, inner, f"{where}::{k}")

    def describe(self) -> str:
        return f"plain data (numbers, strings, lists, mappings; {self.depth} levels at most)"


@dataclass(frozen=True)
class Ignored(Spec):
    """An entry nobody reads (bundle metadata's free text, changelog, …): accepted as it is."""

    def check(self, value: Any, where: str, walk: Walk) -> None:
        return None

    def describe(self) -> str:
        return "anything"


def plain_walk(value: Any, spec: Spec, where: str) -> None:
    """The recursion for files without references (nnU-Net plans, dataset.json, bundle metadata)."""
    spec.check(value, where, plain_walk)


POS = Num(1e-9, 1e6)
SIZE = Int(1, 4096)
