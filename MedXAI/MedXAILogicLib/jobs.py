"""Background jobs: run a command in a separate process, read its progress, cancel it.

The panel never blocks: a :class:`JobRunner` starts the process and returns a :class:`Job` at once. Two reader
threads put the child's stdout and stderr lines into a queue; the GUI drains it from a timer with
:meth:`Job.events` (no Qt here, so the same code is tested with a plain subprocess). Progress lines are the
``{"stage": ..., "progress": ...}`` JSON objects that ``python -m MedXAILib ... --progress json`` prints; a failed
command's last ``error: <message>`` line on stderr becomes :attr:`JobResult.error`.

Cancelling kills the whole process tree: the child starts in its own process group (POSIX) or with
``CREATE_NEW_PROCESS_GROUP`` and ``taskkill /T`` (Windows), so grandchildren (data loaders, workers) go too.

The runner is an interface so that the logic can be given another one (for example one that records commands).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

#: Seconds a cancelled process tree gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE_S = 2.0


@dataclass
class JobEvent:
    """Something a job reported.

    Attributes:
        kind: ``"progress"`` (``fraction`` and ``stage`` set), ``"log"`` (``text`` set; ``stream`` is ``stdout`` or
            ``stderr``) or ``"finished"`` (the job has ended; see :meth:`Job.wait`).
    """

    kind: str
    fraction: float = 0.0
    stage: str = ""
    text: str = ""
    stream: str = "stdout"


@dataclass
class JobResult:
    """How a job ended.

    Attributes:
        returncode: the process's exit status (negative: killed by that signal on POSIX).
        cancelled: True when :meth:`Job.cancel` ended it.
        error: a one-line message for the user when it failed (``None`` on success or cancel).
        stdout: the stdout lines that were not progress lines.
        stderr: all stderr lines.
        seconds: wall time from start to end.
    """

    returncode: int
    cancelled: bool = False
    error: str | None = None
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.cancelled


class Job(Protocol):
    """A running (or finished) background command."""

    def events(self) -> list[JobEvent]:
        """Everything reported since the last call (never blocks)."""

    def is_running(self) -> bool:
        """True until the process and its output readers have finished."""

    def cancel(self) -> None:
        """Kill the process tree; :meth:`wait` then returns a cancelled result."""

    def wait(self, timeout: float | None = None) -> JobResult | None:
        """Block until the job ends (or ``timeout`` seconds pass: ``None``)."""


class JobRunner(Protocol):
    """Starts jobs. Inject another implementation to test or to run commands elsewhere."""

    def start(self, args: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None) -> Job:
        """Start ``args`` (executable first) and return at once."""


def parse_progress(line: str) -> tuple[float, str] | None:
    """``(fraction, stage)`` from a ``{"stage": ..., "progress": ...}`` line; ``None`` for any other line."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or "progress" not in data:
        return None
    try:
        fraction = float(data["progress"])
    except (TypeError, ValueError):
        return None
    return min(max(fraction, 0.0), 1.0), str(data.get("stage", ""))


def error_message(stderr: Sequence[str], returncode: int) -> str:
    """The user-facing message of a failed command.

    The CLI prints ``error: <one line>`` for problems a user can fix; that line (its last one) is returned without
    the prefix. Otherwise (a crash) the last non-empty stderr line, such as a traceback's final line, is used.
    """
    for line in reversed(stderr):
        if line.startswith("error:"):
            return line[len("error:") :].strip()
    for line in reversed(stderr):
        if line.strip():
            return f"the command failed (exit status {returncode}): {line.strip()}"
    return f"the command failed with exit status {returncode}"


def is_out_of_memory(message: str | None) -> bool:
    """Does this error say that the GPU (or CPU) ran out of memory?"""
    text = (message or "").lower()
    return "out of memory" in text or "outofmemory" in text or "cuda error: out of memory" in text


class SubprocessJob:
    """A :class:`Job` backed by :class:`subprocess.Popen` with two reader threads and a watcher thread."""

    def __init__(self, args: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None) -> None:
        self.args = [str(a) for a in args]
        self._queue: queue.Queue[JobEvent] = queue.Queue()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._cancelled = False
        self._result: JobResult | None = None
        self._start = time.monotonic()
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | 0x08000000  # CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True  # own process group: killpg reaches grandchildren
        self.process = subprocess.Popen(
            self.args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, "stderr"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    # -- threads -----------------------------------------------------------------------------------------------
    def _read(self, stream, name: str) -> None:  # noqa: ANN001 - a text stream
        try:
            for raw in iter(stream.readline, ""):
                line = raw.rstrip("\r\n")
                if name == "stdout":
                    progress = parse_progress(line)
                    if progress is not None:
                        self._queue.put(JobEvent("progress", fraction=progress[0], stage=progress[1]))
                        continue
                    with self._lock:
                        self._stdout.append(line)
                else:
                    with self._lock:
                        self._stderr.append(line)
                self._queue.put(JobEvent("log", text=line, stream=name))
        except (OSError, ValueError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass

    def _watch(self) -> None:
        returncode = self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5.0)
        if any(r.is_alive() for r in self._readers):
            # a leftover grandchild still holds the pipes open
            self._kill_tree()
            for reader in self._readers:
                reader.join(timeout=5.0)
        with self._lock:
            stdout, stderr = list(self._stdout), list(self._stderr)
        if self._cancelled:
            error = None
        elif returncode != 0:
            error = error_message(stderr, returncode)
        else:
            error = None
        self._result = JobResult(returncode, self._cancelled, error, stdout, stderr, time.monotonic() - self._start)
        self._queue.put(JobEvent("finished"))
        self._done.set()

    # -- Job interface -------------------------------------------------------------------------------------------
    def events(self) -> list[JobEvent]:
        out: list[JobEvent] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def is_running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> JobResult | None:
        if not self._done.wait(timeout):
            return None
        return self._result

    def cancel(self) -> None:
        if self._done.is_set():
            return
        self._cancelled = True
        self._kill_tree()
        self._done.wait(TERMINATE_GRACE_S + 10.0)

    def _kill_tree(self) -> None:
        pid = self.process.pid
        descendants = _descendants(pid)
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, check=False)
        else:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + TERMINATE_GRACE_S
            while time.monotonic() < deadline and _group_alive(pid):
                time.sleep(0.05)
            _signal_group(pid, signal.SIGKILL)
        for child in descendants:  # any that left the process group
            try:
                child.kill()
            except Exception:  # noqa: BLE001 - already gone or not ours
                pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _descendants(pid: int) -> list:
    """Descendant processes via psutil when it is installed (Slicer ships it); empty otherwise."""
    try:
        import psutil
    except ImportError:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - the process has already ended
        return []


class SubprocessJobRunner:
    """The default :class:`JobRunner`: a local subprocess per job."""

    def start(self, args: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None) -> Job:
        return SubprocessJob(args, cwd=cwd, env=env)


def python_command(
    executable: str | None = None, which: Callable[[str], str | None] | None = None, is_file: Callable[[str], bool]
    | None = None,
) -> list[str]:
    """The Python interpreter to run the CLI with, as a command list.

    Inside Slicer ``sys.executable`` is the application itself (``SlicerApp-real``), not Python: the interpreter is
    ``PythonSlicer``, which Slicer puts on ``PATH`` (as ``slicer.util`` finds it) and ships beside the application.
    Outside Slicer (tests, a plain Python) ``sys.executable`` is used.

    Raises:
        RuntimeError: running inside an application whose ``PythonSlicer`` cannot be found.
    """
    import shutil

    executable = executable if executable is not None else sys.executable
    which = which or shutil.which
    is_file = is_file or os.path.isfile
    found = which("PythonSlicer")
    if found:
        return [found]
    name = os.path.basename(executable).lower()
    if name.startswith(("python", "pythonslicer")):
        return [executable]
    suffix = ".exe" if name.endswith(".exe") else ""
    folder = os.path.dirname(executable)
    for candidate in (os.path.join(folder, "PythonSlicer" + suffix),
                      os.path.join(folder, "..", "bin", "PythonSlicer" + suffix)):
        if is_file(candidate):
            return [os.path.normpath(candidate)]
    raise RuntimeError(
        f"cannot find Slicer's Python (PythonSlicer) beside {executable}; the background job cannot start. "
        "Reinstall Slicer, or start it with its launcher so that PythonSlicer is on PATH"
    )
