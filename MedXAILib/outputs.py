"""Output safety: every file a command will write is known and checked before any work, and written as one set.

Three pieces:

- Each command module declares its outputs in one place, ``OUTPUTS`` (argument name → :class:`OutputSpec`): the
  flag's own file or folder, the sidecars written beside it, and every further file it leads to (``derived``):
  ``cf_<channel>.nii.gz`` beside ``--counterfactual``, ``step<NN>.nii.gz`` in ``--series``, ``<method>.nrrd`` in
  ``compare --output``, a benchmark folder's ``units/`` and ``report.html``. A part of a name that only the run knows
  (a channel, a step, a case) is :data:`~MedXAILib.output_names.WILDCARD`, so the declaration reserves every name of
  that shape. A folder output must declare its files.
- :func:`check_outputs` validates that whole set before a model is loaded or a file read: the extension, that a
  path is not a folder, that its folder exists (or can be made) and is writable, that it is not one of the inputs
  (compared after resolving symlinks and ``..``, and by inode for hard links; a wildcard name against every input
  file that has such a name now), that it does not lie inside an input folder, and that no two files of the set can
  share a path, not even one that differs only in letter case (one file on macOS and Windows; sidecars ``OUT.json``
  and companion data files ``OUT.zraw`` beside ``OUT.mhd`` included). Each
  problem is one :class:`~MedXAILib.errors.InputError` naming the flag, the path and the fix. It returns the
  :class:`OutputPlan`.
- :func:`atomic_path` writes one file under its final name inside a hidden temporary folder beside the destination
  (so a ``.mhd`` header names its real ``.zraw``, and files get the user's umask), then renames it into place. Inside
  :func:`command_outputs` (opened by the CLI around every command) a file that is not in the plan is refused as a
  bug, so a command cannot write what it did not declare; and, unless the command is resumable, the renames are
  deferred: all outputs are staged first and renamed together when the command succeeds; on any failure or Ctrl-C
  every staged file and every folder created for them is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from .errors import InputError
from .output_names import WILDCARD, existing, has_wildcard, matches, may_overlap, resolved, shown

#: Companion data files some formats write beside the named file (MetaImage header + raw data).
COMPANIONS: dict[str, tuple[str, ...]] = {".mhd": (".zraw", ".raw")}
#: The longest file name most file systems take (bytes).
MAX_NAME_BYTES = 255
#: ``args`` attributes that name inputs (any command), and what a folder given there is: ``"folder"`` — nothing may
#: be written inside it (a DICOM series, a dataset); ``"files"`` — its files are inputs, new files beside them are
#: harmless (a model folder, a benchmark run a report reads).
INPUT_ARGS: dict[str, str] = {"input": "folder", "reference": "folder", "prediction": "folder", "heatmap": "folder",
                              "region": "folder", "model": "files", "dataset": "folder", "benchmark": "files"}
#: A folder whose files are inputs is listed up to this many files.
MAX_LISTED_INPUTS = 20000

#: ``derived(path, args)``: every further file a flag leads to, as full paths built from the flag's ``path``.
Derived = Callable[[Path, argparse.Namespace], Iterable["str | os.PathLike[str]"]]


@dataclass(frozen=True)
class OutputSpec:
    """How one output flag is checked.

    Attributes:
        suffixes: accepted endings (lower case, with the dot), or empty for any.
        sidecars: endings appended to the path for files written beside it (``(".json",)`` → ``OUT.json``).
        folder: the flag names a folder that the command fills (the folder may exist).
        derived: the further files the flag leads to (see :data:`Derived`): the files a folder output holds, names
            built from a file output (``cf_<channel>``), a default path of another file (``CASE.pdf``). A part only
            the run knows is :data:`~MedXAILib.output_names.WILDCARD`. Required for a folder output.
    """

    suffixes: tuple[str, ...] = ()
    sidecars: tuple[str, ...] = ()
    folder: bool = False
    derived: Derived | None = None


def file_suffix(path: Path) -> str:
    """The lower-case suffix that names a file's format, double ones (``.nii.gz``, ``.seg.nrrd``) included."""
    name = path.name.lower()
    for double in (".nii.gz", ".seg.nrrd"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _same_file(a: Path, b: Path) -> bool:
    if resolved(a) == resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _probe_writable(folder: Path, what: str) -> None:
    """Create and remove a temporary folder in ``folder``: the only honest test that writing there works."""
    try:
        probe = tempfile.mkdtemp(prefix=".medxai-probe-", dir=folder)
        os.rmdir(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(
            f"{what}: cannot write into the folder {folder} ({reason}); choose a writable folder"
        ) from None


def input_paths(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """``(flag, path)`` of every existing input named by ``args`` (see :data:`INPUT_ARGS`); ``KIND:PATH`` datasets
    (a ``csv:`` manifest with every file it names, :func:`manifest_files`) and ``FOLDER::SERIES_UID`` DICOM inputs
    included."""
    found: list[tuple[str, Path]] = []
    for name in INPUT_ARGS:
        value = getattr(args, name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is None:
                continue
            text = str(v)
            if name == "dataset" and ":" in text:
                text = text.split(":", 1)[1]
            text = text.split("::", 1)[0]  # FOLDER::SERIES_UID
            p = Path(text).expanduser()
            if text and p.exists():
                found.append((f"--{name}", p))
                if name == "dataset" and str(v).startswith("csv:") and p.is_file():
                    found += [(f"--{name}", f) for f in manifest_files(p)]
    return found


def manifest_files(manifest: Path) -> list[Path]:
    """The existing files a ``csv:`` manifest names (its ``image``, ``image:NAME`` and ``label`` columns, relative
    to its folder): inputs of the command as much as the manifest itself. Read leniently (a malformed manifest is
    the dataset reader's to refuse); at most :data:`MAX_LISTED_INPUTS` files."""
    import csv
    import gzip

    out: list[Path] = []
    try:
        opener = gzip.open if manifest.name.lower().endswith(".gz") else open
        with opener(manifest, "rt", newline="", encoding="utf-8-sig", errors="replace") as fh:
            reader = csv.DictReader(fh)
            columns = [c for c in (reader.fieldnames or []) if c and (c.strip() in ("image", "label")
                                                                      or c.strip().startswith("image:"))]
            for row in reader:
                for c in columns:
                    value = (row.get(c) or "").strip()
                    f = Path(value).expanduser() if value else None
                    if f is not None and not f.is_absolute():
                        f = manifest.parent / f
                    if f is not None and f.is_file():
                        out.append(f)
                if len(out) > MAX_LISTED_INPUTS:
                    break
    except (OSError, csv.Error, EOFError, ValueError):
        return out
    return out


class _Inputs:
    """The inputs of a command, indexed for the output checks: input folders by resolved path, files by inode."""

    def __init__(self, inputs: Iterable[tuple[str, Path]]) -> None:
        self.folders: list[tuple[str, Path, Path]] = []  # (flag, as given, resolved)
        self.files: dict[tuple[int, int], tuple[str, Path]] = {}
        self.file_paths: list[tuple[str, Path, Path]] = []  # (flag, as given, resolved)
        for flag, p in inputs:
            kind = INPUT_ARGS.get(flag.lstrip("-").replace("-", "_"), "folder")
            if p.is_dir() and kind == "files":
                for n, f in enumerate(sorted(p.rglob("*"))):
                    if n > MAX_LISTED_INPUTS:
                        break
                    if f.is_file():
                        self._add_file(flag, f)
            elif p.is_dir():
                self.folders.append((flag, p, resolved(p)))
            else:
                self._add_file(flag, p)
                for extra in _data_files(p):
                    self._add_file(flag, extra)

    def _add_file(self, flag: str, p: Path) -> None:
        try:
            st = os.stat(p)
        except OSError:
            return
        self.files.setdefault((st.st_dev, st.st_ino), (flag, p))
        self.file_paths.append((flag, p, resolved(p)))

    def check(self, item: _Planned) -> None:
        """Refuse an output (a wildcard name: each file it names now) that is an input or lies in an input folder."""
        out = resolved(item.path)
        for flag, given, src in self.folders:
            if out == src or src in out.parents:
                raise InputError(
                    f"{_describe(item)} lies inside the input folder {given} ({flag}); writing there would "
                    "change the input. Write the output elsewhere"
                )
        if not self.files and not (self.folders and has_wildcard(item.path)):
            return
        for candidate in existing(item.path) if has_wildcard(item.path) else (item.path,):
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if has_wildcard(item.path) and os.path.isdir(candidate):
                self._check_replaced_folder(item, candidate)
                continue
            hit = self.files.get((st.st_dev, st.st_ino))
            if hit is not None:
                flag, src = hit
                what = f"{_describe(item)}, and {candidate} is such a file:" if has_wildcard(item.path) \
                    else f"{_describe(item)} is"
                raise InputError(f"{what} the input {src} ({flag}); writing it would destroy the input. Give "
                                 f"{item.flag} another path")


    def _check_replaced_folder(self, item: _Planned, folder: Path) -> None:
        """A wildcard name that is a folder now is replaced as a whole (``train``'s ``fold<k>``): no input may lie
        inside it."""
        inside = resolved(folder)
        for flag, given, src in self.folders + self.file_paths:
            if src == inside or inside in src.parents:
                raise InputError(f"{_describe(item)}, and {folder} would be replaced with everything in it, the input "
                                 f"{given} ({flag}) included. Give {item.flag} another path")


def _data_files(path: Path) -> list[Path]:
    """Detached data files of a header (.mhd: ElementDataFile, .nhdr: data file, .hdr: .img)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".hdr":
            return [c for c in (path.with_suffix(".img"), path.with_suffix(".img.gz")) if c.exists()]
        if suffix not in (".mhd", ".nhdr"):
            return []
        with open(path, "rb") as fh:
            head = fh.read(65536).decode("latin-1")
    except OSError:
        return []
    found = []
    for line in head.splitlines():
        key, sep, value = line.partition("=" if suffix == ".mhd" else ":")
        if sep and key.strip().lower() in ("elementdatafile", "data file", "datafile"):
            name = value.strip()
            if name and name.upper() not in ("LOCAL", "LIST") and "%" not in name:
                found.append(path.parent / name)
    return found


@dataclass
class _Planned:
    flag: str
    path: Path
    role: str  # "", "folder", "sidecar", "data file" or "derived"
    origin: Path | None = None  # for a derived name: the flag's own path


@dataclass
class OutputPlan:
    """Every file (and folder) a command will write, as checked by :func:`check_outputs`.

    Attributes:
        paths: the flags' own paths, in the order declared.
        items: every planned path: the flags', their sidecars, companion data files and derived names (which may
            hold :data:`~MedXAILib.output_names.WILDCARD`).
    """

    paths: list[Path] = field(default_factory=list)
    items: list[_Planned] = field(default_factory=list)

    def allows(self, path: str | os.PathLike) -> bool:
        """True when ``path`` is one of the planned files (a flag's own folder is not a file)."""
        for item in self.items:
            if item.role == "folder":
                continue
            if has_wildcard(item.path) and matches(item.path, path):
                return True
            if not has_wildcard(item.path) and resolved(item.path) == resolved(path):
                return True
        return False

    def describe(self) -> list[str]:
        """The planned files as a user reads them (wildcards written ``*``)."""
        return [shown(i.path) for i in self.items if i.role != "folder"]


class UndeclaredOutputError(RuntimeError):
    """A command wrote a file it did not declare in ``OUTPUTS``: a bug in the command, never the user's fault."""


def check_outputs(
    outputs: Mapping[str, tuple[str | os.PathLike | None, OutputSpec]],
    inputs: Iterable[tuple[str, Path]] = (),
    args: argparse.Namespace | None = None,
) -> OutputPlan:
    """Validate every output of a command before any work (see the module docstring).

    Args:
        outputs: ``flag → (path or None, spec)``; None paths (options not given) are skipped.
        inputs: ``(flag, path)`` of the command's inputs (see :func:`input_paths`).
        args: the command's arguments, passed to each spec's ``derived`` (without them derived names are not
            planned).

    Returns:
        the :class:`OutputPlan`: the flags' paths in the order given and every file they lead to.

    Raises:
        InputError: a bad extension, a folder where a file is wanted (or the reverse), a missing or unwritable
            parent, an output that is an input or lies in an input folder, or two outputs that can share a path.
    """
    known = _Inputs(inputs)
    plan = OutputPlan()
    for flag, (value, spec) in outputs.items():
        if value is None:
            continue
        text = str(value)
        if not text.strip():
            raise InputError(f"{flag} is empty; give a {'folder' if spec.folder else 'file'} name")
        if WILDCARD in text:
            raise InputError(f"{flag}: a path cannot hold a NUL character")
        p = Path(text).expanduser()
        names = [_Planned(flag, p, "folder" if spec.folder else "")]
        if not spec.folder:
            names += [_Planned(flag, Path(str(p) + s), "sidecar") for s in spec.sidecars]
            names += [_Planned(flag, p.with_suffix(c), "data file") for c in COMPANIONS.get(file_suffix(p), ())]
        if spec.derived is not None and args is not None:
            names += [_Planned(flag, Path(d), "derived", p) for d in spec.derived(p, args)]
        for item in names:  # first, so that "this is your input" is said before "wrong extension"
            known.check(item)
        if spec.folder:
            _check_folder(flag, p)
        else:
            _check_file(flag, p, spec)
        for item in names:
            for other in plan.items:
                if _overlap(item, other):
                    may = "can be" if has_wildcard(item.path) or has_wildcard(other.path) else "are"
                    raise InputError(
                        f"{_describe(item)} and {_describe(other)} {may} the same file; give each output its own path"
                    )
                if _overlap(item, other, folded=True):
                    raise InputError(
                        f"{_describe(item)} and {_describe(other)} differ only in letter case, so they are one file "
                        "on a case-insensitive file system (macOS, Windows); give each output its own name"
                    )
            plan.items.append(item)
        plan.paths.append(p)
    return plan


def _overlap(a: _Planned, b: _Planned, folded: bool = False) -> bool:
    """Whether two planned paths can name one file (``folded``: once letter case is ignored)."""
    if folded:
        x, y = str(resolved(a.path)).casefold(), str(resolved(b.path)).casefold()
        return may_overlap(x, y) if has_wildcard(x) or has_wildcard(y) else x == y
    if has_wildcard(a.path) or has_wildcard(b.path):
        return may_overlap(a.path, b.path)
    return _same_file(a.path, b.path)


def _describe(item: _Planned) -> str:
    if item.role in ("", "folder"):
        return f"{item.flag} {item.path}"
    if item.role == "derived" and has_wildcard(item.path):
        return f"{item.flag} {item.origin} also writes files named {shown(item.path)} (* as the run finds it)"
    if item.role == "derived":
        return f"the file {item.path} that {item.flag} {item.origin} writes"
    return f"the {item.role} {item.path} written beside {item.flag}"


def _check_file(flag: str, p: Path, spec: OutputSpec) -> None:
    name = p.name.lower()
    if spec.suffixes and file_suffix(p) not in spec.suffixes and not any(name.endswith(s) for s in spec.suffixes):
        raise InputError(f"{flag} {p}: the output must end with one of {', '.join(spec.suffixes)}")
    if p.is_dir():
        raise InputError(f"{flag} {p} is a folder; give a file name inside it (e.g. {p / ('out' + spec.suffixes[0])})"
                         if spec.suffixes else f"{flag} {p} is a folder; give a file name")
    if p.exists() and not p.is_file():
        raise InputError(f"{flag} {p} exists and is not a regular file (a device or pipe); choose another path")
    if len(p.name.encode("utf-8", "surrogateescape")) + 8 > MAX_NAME_BYTES:
        raise InputError(f"{flag} {p}: the file name is longer than the file system allows; shorten it")
    _check_parent(flag, p)


def _check_folder(flag: str, p: Path) -> None:
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {p} exists and is not a folder; give a folder path")
    if p.is_dir():
        _probe_writable(p, f"{flag} {p}")
    else:
        _check_parent(flag, p)


def _check_parent(flag: str, p: Path) -> None:
    parent = Path(os.path.abspath(p)).parent
    existing_parent = _nearest_existing(parent)
    if not existing_parent.is_dir():
        raise InputError(f"{flag} {p}: {existing_parent} is a file, not a folder, so nothing can be written under it")
    _probe_writable(existing_parent, f"{flag} {p}")


# ---- staged, set-atomic writing -----------------------------------------------------------------------------------
@dataclass
class _Transaction:
    staged_writes: bool = True  # False for a resumable command: each file goes into place at once
    plan: OutputPlan | None = None  # once set, a file outside it is refused (UndeclaredOutputError)
    staged: list[tuple[Path, Path]] = field(default_factory=list)  # (temporary folder, destination)
    created: list[Path] = field(default_factory=list)
    building: dict[Path, Path] = field(default_factory=dict)  # staged_folder: hidden folder -> its destination

    def commit(self) -> None:
        try:
            for tmpdir, dest in self.staged:
                _move_in(tmpdir, dest)
        finally:
            for tmpdir, _ in self.staged:
                shutil.rmtree(tmpdir, ignore_errors=True)
            self.staged.clear()

    def discard(self) -> None:
        for tmpdir, _ in self.staged:
            shutil.rmtree(tmpdir, ignore_errors=True)
        self.staged.clear()
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only empty folders go

    def building_folder_of(self, path: Path) -> tuple[Path, Path] | None:
        """``(hidden folder, destination)`` of the :func:`staged_folder` that ``path`` is written into, else None."""
        p = resolved(path)
        for hidden, dest in self.building.items():
            if p.is_relative_to(hidden):
                return hidden, dest
        return None

    def require(self, dest: Path) -> None:
        inside = self.building_folder_of(dest)
        if inside is not None:  # checked as the file it becomes when the folder is moved into place
            dest = inside[1] / resolved(dest).relative_to(inside[0])
        if self.plan is not None and not self.plan.allows(dest):
            raise UndeclaredOutputError(
                f"{dest} is not among the outputs the command declared ({', '.join(self.plan.describe()) or 'none'});"
                " add it to the command's OUTPUTS"
            )


_ACTIVE: ContextVar[_Transaction | None] = ContextVar("medxai_outputs", default=None)


@contextlib.contextmanager
def command_outputs(staged: bool = True) -> Iterator[_Transaction]:
    """The outputs of one command: every file written through :func:`atomic_path` inside the block must be in the
    transaction's ``plan`` once it is set (see :func:`check_command_outputs`).

    ``staged`` (the default): rename them all into place when the block succeeds, remove them all (and the folders
    made for them) when it raises or is interrupted. Not ``staged`` (a resumable command, whose files persist one
    by one): each file goes into place when written; on failure only the folders made and left empty are removed.
    A block opened inside another (a resumable command writing its result files as one set) keeps the outer
    block's plan: its files must be declared too.
    """
    outer = _ACTIVE.get()
    tx = _Transaction(staged_writes=staged)
    if outer is not None:  # a set written inside a command (e.g. a resumable one's results): still only its plan
        tx.plan, tx.building = outer.plan, outer.building
    token = _ACTIVE.set(tx)
    try:
        yield tx
    except BaseException:
        tx.discard()
        raise
    else:
        try:
            tx.commit()
        except OSError as exc:
            tx.discard()
            raise InputError(f"could not move the outputs into place ({exc.strerror or exc})") from None
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def scratch_folder(prefix: str = "medxai-scratch-") -> Iterator[Path]:
    """A private temporary folder for a command's working files (not outputs), removed when the block ends.

    Files written inside the block through :func:`atomic_path` are outside the command's declared outputs: the
    command's transaction is set aside for the block (they go into place at once and are removed with the folder).
    Only for data the command itself makes and throws away, e.g. the map store the ``speed`` suite times.
    """
    token = _ACTIVE.set(None)
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)
    finally:
        _ACTIVE.reset(token)


def commit_staged() -> None:
    """Move the outputs staged so far into place now (for a command that lists what it wrote before it returns)."""
    tx = _ACTIVE.get()
    if tx is not None:
        tx.commit()


def make_folder(folder: str | os.PathLike) -> Path:
    """``mkdir -p`` for an output folder; inside :func:`command_outputs` the folders it creates are removed again
    (when left empty) if the command fails."""
    folder = Path(folder)
    missing: list[Path] = []
    p = Path(os.path.abspath(folder))
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    tx = _ACTIVE.get()
    if tx is not None:
        tx.created.extend(reversed(missing))
    return folder


def _move_in(tmpdir: Path, dest: Path) -> None:
    """Rename the files of ``tmpdir`` beside ``dest``: companion data files first, the named file last."""
    files = sorted(tmpdir.iterdir(), key=lambda f: f.name == dest.name)
    for f in files:
        os.replace(f, dest.parent / f.name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s file name; move it (and any companion file written beside it) into
    place when the block succeeds — at once, or, inside a staged :func:`command_outputs`, together with every other
    output of the command when it succeeds.

    Raises:
        UndeclaredOutputError: inside :func:`command_outputs`, ``path`` is not in the command's plan (a bug).
    """
    dest = Path(path)
    tx = _ACTIVE.get()
    if tx is not None:
        tx.require(dest)
    make_folder(dest.parent)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{dest.name[:60]}.", suffix=".part", dir=dest.parent))
    try:
        yield tmpdir / dest.name
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    if not (tmpdir / dest.name).exists():
        shutil.rmtree(tmpdir, ignore_errors=True)
        return
    in_building_folder = tx is not None and tx.building_folder_of(dest) is not None  # that folder is the unit
    if tx is not None and tx.staged_writes and not in_building_folder:  # every file waits for the others
        tx.staged.append((tmpdir, dest))
        return
    try:
        _move_in(tmpdir, dest)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Build a whole output folder in a hidden sibling and move it into place with one rename when the block
    succeeds (``folder`` must be absent or empty); on failure the hidden folder is removed. For a command whose
    folder is one unit (a study: its files are hashed into its protocol before it appears). Inside
    :func:`command_outputs`, a file written under the yielded path through :func:`atomic_path` is checked against
    the plan as the file it becomes under ``folder``, and goes into the hidden folder at once.
    """
    dest = Path(folder)
    make_folder(dest.parent)
    hidden = Path(tempfile.mkdtemp(prefix=f".{dest.name[:60]}.", suffix=".part", dir=dest.parent))
    tx = _ACTIVE.get()
    if tx is not None:
        tx.building[resolved(hidden)] = resolved(dest)
    try:
        yield hidden
        if dest.is_dir():
            dest.rmdir()  # empty (the output checks refuse a folder with files); a file appearing meanwhile fails
        os.replace(hidden, dest)
    except BaseException:
        shutil.rmtree(hidden, ignore_errors=True)
        raise
    finally:
        if tx is not None:
            tx.building.pop(resolved(hidden), None)


def outputs_of(args: argparse.Namespace, specs: Mapping[str, OutputSpec]) -> dict[str, tuple[object, OutputSpec]]:
    """``--flag → (value, spec)`` for a command's declared outputs (``specs`` maps attribute names to specs)."""
    return {f"--{name.replace('_', '-')}": (getattr(args, name, None), spec) for name, spec in specs.items()}


def check_command_outputs(args: argparse.Namespace, specs: Mapping[str, OutputSpec]) -> OutputPlan:
    """The CLI's check of a command's declared outputs (``OUTPUTS`` in the command module), derived names included,
    against its inputs. Inside :func:`command_outputs` the plan becomes the set of files the command may write.

    Raises:
        InputError: see :func:`check_outputs`.
        TypeError: a folder output without ``derived`` (a command must say what it writes into a folder).
    """
    undeclared = [name for name, spec in specs.items() if spec.folder and spec.derived is None]
    if undeclared:
        raise TypeError(f"folder output(s) {', '.join(undeclared)} declare no files (OutputSpec.derived)")
    plan = check_outputs(outputs_of(args, specs), input_paths(args), args)
    tx = _ACTIVE.get()
    if tx is not None:
        tx.plan = plan
    return plan
