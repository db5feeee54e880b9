"""Refresh ``Testing/slicer_api/slicer_api.json``: the ``slicer.*``, ``qt.*`` and ``ctk.*`` names Slicer offers.

Run from the repository root with a clone of Slicer's source (and, optionally, of SlicerPyTorch)::

    python Testing/slicer_api/refresh_slicer_api.py --slicer /path/to/Slicer [--pytorch /path/to/SlicerPyTorch]

For each Slicer version in :data:`REFS` the script reads the tree at that tag or branch with ``git archive`` (the
clone's work tree is not touched) and records:

- ``slicer.<Class>``: every ``vtkMRML…``, ``vtkSlicer…``, ``vtkSegment…``, ``qMRML…`` and ``qSlicer…`` class a header
  of ``Base/``, ``Libs/`` or ``Modules/`` declares (Slicer wraps them into the ``slicer`` namespace);
- ``slicer.<module>`` and ``slicer.<module>.<name>``: the Python modules of ``Base/Python/slicer`` (``util``,
  ``i18n``, ``parameterNodeWrapper``, ``packaging`` …) and the names each defines at its top level;
- ``slicer.app.<method>``: what ``qSlicerApplication.h`` and ``qSlicerCoreApplication.h`` declare;
- ``slicer.modules.<name>``: every module (lower-cased folder of ``Modules/Loadable``, ``Scripted``, ``CLI``);
- every ``slicer.…``, ``qt.…`` and ``ctk.…`` name Slicer's own Python uses, and every widget class its ``.ui`` files
  use (``qt.QTimer``, ``ctk.ctkCollapsibleButton`` …: the Qt and CTK classes Slicer's Python wrapping offers);
- the signatures (argument names) of the few Python functions MedXAI calls with keywords: Sample Data's
  ``SampleDataSource.__init__`` and ``registerCustomSampleDataSource``, ``slicer.util.pip_install``,
  ``slicer.packaging.pip_ensure`` / ``pip_install``, and PyTorchUtils' ``installTorch``; and which arguments
  ``SampleDataSource.__init__`` takes ``len()`` of (they must be sequences).

Names are grouped by the versions that have them (``"5.8,5.10,main"``, ``"main"`` …). Nothing of Slicer's code is
copied: only names and argument names are written.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

#: Slicer versions checked: label -> git tag or branch of Slicer's repository.
REFS = {"5.8": "v5.8.1", "5.10": "v5.10.0", "main": "main"}
OUTPUT = Path(__file__).resolve().parent / "slicer_api.json"
CLASS_RE = re.compile(r"^\s*class\s+(?:[A-Z0-9_]+_EXPORT\s+)?((?:vtkMRML|vtkSlicer|vtkSegment|vtkOrientedImageData|"
                      r"vtkOrientedGridTransform|vtkITK|vtkClosedSurface|vtkBinaryLabelmap|qMRML|qSlicer)\w*)\b"
                      r"(?!\s*;)")
USED_RE = re.compile(r"\b(slicer|qt|ctk)\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
UI_CLASS_RE = re.compile(r'<widget class="(\w+)"')
APP_HEADERS = ("Base/QTCore/qSlicerCoreApplication.h", "Base/QTGUI/qSlicerApplication.h")
SIGNATURES = {  # label -> (file, class or None, function)
    "SampleDataSource.__init__": ("Modules/Scripted/SampleData/SampleData.py", "SampleDataSource", "__init__"),
    "SampleDataLogic.registerCustomSampleDataSource": ("Modules/Scripted/SampleData/SampleData.py",
                                                       "SampleDataLogic", "registerCustomSampleDataSource"),
    "slicer.util.pip_install": ("Base/Python/slicer/util.py", None, "pip_install"),
    "slicer.packaging.pip_ensure": ("Base/Python/slicer/packaging.py", None, "pip_ensure"),
    "slicer.packaging.pip_install": ("Base/Python/slicer/packaging.py", None, "pip_install"),
}


def tree(git_dir: Path, ref: str, paths: list[str]) -> dict[str, bytes]:
    """``{path: content}`` of the files under ``paths`` at ``ref`` (read with ``git archive``)."""
    data = subprocess.run(["git", "-C", str(git_dir), "archive", "--format=tar", ref, "--", *paths],
                          capture_output=True, check=True).stdout
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                out[member.name] = tar.extractfile(member).read()
    return out


def top_level_names(source: str) -> set[str]:
    """Names a Python module binds at its top level (defs, classes, assignments, imports)."""
    names: set[str] = set()
    try:
        module = ast.parse(source)
    except SyntaxError:
        return names
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
        elif isinstance(node, (ast.If, ast.Try)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.FunctionDef, ast.ClassDef)):
                    names.add(inner.name)
                elif isinstance(inner, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in inner.names if a.name != "*"}
    return names


def function_args(source: str, cls: str | None, function: str) -> list[str] | None:
    """Argument names of ``cls.function`` (or a top-level ``function``) in ``source``; None when absent."""
    module = ast.parse(source)
    scope = module.body
    if cls is not None:
        found = [n for n in module.body if isinstance(n, ast.ClassDef) and n.name == cls]
        if not found:
            return None
        scope = found[0].body
    for node in scope:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            args = node.args
            return [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg != "self"]
    return None


def len_arguments(source: str) -> list[str]:
    """Arguments of ``SampleDataSource.__init__`` passed to ``len()`` (they must be sequences)."""
    module = ast.parse(source)
    cls = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "SampleDataSource")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    params = {a.arg for a in init.args.args}
    used = {call.args[0].id for call in ast.walk(init) if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name) and call.func.id == "len" and call.args
            and isinstance(call.args[0], ast.Name)}
    return sorted(used & params)


def names_at(git_dir: Path, ref: str) -> tuple[set[str], dict[str, list[str] | None], list[str]]:
    files = tree(git_dir, ref, ["Base", "Libs", "Modules"])
    names: set[str] = set()
    for path, data in files.items():
        text = data.decode("utf-8", errors="replace")
        if path.endswith(".h"):
            names |= {f"slicer.{m.group(1)}" for line in text.splitlines() if (m := CLASS_RE.match(line))}
        elif path.endswith(".py"):
            for root, rest in USED_RE.findall(text):
                parts = rest.split(".")
                names |= {f"{root}." + ".".join(parts[:n]) for n in range(1, len(parts) + 1)}
        elif path.endswith(".ui"):
            for cls in UI_CLASS_RE.findall(text):
                prefix = "qt" if cls.startswith("Q") else "ctk" if cls.startswith("ctk") else "slicer"
                names.add(f"{prefix}.{cls}")
    python_root = "Base/Python/slicer/"
    for path, data in files.items():
        if path.startswith(python_root) and path.endswith(".py") and "/tests/" not in path:
            relative = path[len(python_root):-3].split("/")
            module = relative[0]
            if module == "__init__":
                names |= {f"slicer.{n}" for n in top_level_names(data.decode())}
                continue
            names.add(f"slicer.{module}")
            names |= {f"slicer.{module}.{n}" for n in top_level_names(data.decode())}
    for header in APP_HEADERS:
        text = files.get(header, b"").decode()
        names |= {f"slicer.app.{m}" for m in re.findall(r"\b([a-z]\w*)\s*\(", text)}
        names |= {f"slicer.app.{m}" for m in re.findall(r"Q_PROPERTY\(\s*[\w:<>*]+\s+(\w+)", text)}
    for kind in ("Loadable", "Scripted", "CLI"):
        folders = {p.split("/")[2] for p in files if p.startswith(f"Modules/{kind}/") and p.count("/") >= 3}
        names |= {f"slicer.modules.{f.lower()}" for f in folders}
    signatures = {}
    for label, (path, cls, function) in SIGNATURES.items():
        source = files.get(path)
        signatures[label] = function_args(source.decode(), cls, function) if source else None
    sample = files["Modules/Scripted/SampleData/SampleData.py"].decode()
    return names, signatures, len_arguments(sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slicer", required=True, type=Path, help="a clone of github.com/Slicer/Slicer")
    parser.add_argument("--pytorch", type=Path, help="a clone of github.com/fepegar/SlicerPyTorch")
    args = parser.parse_args()
    by_name: dict[str, list[str]] = {}
    refs, signatures, len_args = {}, {}, {}
    for label, ref in REFS.items():
        sha = subprocess.run(["git", "-C", str(args.slicer), "rev-parse", ref], capture_output=True, text=True,
                             check=True).stdout.strip()
        refs[label] = {"ref": ref, "commit": sha}
        names, signatures[label], len_args[label] = names_at(args.slicer, ref)
        for name in names:
            by_name.setdefault(name, []).append(label)
    pytorch = None
    if args.pytorch:
        source = tree(args.pytorch, "HEAD", ["PyTorchUtils/PyTorchUtils.py"])["PyTorchUtils/PyTorchUtils.py"]
        pytorch = {"installTorch": function_args(source.decode(), "PyTorchUtilsLogic", "installTorch"),
                   "commit": subprocess.run(["git", "-C", str(args.pytorch), "rev-parse", "HEAD"], capture_output=True,
                                            text=True, check=True).stdout.strip()}
    groups: dict[str, list[str]] = {}
    for name in sorted(by_name):
        groups.setdefault(",".join(by_name[name]), []).append(name)
    document = {"refs": refs, "signatures": signatures, "sample_data_len_arguments": len_args,
                "pytorchutils": pytorch, "names_by_versions": groups}
    OUTPUT.write_text(json.dumps(document, indent=0, sort_keys=False) + "\n")
    print(f"{OUTPUT}: {len(by_name)} names from {', '.join(f'{k} ({v})' for k, v in REFS.items())}")


if __name__ == "__main__":
    main()
