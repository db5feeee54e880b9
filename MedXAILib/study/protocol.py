"""The study folder and its protocol (``study.json``): arms, readers, design, reading lists and file hashes.

Layout of a study folder::

    study.json                 the protocol (this module), written last by `study create`
    cases/<key>/…              what readers may see: image_<channel>.nii.gz, ai.json, map_<method>.nrrd,
                               counterfactual_<channel>.nii.gz (only what some arm shows)
    truth/<key>.json, .nii.gz  what readers never see: the truth, the reference mask, where each map points
    reads/<reader>.jsonl       the readers' answers, one append-only file per reader (:mod:`.records`)

Cases live under random keys and are shown under random reading ids (one per reader, arm and case), never under a
file name; ``study.json`` (which the reading loop loads) names no case and holds no truth: both are in ``truth/``.
``study.json`` records the sha256 of every file under ``cases/`` and ``truth/``; :func:`load_study` refuses a study
whose files changed, disappeared or were added since creation.

An arm is ``image`` or ``ai``, optionally followed by ``+METHOD`` for each explanation shown (``ai+gradcam``,
``ai+counterfactual``, ``image+gradcam``): ``ai`` shows the model's probability and decision, each method its map.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

FORMAT = "medxai-reader-study/1"
PROTECTED = ("cases", "truth")  # every file below these is hashed in study.json
READING_ID_ALPHABET = "ACDEFHJKLMNPRTUVWXY347"  # no 0/O, 1/I, 2/Z, 5/S, 6/G, 8/B look-alikes
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Arm:
    """What one arm shows: the image always; the AI's output when ``ai``; one map per method."""

    name: str
    ai: bool
    methods: tuple[str, ...]

    @property
    def shows_map(self) -> bool:
        return any(m != "counterfactual" for m in self.methods)


def parse_arm(name: str) -> Arm:
    """``ai+gradcam`` → ``Arm(ai=True, methods=("gradcam",))``; raises InputError for a malformed name."""
    parts = [p.strip() for p in name.strip().split("+")]
    if not parts or parts[0] not in ("image", "ai") or any(not p for p in parts):
        raise InputError(f"arm {name!r}: an arm is 'image' or 'ai', optionally followed by +METHOD for each "
                         "explanation shown (e.g. ai+gradcam, ai+counterfactual)")
    methods = tuple(parts[1:])
    if len(set(methods)) != len(methods) or "image" in methods or "ai" in methods:
        raise InputError(f"arm {name!r}: name each explanation once, after 'image' or 'ai'")
    return Arm(name.strip(), parts[0] == "ai", methods)


def check_name(text: str, what: str) -> str:
    """A reader or arm name usable as a file name: letters, digits, ``_ . -`` (and ``+`` for arms)."""
    core = text.replace("+", "_") if what == "arm" else text
    if not _NAME.match(core):
        raise InputError(f"{what} {text!r}: use letters, digits, '_', '.' or '-' (at most 64 characters)")
    return text


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_files(folder: Path) -> dict[str, str]:
    """``relative path → sha256`` of every file under the protected sub-folders of a study."""
    out: dict[str, str] = {}
    for sub in PROTECTED:
        base = folder / sub
        if base.is_dir():
            for p in sorted(base.rglob("*")):
                if p.is_file():
                    out[p.relative_to(folder).as_posix()] = sha256(p)
    return out


def williams_orders(n: int) -> list[list[int]]:
    """Arm orders balanced for position and first-order carry-over (a Williams design): n rows for even n, 2n for
    odd n. Row ``i`` is the order in which reader ``i`` (cycling) reads the arms."""
    if n == 1:
        return [[0]]
    first = [0]
    lo, hi = 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(v + i) % n for v in first] for i in range(n)]
    return rows if n % 2 == 0 else rows + [row[::-1] for row in rows]


def reading_lists(
    readers: list[str], arms: list[str], cases: list[str], truth: dict[str, int], design: str, sessions: int,
    seed: int, groups: int = 1,
) -> tuple[dict[str, list[list[dict[str, str]]]], dict[str, int]]:
    """Each reader's sessions: ``reader → [[{"reading_id", "arm", "case"}, …] per session]``, and reader → group.

    Fully crossed: every reader reads every case under every arm. Split-plot: readers are dealt round-robin into
    ``groups`` groups and the cases into as many blocks (stratified by truth); a group reads its block under every
    arm. Arms are read in separate sessions (``sessions`` is a multiple of the number of arms: each arm's cases are
    split into ``sessions / arms`` consecutive sessions), in a Williams-balanced arm order that cycles over readers;
    case order is shuffled per session with ``seed``. Reading ids are random, unique in the study.
    """
    rng = np.random.default_rng(seed)
    n_arms = len(arms)
    if sessions < n_arms or sessions % n_arms:
        raise InputError(f"--sessions {sessions}: arms are read in separate sessions, so the number of sessions must "
                         f"be a multiple of the number of arms ({n_arms})")
    per_arm = sessions // n_arms
    if design == "fully-crossed":
        groups = 1
    elif not 2 <= groups <= len(readers):
        raise InputError(f"--groups {groups}: a split-plot design needs between 2 and {len(readers)} reader groups")
    group_of = {r: i % groups for i, r in enumerate(readers)}
    blocks: list[list[str]] = [[] for _ in range(groups)]
    for cls in (1, 0):  # stratified: deal the cases with and without the finding separately
        members = [c for c in cases if truth[c] == cls]
        for i, c in enumerate(rng.permutation(len(members))):
            blocks[i % groups].append(members[c])
    for g, block in enumerate(blocks):
        classes = {truth[c] for c in block}
        if classes != {0, 1} or len(block) < 2 * per_arm:
            kinds = "both classes" if len(classes) == 2 else "one class"
            raise InputError(f"case block {g + 1} of {groups} has {len(block)} case(s) ({kinds}); each block needs "
                             "cases with and without the finding and enough cases for its sessions")
    orders = williams_orders(n_arms)
    used: set[str] = set()

    def new_id() -> str:
        while True:
            rid = "".join(rng.choice(list(READING_ID_ALPHABET), size=6))
            if rid not in used:
                used.add(rid)
                return rid

    lists: dict[str, list[list[dict[str, str]]]] = {}
    for i, reader in enumerate(readers):
        block = sorted(blocks[group_of[reader]], key=cases.index)
        sess: list[list[dict[str, str]]] = []
        for a in orders[i % len(orders)]:
            for chunk in np.array_split(np.asarray(block, dtype=object), per_arm):
                order = rng.permutation(len(chunk))
                sess.append([{"reading_id": new_id(), "arm": arms[a], "case": str(chunk[k])} for k in order])
        lists[reader] = sess
    return lists, group_of


@dataclass
class Study:
    """A study folder and its protocol (``study.json`` as a dict)."""

    folder: Path
    protocol: dict[str, Any]

    @property
    def arms(self) -> list[str]:
        return list(self.protocol["arms"])

    @property
    def readers(self) -> list[str]:
        return list(self.protocol["readers"])

    @property
    def study_id(self) -> str:
        return str(self.protocol["study_id"])

    def case(self, key: str) -> dict[str, Any]:
        return self.protocol["cases"][key]

    def reads_path(self, reader: str) -> Path:
        return self.folder / "reads" / f"{reader}.jsonl"

    def truth(self) -> dict[str, dict[str, Any]]:
        """Case key → its hidden truth file (``case``: the manifest's id, ``truth``, ``ai_decision``, ``map_hits``,
        ``reference``); for analysis only: ``study.json``, which the reading loop loads, holds neither."""
        return {k: json.loads((self.folder / "truth" / f"{k}.json").read_text()) for k in self.protocol["cases"]}


def verify_files(study: Study) -> None:
    """Refuse a study whose protected files changed since creation (one InputError naming the first difference)."""
    recorded: dict[str, str] = study.protocol.get("files", {})
    present = hash_files(study.folder)
    for rel, digest in recorded.items():
        if rel not in present:
            raise InputError(f"{study.folder}: {rel} is missing; the study's files changed since it was created")
        if present[rel] != digest:
            raise InputError(f"{study.folder}: {rel} changed since the study was created (sha256 differs); "
                             "a study's cases and truth must stay as created")
    extra = sorted(set(present) - set(recorded))
    if extra:
        raise InputError(f"{study.folder}: {extra[0]} was added after the study was created; remove it")


def load_study(folder: str | os.PathLike, verify: bool = True) -> Study:
    """Read ``study.json`` and check its form (and, with ``verify``, every file's hash)."""
    p = Path(folder)
    path = p / "study.json"
    if not path.is_file():
        raise InputError(f"{p}: not a study folder (no study.json); make one with `study create`")
    try:
        protocol = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable study protocol ({exc})") from None
    if not isinstance(protocol, dict) or protocol.get("format") != FORMAT:
        raise InputError(f"{path}: not a MedXAI study protocol (format {FORMAT} expected)")
    for key in ("study_id", "arms", "readers", "design", "cases", "reading_lists", "files", "answer_form"):
        if key not in protocol:
            raise InputError(f"{path}: the protocol has no {key!r}; it was not written by `study create`")
    _check_names_and_paths(protocol, path)
    study = Study(p, protocol)
    if verify:
        verify_files(study)
    return study


_CASE_KEY = re.compile(r"^k[0-9a-f]{6}$")


def _check_names_and_paths(protocol: dict[str, Any], path: Path) -> None:
    """``study.json`` is not hashed (it holds the hashes), so what it names is checked again on every load: reader
    and arm names are file-name safe (a reader's reads go to ``reads/<reader>.jsonl``), case keys have the form
    ``study create`` gives them, and every material path is a plain relative path inside ``cases/`` or ``truth/``:
    an edited protocol can make the reading loop read or write nothing outside the study folder."""
    def refuse(what: str) -> InputError:
        return InputError(f"{path}: {what}; the protocol was changed after `study create`")

    readers, arms, cases = protocol["readers"], protocol["arms"], protocol["cases"]
    if not (isinstance(readers, list) and isinstance(arms, list) and isinstance(cases, dict)):
        raise refuse("readers, arms or cases have the wrong type")
    try:
        for reader in readers:
            check_name(str(reader), "reader")
        for arm in arms:
            check_name(str(arm), "arm")
    except InputError as exc:
        raise refuse(str(exc)) from None
    lists = protocol["reading_lists"]
    if not isinstance(lists, dict) or not set(lists) <= set(map(str, readers)):
        raise refuse("the reading lists name a reader the protocol does not have")
    for key, case in cases.items():
        if not _CASE_KEY.match(str(key)) or not isinstance(case, dict):
            raise refuse(f"case key {key!r} is not one `study create` makes")
        for rel in _material_paths(case.get("material", {})):
            parts = Path(rel).parts
            if Path(rel).is_absolute() or ".." in parts or not parts or parts[0] not in PROTECTED:
                raise refuse(f"case {key} names {rel!r}, outside the study's cases/ and truth/ folders")


def _material_paths(material: Any) -> list[str]:
    """Every path string inside a case's ``material`` (lists and dicts of paths; JSON scalars otherwise)."""
    if isinstance(material, str):
        return [material]
    if isinstance(material, dict):
        return [p for v in material.values() for p in _material_paths(v)]
    if isinstance(material, list):
        return [p for v in material for p in _material_paths(v)]
    return []
