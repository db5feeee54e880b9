"""Extension packaging: every file Slicer must ship is listed in the CMake lists, and the index entry is complete.

Slicer installs only the scripts and resources a module's ``CMakeLists.txt`` names (no globbing, by convention), so
a new ``.py`` that is not listed works from the source tree and breaks in the installed extension. These tests fail
when that happens, for every module folder the top-level ``CMakeLists.txt`` adds (``MedXAI/`` and any module added
beside it) and for the core ``MedXAILib/`` (installed by one of them). Run this file as a script to print
up-to-date lists::

    python Testing/test_slicer_packaging.py
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import pytest
from slicer_modules import ROOT, module_folders

MODULE_DIR = ROOT / "MedXAI"
CORE_DIR = ROOT / "MedXAILib"
FOLDERS = module_folders()


def cmake_list(text: str, name: str) -> list[str]:
    """The items of ``set(NAME item item …)`` in a CMake script (comments dropped)."""
    match = re.search(rf"set\(\s*{re.escape(name)}\b(.*?)\)", text, flags=re.S)
    assert match, f"set({name} ...) not found"
    body = "\n".join(line.split("#", 1)[0] for line in match.group(1).splitlines())
    return body.split()


def shipped_files(folder: Path) -> list[str]:
    """Files under ``folder`` that git tracks (what a release contains), relative to the repository root.

    Falls back to the files on disk outside a git checkout. Caches and hidden files are ignored.
    """
    rel = folder.relative_to(ROOT).as_posix()
    try:
        out = subprocess.run(["git", "ls-files", "--", rel], cwd=ROOT, capture_output=True, text=True, check=True)
        files = [line for line in out.stdout.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:
        files = [p.relative_to(ROOT).as_posix() for p in folder.rglob("*") if p.is_file()]
    return sorted(
        f for f in files
        if "__pycache__" not in f and not any(part.startswith(".") for part in Path(f).parts) and (ROOT / f).exists()
    )


def module_cmake(folder: Path = MODULE_DIR) -> str:
    return (folder / "CMakeLists.txt").read_text()


def core_cmake_folder() -> Path:
    """The module folder whose CMakeLists installs the core (``MedXAILib_PYTHON_SCRIPTS``); exactly one does."""
    owners = [f for f in FOLDERS if "MedXAILib_PYTHON_SCRIPTS" in module_cmake(f)]
    assert len(owners) == 1, f"the core must be installed by exactly one module, not {[f.name for f in owners]}"
    return owners[0]


def expected_module_scripts(folder: Path = MODULE_DIR) -> list[str]:
    files = [Path(f).relative_to(folder.name).as_posix() for f in shipped_files(folder) if f.endswith(".py")]
    return sorted(f for f in files if not f.startswith("Testing/"))


def expected_core_scripts() -> list[str]:
    return [f for f in shipped_files(CORE_DIR) if f.endswith(".py")]


def expected_core_resources() -> list[str]:
    return [f for f in shipped_files(CORE_DIR) if not f.endswith((".py", ".pyc"))]


def listed_module_scripts(folder: Path = MODULE_DIR) -> list[str]:
    return [s.replace("${MODULE_NAME}", folder.name) for s in cmake_list(module_cmake(folder), "MODULE_PYTHON_SCRIPTS")]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_module_script_is_listed(folder):
    text = module_cmake(folder)
    assert re.search(rf"set\(MODULE_NAME {re.escape(folder.name)}\)", text), f"{folder.name}: set(MODULE_NAME …)"
    listed = set(listed_module_scripts(folder))
    missing = [f for f in expected_module_scripts(folder) if f not in listed]
    assert not missing, f"add to MODULE_PYTHON_SCRIPTS in {folder.name}/CMakeLists.txt: {missing}"
    stale = [f for f in listed if not (folder / f).is_file()]
    assert not stale, f"listed but missing: {stale}"
    assert f"{folder.name}.py" in listed
    assert "slicerMacroBuildScriptedModule" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert not re.search(r"file\s*\(\s*GLOB", text, flags=re.I), "list files one by one; no globbing"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_module_resource_is_listed(folder):
    listed = [r.replace("${MODULE_NAME}", folder.name)
              for r in cmake_list(module_cmake(folder), "MODULE_PYTHON_RESOURCES")]
    resources = [Path(f).relative_to(folder.name).as_posix() for f in shipped_files(folder / "Resources")]
    assert sorted(set(resources) - set(listed)) == [], f"a file under {folder.name}/Resources is not listed"
    assert all((folder / r).is_file() for r in listed), "a listed resource is missing"
    assert f"Resources/Icons/{folder.name}.png" in listed


def test_every_core_script_is_listed():
    listed = set(cmake_list(module_cmake(core_cmake_folder()), "MedXAILib_PYTHON_SCRIPTS"))
    missing = [f for f in expected_core_scripts() if f not in listed]
    assert not missing, f"add to MedXAILib_PYTHON_SCRIPTS in {core_cmake_folder().name}/CMakeLists.txt: {missing}"
    stale = [f for f in listed if not (ROOT / f).is_file()]
    assert not stale, f"listed but missing: {stale}"
    assert "MedXAILib/__init__.py" in listed and "MedXAILib/__main__.py" in listed


def test_every_core_data_file_is_listed():
    text = module_cmake(core_cmake_folder())
    listed = set(cmake_list(text, "MedXAILib_PYTHON_RESOURCES")) if "MedXAILib_PYTHON_RESOURCES" in text else set()
    missing = [f for f in expected_core_resources() if f not in listed]
    assert not missing, f"add to MedXAILib_PYTHON_RESOURCES in MedXAI/CMakeLists.txt: {missing}"


def test_core_is_installed_beside_the_module():
    text = module_cmake(core_cmake_folder())
    call = re.search(r"ctkMacroCompilePythonScript\((.*?)\n\s*\)", text, flags=re.S)
    assert call, "MedXAILib must be installed with ctkMacroCompilePythonScript"
    body = call.group(1)
    for expected in ("TARGET_NAME MedXAILib", "${MedXAILib_PYTHON_SCRIPTS}",
                     "SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR}/..", "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}",
                     "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}", "NO_INSTALL_SUBDIR"):
        assert expected in body, expected



def test_medxai_resources_are_listed():
    listed = [r.replace("${MODULE_NAME}", "MedXAI") for r in cmake_list(module_cmake(), "MODULE_PYTHON_RESOURCES")]
    for resource in ("Resources/UI/MedXAI.ui", "Resources/Icons/MedXAI.png", "Resources/requirements.txt"):
        assert resource in listed and (MODULE_DIR / resource).is_file(), resource


def test_requirements_have_floors_and_no_torch():
    lines = [ln.split("#", 1)[0].strip() for ln in (MODULE_DIR / "Resources/requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    assert reqs
    for req in reqs:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+>=[0-9][0-9.]*", req), f"use a >= floor: {req}"
        name = re.split(r"[><=\[]", req)[0].lower()
        assert name not in ("torch", "torchvision", "torchaudio"), "torch comes from the PyTorch extension"


def test_top_level_cmake_is_a_complete_extension():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"project\(MedXAI\)", text)
    for var in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        match = re.search(rf'set\({var} "([^"]+)"\)', text)
        assert match and match.group(1).strip(), f"{var} is empty"
    assert re.search(r'set\(EXTENSION_DEPENDS "?PyTorch"?\)', text)
    assert "find_package(Slicer REQUIRED)" in text and "add_subdirectory(MedXAI)" in text
    assert "Slicer_EXTENSION_GENERATE_CONFIG" in text and "Slicer_EXTENSION_CPACK" in text
    icon = re.search(r'set\(EXTENSION_ICONURL "([^"]+)"\)', text).group(1)
    assert icon.endswith("/MedXAI.png")
    for folder in FOLDERS:
        assert (folder / "CMakeLists.txt").is_file() and (folder / f"{folder.name}.py").is_file(), folder.name


def test_contributors_are_named_with_their_organisation():
    """The Index asks for "Name (Organisation)" entries, not a collective placeholder."""
    text = (ROOT / "CMakeLists.txt").read_text()
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', text).group(1)
    entries = [c.strip() for c in contributors.split(",")]
    assert entries and "MedXAI contributors" not in entries
    for entry in entries:
        assert re.fullmatch(r"[^()]+ \([^()]+\)", entry), f"{entry!r}: write Name (Organisation)"


RAW_PREFIX = "https://raw.githubusercontent.com/MedXAI/SlicerMedXAI/main/"
BLOB_PREFIX = "https://github.com/MedXAI/SlicerMedXAI/blob/main/"


def tracked(path: str) -> bool:
    out = subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=ROOT, capture_output=True, text=True)
    return out.returncode == 0 or not (ROOT / ".git").exists() and (ROOT / path).is_file()


def test_index_urls_point_at_pictures_of_the_panel_in_the_repository():
    """The Extensions Index fetches every icon and screenshot URL: each must be a file this repository ships, and
    each screenshot a picture of the panel that docs/slicer.md shows and labels (rendered from the .ui)."""
    text = (ROOT / "CMakeLists.txt").read_text()
    urls = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]+)"\)', text).group(1).split()
    urls.append(re.search(r'set\(EXTENSION_ICONURL "([^"]+)"\)', text).group(1))
    assert len(urls) >= 2
    guide = (ROOT / "docs" / "slicer.md").read_text()
    for url in urls:
        assert url.startswith(RAW_PREFIX), f"{url}: serve it from this repository's main branch"
        path = url[len(RAW_PREFIX):]
        assert (ROOT / path).is_file() and tracked(path), f"{url}: {path} is not a file in the repository"
        if url != urls[-1]:
            assert path.endswith(".png") and png_size(ROOT / path)[0] >= 600, f"{path}: a screenshot-sized PNG"
            assert "screenshot" not in path.lower(), f"{path}: not taken in Slicer, so not called a screenshot"
            shown = re.search(rf"!\[([^\]]*)\]\({re.escape(Path(path).relative_to('docs').as_posix())}\)", guide)
            assert shown and "rendered from" in shown.group(1), f"docs/slicer.md must show {path}, labelled"
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', text).group(1)
    assert homepage.startswith(BLOB_PREFIX) and (ROOT / homepage[len(BLOB_PREFIX):]).is_file()


def test_the_guide_has_the_licence_and_says_what_was_not_run_in_slicer():
    guide = (ROOT / "docs" / "slicer.md").read_text()
    assert re.search(r"Apache License,? (Version )?2\.0", guide) and "LICENSE" in guide
    assert "TotalSegmentator" in guide and "not been run" in guide


def test_extensions_index_entry():
    entry = json.loads((ROOT / "MedXAI.json").read_text())
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                       "slicer-extension-catalog-entry-schema-")
    assert entry["build_dependencies"] == ["PyTorch"]
    assert entry["category"] and entry["scm_url"].startswith("https://") and entry["scm_revision"]
    assert isinstance(entry["tier"], int) and entry["tier"] in (1, 3, 5)
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert f'set(EXTENSION_CATEGORY "{entry["category"]}")' in cmake


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_icons_are_128_pixel_pngs():
    assert png_size(ROOT / "MedXAI.png") == (128, 128)
    assert png_size(MODULE_DIR / "Resources/Icons/MedXAI.png") == (128, 128)


def test_license_is_apache_2():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def print_lists() -> None:
    """Print the CMake lists as they should be (paste them into each module's CMakeLists.txt)."""
    for folder in FOLDERS:
        scripts = ["${MODULE_NAME}.py"] + [s for s in expected_module_scripts(folder) if s != f"{folder.name}.py"]
        print(f"# {folder.name}/CMakeLists.txt\nset(MODULE_PYTHON_SCRIPTS")
        for item in scripts:
            print(f"  {item}")
        print("  )\n")
    print(f"# {core_cmake_folder().name}/CMakeLists.txt")
    for name, items in (("MedXAILib_PYTHON_SCRIPTS", expected_core_scripts()),
                        ("MedXAILib_PYTHON_RESOURCES", expected_core_resources())):
        print(f"set({name}")
        for item in items:
            print(f"  {item}")
        print("  )\n")


if __name__ == "__main__":
    print_lists()
