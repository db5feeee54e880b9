"""Issue 22: MedXAILib is a proper distribution (``pip install .`` / ``pip install -e .``), so a Dask worker started in
a fresh shell can import MedXAI's tasks (docs/cluster.md).

The wheel is built for real, from a copy of the files the build reads (so the checkout gets no ``build/`` or
``*.egg-info``), with the installed setuptools and no network (``pip wheel --no-deps --no-build-isolation``). Its file
list is compared with the source tree: every module of ``MedXAILib``, the built-in models the library reads at run
time, the ``medxai`` console command, and the requirements of ``requirements.txt``; nothing of ``Testing/`` or of the
Slicer module. A full ``pip install .`` / ``pip install -e .`` into a fresh virtualenv and a scheduler with two
``dask worker`` processes in a fresh shell were run by hand (see the branch notes); they need the network or minutes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "requirements.txt")


def _setuptools_version() -> tuple[int, ...]:
    try:
        import setuptools
    except ImportError:
        return (0,)
    return tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    if _setuptools_version() < (77,):
        pytest.skip("building the wheel needs setuptools >= 77 (requirements-dev.txt)")
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "MedXAILib", src / "MedXAILib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = dist.glob("medxai-*.whl")
    return zipfile.ZipFile(built)


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def test_wheel_holds_the_library_its_models_and_nothing_else(wheel):
    names = set(wheel.namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "MedXAILib").rglob("*.py")}
    assert modules <= names, sorted(modules - names)[:10]
    models = {p.relative_to(ROOT).as_posix() for p in (ROOT / "MedXAILib" / "builtin_models").iterdir()
              if p.suffix in (".pt", ".json")}
    assert models and models <= names, sorted(models - names)
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"MedXAILib"}, tops


def test_wheel_declares_the_console_command_and_the_requirements(wheel):
    info = {n.split("/")[-1]: n for n in wheel.namelist() if ".dist-info/" in n}
    entry = wheel.read(info["entry_points.txt"]).decode()
    assert "[console_scripts]" in entry and "medxai = MedXAILib.cli:main" in entry
    metadata = wheel.read(info["METADATA"]).decode().splitlines()
    declared = [ln.split(":", 1)[1].strip() for ln in metadata if ln.startswith("Requires-Dist:")]

    def key(req: str) -> str:  # the distribution name, as pip compares them
        name = req.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        return name.lower().replace("_", "-")

    assert sorted(map(key, declared)) == sorted(map(key, _requirements()))


def test_console_command_is_the_module_entry_point(monkeypatch, capsys):
    from MedXAILib import cli

    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/medxai", "--help"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0 and capsys.readouterr().out.startswith("usage: medxai ")
