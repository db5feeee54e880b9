"""``python -m MedXAILib <command>``: the headless entry point.

Each command lives in its own module under :mod:`MedXAILib.commands` and provides ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Errors the user can fix (:class:`MedXAIError`) are printed as one
line on stderr with exit status 2 and no traceback; outputs are written atomically so a failed or cancelled
command leaves no partial file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

from .errors import MedXAIError

# Command name -> module under MedXAILib.commands (in the order `--help` lists them).
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "segment": "segment",
    "classify": "classify",
    "explain": "explain",
    "compare": "compare",
    "evaluate": "evaluate",
    "methods": "methods",
    "models": "models",
    "train": "train",
    "benchmark": "benchmark",
    "speed": "speed",
    "report": "report",
    "study": "study",
    "shortcut": "shortcut",
    "tradeoff": "tradeoff",
}

#: Old command names that still work, with a one-line deprecation note: name -> current name.
ALIASES: dict[str, str] = {"bench": "speed"}


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"MedXAILib.commands.{COMMANDS[name]}")
    except ModuleNotFoundError as exc:
        if exc.name == f"MedXAILib.commands.{COMMANDS[name]}":
            return None
        raise


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """The shared ``--progress {bar,json,none}`` flag."""
    parser.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="bar: a progress bar on stderr; json: one {\"stage\", \"progress\"} object per line on stdout",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medxai" if Path(sys.argv[0]).name == "medxai" else "python -m MedXAILib",  # the console command
        description="MedXAI: segment, classify and explain medical images, and measure how far to trust it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _module=module)
    for old, new in ALIASES.items():
        module = _load(new)
        if module is None:
            continue
        p = sub.add_parser(old, help=f"deprecated name of '{new}'",
                           description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _module=module, _deprecated=(old, new))
    return parser


def _run_command(args: argparse.Namespace) -> int:
    """Check every output the command will write, then run it; its outputs are kept only if it succeeds.

    A command module declares ``OUTPUTS`` (attribute name → :class:`~MedXAILib.outputs.OutputSpec`: each output
    flag and every file it leads to), checked against its inputs and against each other before any work; the
    command may write nothing else. ``RESUMABLE = True`` marks a command whose outputs must persist one by one (a
    killed run resumes from them) instead of being written as one set at the end.
    """
    from . import outputs

    module = getattr(args, "_module", None)
    specs = getattr(module, "OUTPUTS", {})
    with outputs.command_outputs(staged=not getattr(module, "RESUMABLE", False)):
        outputs.check_command_outputs(args, specs)
        code = int(args._run(args) or 0)
        if code != 0:
            raise _CommandFailedError(code)
        return code


class _CommandFailedError(Exception):
    """A command returned a non-zero status: its outputs are discarded like those of a command that raised."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_deprecated", None):
        old, new = args._deprecated
        print(f"note: '{old}' is deprecated and will be removed; use '{new}'", file=sys.stderr)
    try:
        return _run_command(args)
    except MedXAIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _CommandFailedError as failed:
        return failed.code
    except MemoryError:
        print("error: ran out of memory; use a smaller input or cheaper parameters (explain --dry-run shows the "
              "cost); no partial output was kept", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was kept", file=sys.stderr)
        return 130
