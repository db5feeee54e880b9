"""Reading records: one line per submitted read, appended to the reader's own file and flushed to disk at once.

Each reader has one append-only file ``reads/<reader>.jsonl`` (so readers sharing a study folder never write the
same file). :func:`append_record` writes a record as one JSON line with a single ``write`` on a file opened for
appending, then ``fsync``s the file (and, when it created the file, its folder) before returning: once
``append_record`` returns, the read survives a killed process or a power cut. Each line carries the sha256 of its
own content, so a line torn by a crash in the middle of the write is recognised: a torn *last* line is the read that
was being submitted when the process died (it never returned) and is ignored; damage anywhere else is refused.
The next append cuts such a torn tail off before it writes (otherwise the new record would be glued to the fragment
and lost, and the line after it would make the whole file look edited); a file written before that rule, where a
whole record follows a fragment on one line, is read back with that record kept.

:class:`ReaderLock` keeps two programs from reading as the same reader at once (an OS file lock, released by the
operating system when the process dies).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

RECORD_VERSION = 1


def _digest(record: dict[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":  # folders cannot be opened for fsync on Windows; NTFS journals the new entry
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_unfinished_tail(fd: int) -> None:
    """Truncate the file after its last whole record: a torn tail (no newline) or a damaged last line is a record
    whose write was cut by a crash (its ``append_record`` never returned; :func:`read_records` ignores it too).
    Called under the reader's lock, before appending."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    os.lseek(fd, 0, os.SEEK_SET)
    content = b""
    while len(content) < size:
        block = os.read(fd, size - len(content))
        if not block:
            break
        content += block
    keep = content.rfind(b"\n") + 1
    if keep and _line_record(content[content.rfind(b"\n", 0, keep - 1) + 1:keep - 1]) is None:
        keep = content.rfind(b"\n", 0, keep - 1) + 1
    if keep < size:
        os.ftruncate(fd, keep)
        os.fsync(fd)


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record durably (see the module docstring). ``record`` must be JSON-serialisable."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    created = not p.exists()
    body = {k: v for k, v in record.items() if k != "sha256"}
    line = json.dumps({**body, "sha256": _digest(body)}, sort_keys=True, ensure_ascii=False) + "\n"
    data = line.encode("utf-8")
    fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    try:
        _cut_unfinished_tail(fd)
        written = os.write(fd, data)
        while written < len(data):  # a regular file takes it in one write; be correct if it does not
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_folder(p.parent)


@dataclass
class RecordFile:
    """The records of one reader's file, and whether a torn last line (an unfinished submit) was dropped."""

    records: list[dict[str, Any]]
    torn_tail: bool = False


def read_records(path: str | os.PathLike) -> RecordFile:
    """Read a reader's records in order; a missing file has none.

    Raises:
        InputError: a damaged line that is not the last one (the file was edited or the disk is failing).
    """
    p = Path(path)
    if not p.exists():
        return RecordFile([])
    raw = p.read_bytes()
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # a file ending in "\n" has an empty tail
    records: list[dict[str, Any]] = []
    torn = bool(tail.strip())
    for n, line in enumerate(complete, start=1):
        record = _line_record(line)
        if record is None:
            if n == len(complete) and not tail.strip():
                torn = True
                continue
            raise InputError(f"{p} line {n}: the record is damaged (its checksum does not match); the reads file "
                             "must not be edited")
        records.append(record)
    return RecordFile(records, torn)


def _line_record(line: bytes) -> dict[str, Any] | None:
    """The record of one line, or None when it is damaged. A line where a whole record follows a torn fragment
    (written before torn tails were cut off) gives that record: the longest suffix that is a whole record with a
    matching checksum."""
    record = _parse(line)
    if record is not None:
        return record
    start = line.find(b"{", 1)
    while start > 0:
        record = _parse(line[start:])
        if record is not None:
            return record
        start = line.find(b"{", start + 1)
    return None


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or "sha256" not in record:
        return None
    digest = record.pop("sha256")
    return record if digest == _digest(record) else None


class ReaderLock:
    """An exclusive OS lock on ``reads/<reader>.lock`` for as long as a reading session is open."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InputError(f"{self.path.stem}: this reader's session is open in another program; close it there "
                             "first (two sessions of one reader would interleave their answers)") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __enter__(self) -> ReaderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
