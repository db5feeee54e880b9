"""Output safety: every output path of a command is checked before any work, and a command's outputs are written
as one set.

Two pieces:

- :func:`check_outputs` validates all output paths of a command up front (before a model is loaded or a file
  read): the extension, that the path is not a folder, that its folder exists (or can be made) and is writable,
  that it is not one of the inputs (compared after resolving symlinks and ``..``, and by inode for hard links),
  and that no two outputs, sidecars (``OUT.json``) or companion data files (``OUT.zraw`` beside ``OUT.mhd``) share
  a path. Each problem is one :class:`~MedXAILib.errors.InputError` naming the flag, the path and the fix.
- :func:`atomic_path` writes one file under its final name inside a hidden temporary folder beside the
  destination (so a ``.mhd`` header names its real ``.zraw``, and files get the user's umask), then renames it into
  place. Inside :func:`command_outputs` (opened by the CLI around every command that is not resumable) the rename is
  deferred: all outputs are staged first and renamed together when the command succeeds; on any failure or
  Ctrl-C every staged file and every folder created for them is removed.
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
from typing import Iterable, Iterator, Mapping

from .errors import InputError

#: Companion data files some formats write beside the named file (MetaImage header + raw data).
COMPANIONS: dict[str, tuple[str, ...]] = {".mhd": (".zraw", ".raw")}
#: The longest file name most file systems take (bytes).
MAX_NAME_BYTES = 255
#: ``args`` attributes that name input files or folders (any command).
INPUT_ARGS = ("input", "reference", "prediction", "heatmap", "region", "model", "dataset")


@dataclass(frozen=True)
class OutputSpec:
    """How one output flag is checked.

    Attributes:
        suffixes: accepted endings (lower case, with the dot), or empty for any.
        sidecars: endings appended to the path for files written beside it (``(".json",)`` → ``OUT.json``).
        folder: the flag names a folder that the command fills (the folder may exist).
    """

    suffixes: tuple[str, ...] = ()
    sidecars: tuple[str, ...] = ()
    folder: bool = False


def file_suffix(path: Path) -> str:
    """The lower-case suffix that names a file's format, double ones (``.nii.gz``, ``.seg.nrrd``) included."""
    name = path.name.lower()
    for double in (".nii.gz", ".seg.nrrd"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser())).resolve()


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _same_file(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
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


@dataclass
class _Input:
    path: Path
    is_folder: bool  # outputs inside an input folder are refused (it would change the input, e.g. a DICOM series)


def input_paths(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """``(flag, path)`` of every existing input named by ``args`` (see :data:`INPUT_ARGS`); ``KIND:PATH`` datasets
    and model folders (each file inside) included."""
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
    return found


def _input_records(inputs: Iterable[tuple[str, Path]]) -> list[tuple[str, _Input]]:
    out: list[tuple[str, _Input]] = []
    for flag, p in inputs:
        if p.is_dir():
            if flag == "--model":  # a model folder: its files are inputs, new files beside them are harmless
                for n, f in enumerate(sorted(p.rglob("*"))):
                    if n > 20000:
                        break
                    if f.is_file():
                        out.append((flag, _Input(f, False)))
            else:
                out.append((flag, _Input(p, True)))
        else:
            out.append((flag, _Input(p, False)))
            for extra in _data_files(p):
                out.append((flag, _Input(extra, False)))
    return out


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
    role: str  # "", "sidecar" or "data file"


def check_outputs(
    outputs: Mapping[str, tuple[str | os.PathLike | None, OutputSpec]],
    inputs: Iterable[tuple[str, Path]] = (),
) -> list[Path]:
    """Validate every output of a command before any work (see the module docstring).

    Args:
        outputs: ``flag → (path or None, spec)``; None paths (options not given) are skipped.
        inputs: ``(flag, path)`` of the command's inputs (see :func:`input_paths`).

    Returns:
        the checked output paths (files and folders) in the order given.

    Raises:
        InputError: a bad extension, a folder where a file is wanted (or the reverse), a missing or unwritable
            parent, an output that is an input, or two outputs on one path.
    """
    records = _input_records(inputs)
    planned: list[_Planned] = []
    checked: list[Path] = []
    for flag, (value, spec) in outputs.items():
        if value is None:
            continue
        text = str(value)
        if not text.strip():
            raise InputError(f"{flag} is empty; give a file name")
        p = Path(text).expanduser()
        names = [_Planned(flag, p, "")]
        if not spec.folder:
            names += [_Planned(flag, Path(str(p) + s), "sidecar") for s in spec.sidecars]
            names += [_Planned(flag, p.with_suffix(c), "data file") for c in COMPANIONS.get(file_suffix(p), ())]
        for item in names:  # first, so that "this is your input" is said before "wrong extension"
            _check_not_input(item, records)
        if spec.folder:
            _check_folder(flag, p)
        else:
            _check_file(flag, p, spec)
        for item in names:
            for other in planned:
                if _same_file(item.path, other.path):
                    raise InputError(
                        f"{_describe(item)} and {_describe(other)} are the same file; "
                        "give each output its own path"
                    )
            planned.append(item)
        checked.append(p)
    return checked


def _describe(item: _Planned) -> str:
    if item.role == "":
        return f"{item.flag} {item.path}"
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
    existing = _nearest_existing(parent)
    if not existing.is_dir():
        raise InputError(f"{flag} {p}: {existing} is a file, not a folder, so nothing can be written under it")
    _probe_writable(existing, f"{flag} {p}")


def _check_not_input(item: _Planned, records: list[tuple[str, _Input]]) -> None:
    out = _resolved(item.path)
    for flag, rec in records:
        src = _resolved(rec.path)
        if rec.is_folder:
            if out == src or src in out.parents:
                raise InputError(
                    f"{_describe(item)} lies inside the input folder {rec.path} ({flag}); writing there would "
                    "change the input. Write the output elsewhere"
                )
        elif _same_file(item.path, rec.path):
            raise InputError(
                f"{_describe(item)} is the input {rec.path} ({flag}); writing it would destroy the input. "
                "Give the output another path"
            )


# ---- staged, set-atomic writing -----------------------------------------------------------------------------------
@dataclass
class _Transaction:
    staged: list[tuple[Path, Path]] = field(default_factory=list)  # (temporary folder, destination)
    created: list[Path] = field(default_factory=list)

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


_ACTIVE: ContextVar[_Transaction | None] = ContextVar("medxai_outputs", default=None)


@contextlib.contextmanager
def command_outputs() -> Iterator[None]:
    """Stage every file written through :func:`atomic_path` inside the block; rename them all into place when it
    succeeds, remove them all (and the folders made for them) when it raises or is interrupted."""
    tx = _Transaction()
    token = _ACTIVE.set(tx)
    try:
        yield
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


def commit_staged() -> None:
    """Move the outputs staged so far into place now (for a command that lists what it wrote before it returns)."""
    tx = _ACTIVE.get()
    if tx is not None:
        tx.commit()


def _make_parents(folder: Path) -> None:
    missing: list[Path] = []
    p = Path(os.path.abspath(folder))
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    tx = _ACTIVE.get()
    if tx is not None:
        tx.created.extend(reversed(missing))


def _move_in(tmpdir: Path, dest: Path) -> None:
    """Rename the files of ``tmpdir`` beside ``dest``: companion data files first, the named file last."""
    files = sorted(tmpdir.iterdir(), key=lambda f: f.name == dest.name)
    for f in files:
        os.replace(f, dest.parent / f.name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s file name; move it (and any companion file written beside it) into
    place when the block succeeds — at once, or, inside :func:`command_outputs`, together with every other output
    of the command when it succeeds."""
    dest = Path(path)
    _make_parents(dest.parent)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{dest.name[:60]}.", suffix=".part", dir=dest.parent))
    try:
        yield tmpdir / dest.name
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    if not (tmpdir / dest.name).exists():
        shutil.rmtree(tmpdir, ignore_errors=True)
        return
    tx = _ACTIVE.get()
    if tx is not None:  # every file a set-atomic command writes waits for the others
        tx.staged.append((tmpdir, dest))
        return
    try:
        _move_in(tmpdir, dest)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def outputs_of(args: argparse.Namespace, specs: Mapping[str, OutputSpec]) -> dict[str, tuple[object, OutputSpec]]:
    """``--flag → (value, spec)`` for a command's declared outputs (``specs`` maps attribute names to specs)."""
    return {f"--{name.replace('_', '-')}": (getattr(args, name, None), spec) for name, spec in specs.items()}


def check_command_outputs(args: argparse.Namespace, specs: Mapping[str, OutputSpec]) -> list[Path]:
    """The CLI's check of a command's declared outputs (``OUTPUTS`` in the command module) against its inputs."""
    return check_outputs(outputs_of(args, specs), input_paths(args))
