"""Reading a model's JSON / YAML files with every size bounded before anything is allocated.

A model file is data from someone else, so reading one must not hang or exhaust memory:

- the path must be a regular file (a named pipe would block the reader forever, ``/dev/zero`` never ends); this is
  checked with ``stat`` before the file is opened;
- at most :data:`MAX_BYTES` are read;
- nesting is at most :data:`MAX_DEPTH` levels, measured on the text before parsing (JSON) and on YAML's node graph
  before it is built into Python objects;
- YAML anchors and aliases may share nodes, but the tree they expand to (what every consumer walks) has at most
  :data:`MAX_NODES` nodes, counted on the node graph without expanding it; a self-referencing alias is refused.

Every refusal is a :class:`~MedXAILib.errors.ModelError` naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import ModelError

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 40
MAX_NODES = 200_000


def read_text_bounded(path: Path, what: str = "model file") -> str:
    """The text of ``path`` (UTF-8), refusing anything but a regular file of at most :data:`MAX_BYTES` bytes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read this {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        raise ModelError(f"{path}: this {what} is {kind}, not a regular file; refusing to read it")
    if st.st_size > MAX_BYTES:
        raise ModelError(f"{path}: this {what} is {st.st_size} bytes; model files are at most {MAX_BYTES} bytes")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read this {what} ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ModelError(f"{path}: this {what} grew past {MAX_BYTES} bytes while it was read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: this {what} is not UTF-8 text") from None


def _bracket_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` outside JSON strings (a bound checked before parsing)."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json_bounded(text: str, path: Path, what: str = "model file") -> Any:
    """JSON text → Python values, refusing nesting deeper than :data:`MAX_DEPTH` before parsing."""
    depth = _bracket_depth(text)
    if depth > MAX_DEPTH:
        raise ModelError(f"{path}: this {what} nests {depth} levels deep; model files nest at most {MAX_DEPTH}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: not valid JSON ({first})") from None


def _yaml_graph_size(root: Any) -> tuple[int, int]:
    """``(expanded node count, depth)`` of a composed YAML node graph, without expanding shared (aliased) nodes.

    Raises:
        ValueError: an alias refers to a node that contains it (a cycle).
    """
    import yaml

    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    state: dict[int, int] = {}  # 1: being visited, 2: done
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        if done:
            size[key] = min(1 + sum(size[id(c)] for c in children), MAX_NODES + 1)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            state[key] = 2
            continue
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:
            raise ValueError("an alias refers to a node that contains it")
        state[key] = 1
        stack.append((node, True))
        for c in children:
            if state.get(id(c)) == 1:
                raise ValueError("an alias refers to a node that contains it")
            if state.get(id(c)) != 2:
                stack.append((c, False))
    return size[id(root)], depth[id(root)]


def parse_yaml_bounded(text: str, path: Path, what: str = "model file") -> Any:
    """YAML text → Python values with ``yaml.SafeLoader``, after bounding the expanded size and depth (see the
    module docstring) on the composed node graph."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ModelError(f"{path}: this {what} nests too deeply (at most {MAX_DEPTH} levels)") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: not valid YAML ({first})") from None
    if root is None:
        return None
    try:
        nodes, depth = _yaml_graph_size(root)
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}; refusing an endless structure") from None
    if nodes > MAX_NODES:
        raise ModelError(f"{path}: this {what}'s anchors and aliases expand to more than {MAX_NODES} entries; "
                         "refusing to expand it")
    if depth > MAX_DEPTH:
        raise ModelError(f"{path}: this {what} nests {depth} levels deep; model files nest at most {MAX_DEPTH}")
    try:
        return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - SafeLoader builds plain values only
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: not valid YAML ({first})") from None


def read_structured(path: Path, what: str = "model file") -> Any:
    """A bounded read of a ``.json`` (or ``.yaml`` / ``.yml``) file as plain Python values."""
    text = read_text_bounded(path, what)
    if path.suffix.lower() in (".yaml", ".yml"):
        return parse_yaml_bounded(text, path, what)
    return parse_json_bounded(text, path, what)


def read_mapping(path: Path, what: str = "model file") -> dict[str, Any]:
    """:func:`read_structured`, which must give a mapping."""
    data = read_structured(path, what)
    if not isinstance(data, dict):
        raise ModelError(f"{path}: a {what} is a mapping of names to entries, not {type(data).__name__}")
    return data
