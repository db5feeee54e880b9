"""Keeping native libraries' stderr chatter out of the user's terminal.

ITK and the C libraries under it (niftilib, libpng, libjpeg, GDCM, MetaIO) print straight to file descriptor 2, before
and beside the exception SimpleITK raises, so a refused file shows a screen of C++ paths above the one ``error:``
line. :func:`captured_native_stderr` points descriptor 2 at a temporary file for the duration of one native call;
the caller folds what was said into its own message (on failure) or shows it as ``warning:`` lines (on success).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator

_ITK_LOCATION = re.compile(r"^(WARNING|ERROR): In .*, line \d+\s*$")
_ITK_OBJECT = re.compile(r"^\w+ \(0x[0-9a-f]+\): ")
# source paths, matrix dumps and bare numbers: nothing a user can act on
_NOISE = re.compile(r"\.(hxx|cxx|h|cpp|c):|^[\[\]\s\d.eE+-]*$|^\w+ = \[|^M is \d+x\d+|^nan\b", re.IGNORECASE)


@dataclass
class Captured:
    """What a native call printed on stderr (filled when the ``with`` block ends)."""

    text: str = ""

    def lines(self) -> list[str]:
        """The messages without ITK's source-location lines and object addresses."""
        out: list[str] = []
        for line in self.text.splitlines():
            line = line.strip()
            if not line or _ITK_LOCATION.match(line) or _NOISE.search(line):
                continue
            line = _ITK_OBJECT.sub("", line)
            if line not in out:
                out.append(line)
        return out

    def warn(self, what: str) -> None:
        """Show the captured messages as ``warning:`` lines naming ``what`` (the file being read)."""
        for line in self.lines()[:5]:
            print(f"warning: {what}: {line}", file=sys.stderr)


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[Captured]:
    """Redirect descriptor 2 (C/C++ stderr) into a buffer while the block runs."""
    result = Captured()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (embedded interpreters): nothing to capture
        yield result
        return
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield result
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            result.text = buf.read(1 << 16).decode("utf-8", "replace")
