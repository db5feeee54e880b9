"""What MedXAI needs in Slicer's Python, installed on first use after asking (never from a background thread).

- **torch** through the PyTorch extension (``PyTorchUtils``), with MedXAI's minimum version
  (:data:`MINIMUM_TORCH_VERSION`) passed as its version requirement and checked on an installed torch;
- the packages of ``Resources/requirements.txt`` (MONAI, captum, …) through ``slicer.packaging.pip_ensure``
  (Slicer >= 5.12) or ``slicer.util.pip_install`` after a question (older Slicer);
- optional packages (:data:`OPTIONAL_PACKAGES`), only when a model or method needs them: ``nnunetv2`` for nnU-Net
  folders and TotalSegmentator tasks (through the SlicerNNUNet extension's installer when it is there, as
  SlicerTotalSegmentator does), ``shap`` for ``partitionshap`` and the shap plots (without its dependency named
  ``slicer``, a PyPI package that must not sit beside Slicer's own ``slicer`` module: it goes into a folder of its
  own, :func:`MedXAILib.shap_dependency.shap_slicer_dir`, where the core finds it when it imports shap).

Testing mode (``slicer.app.testingEnabled()``: ctest on the extension build machines) installs nothing: a missing
package makes :meth:`DependenciesLogic.ensureDependencies` return False and the self-test skip (SlicerMONAIAuto3DSeg
does not test its logic there either, torch is gigabytes). A developer who wants the self-test to install them sets
the environment variable :data:`INSTALL_IN_TESTING_VARIABLE` to ``1``.

Qt-free: dialogs go through ``slicer.util``; everything runs on the calling (main) thread.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

from ..i18n import tr as _

#: Oldest torch MedXAI runs on: the core loads nnU-Net checkpoints with ``torch.serialization.safe_globals``
#: (added in torch 2.5) and every checkpoint with ``weights_only=True``.
MINIMUM_TORCH_VERSION = "2.5"
#: Set to 1 to let the self-test install the dependencies in testing mode (a developer's machine, never ctest).
INSTALL_IN_TESTING_VARIABLE = "MEDXAI_SELFTEST_INSTALL"


@dataclass(frozen=True)
class OptionalPackage:
    """A package only some models or methods need.

    Attributes:
        module: the name Python imports.
        requirement: what is installed (a pip requirement with its floor).
        needed_for: what it is needed for, in the question to the user.
        skip: dependencies never installed beside it (installed with ``--no-deps`` where Slicer cannot skip them).
        no_deps_extras: on Slicer < 5.12, the dependencies installed separately when ``skip`` is not empty.
        apart: requirements installed with ``--no-deps --target`` into the core's folder for them (shap's PyPI
            ``slicer``), never into Slicer's site-packages.
    """

    module: str
    requirement: str
    needed_for: str
    skip: tuple[str, ...] = ()
    no_deps_extras: tuple[str, ...] = ()
    apart: tuple[str, ...] = ()


#: nnunetv2 >= 2.8: the version MedXAI's nnU-Net adapter is tested with (requirements-nnunet.txt).
OPTIONAL_PACKAGES: dict[str, OptionalPackage] = {
    "nnunetv2": OptionalPackage("nnunetv2", "nnunetv2>=2.8", "nnU-Net folders and TotalSegmentator tasks"),
    "shap": OptionalPackage(
        "shap", "shap>=0.45", "partitionshap and the shap plots", skip=("slicer",),
        no_deps_extras=("numba", "cloudpickle", "tqdm", "packaging", "pandas", "scikit-learn", "typing-extensions"),
        apart=("slicer>=0.0.7",)),
}
#: Methods that need shap.
SHAP_METHODS = ("partitionshap",)


def optional_packages_for(entry: Any, method: str | None = None, shap_plot: bool = False) -> list[str]:
    """The optional packages (keys of :data:`OPTIONAL_PACKAGES`) a run of ``method`` on ``entry`` needs."""
    needed = []
    if entry is not None and getattr(entry, "is_nnunet", False):
        needed.append("nnunetv2")
    if method in SHAP_METHODS or shap_plot:
        needed.append("shap")
    return needed


def missing_requirements(requirements_path: str) -> list[str]:
    """The lines of a requirements file whose package is absent or older than its ``>=`` floor."""
    from importlib import metadata

    missing = []
    with open(requirements_path, encoding="utf-8") as f:
        for line in f:
            spec = line.split("#", 1)[0].strip()
            if not spec:
                continue
            name, _sep, floor = spec.partition(">=")
            try:
                installed = metadata.version(name.strip())
            except metadata.PackageNotFoundError:
                missing.append(spec)
                continue
            if floor and version_tuple(installed) < version_tuple(floor):
                missing.append(spec)
    return missing


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.5.1+cu121"`` → ``(2, 5, 1)`` (the first three numeric parts)."""
    parts = []
    for piece in version.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


class DependenciesLogic:
    """Mixin of the module logic: torch, the required packages and the optional ones."""

    dependenciesChecked = False
    requirementsPath = ""  # set by the module logic: Resources/requirements.txt

    @staticmethod
    def _testing() -> bool:
        import slicer

        return bool(slicer.app.testingEnabled())

    def _installAllowed(self) -> bool:
        """Installing is allowed unless in testing mode (ctest), where only the opt-in variable allows it."""
        return not self._testing() or os.environ.get(INSTALL_IN_TESTING_VARIABLE) == "1"

    def _confirm(self, ask: bool, message: str) -> bool:
        import slicer

        return not ask or bool(slicer.util.confirmOkCancelDisplay(message))

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Make torch (PyTorch extension, >= :data:`MINIMUM_TORCH_VERSION`) and the required packages importable.

        Asks before installing; returns False when the user declined, or in testing mode when something is missing
        (nothing is installed there unless :data:`INSTALL_IN_TESTING_VARIABLE` is 1). Runs on the main thread.

        Raises:
            RuntimeError: the PyTorch extension is missing, torch is too old, or an installation failed.
        """
        if self.dependenciesChecked:
            return True
        ask = askConfirmation and not self._testing()
        if not self._ensureTorch(ask):
            return False
        if not self._ensureRequirements(ask):
            return False
        self.dependenciesChecked = True
        return True

    def _ensureTorch(self, ask: bool) -> bool:
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError(_("MedXAI needs the PyTorch extension; install it from the Extensions "
                                 "Manager")) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        requirement = f">={MINIMUM_TORCH_VERSION}"
        if torchLogic.torchInstalled():
            installed = str(torchLogic.torch.__version__)
            if version_tuple(installed) < version_tuple(MINIMUM_TORCH_VERSION):
                raise RuntimeError(_(
                    "MedXAI needs PyTorch {requirement}, but {installed} is installed; install a newer one in the "
                    "PyTorch Utils module (version requirement: {requirement})").format(
                        requirement=requirement, installed=installed))
            return True
        if not self._installAllowed():
            logging.info("MedXAI: testing mode, PyTorch is not installed and will not be installed here")
            return False
        if not self._confirm(ask, _("MedXAI needs PyTorch {requirement}. Install it now? This may take several "
                                    "minutes.").format(requirement=requirement)):
            return False
        if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=requirement) is None:
            raise RuntimeError(_("PyTorch could not be installed; see the PyTorch Utils module"))
        return True

    def _ensureRequirements(self, ask: bool) -> bool:
        missing = missing_requirements(self.requirementsPath)
        if not missing:
            return True
        if not self._installAllowed():
            logging.info(f"MedXAI: testing mode, not installing {', '.join(missing)}")
            return False
        packaging = _slicer_packaging()
        if packaging is not None:
            try:
                # installed here after the question (or none under an opted-in self-test): no restart question
                packaging.pip_ensure(packaging.load_requirements(self.requirementsPath), prompt_install=ask,
                                     prompt_restart=not self._testing(), requester="MedXAI", skip_in_testing=False)
            except RuntimeError as exc:
                if "declined" in str(exc).lower():
                    return False
                raise
            return True
        if not self._confirm(ask, _("MedXAI needs these Python packages: {packages}. Install them now?").format(
                packages=", ".join(missing))):
            return False
        import slicer

        slicer.util.pip_install(" ".join(f'"{m}"' for m in missing))
        return True

    def missingOptionalPackages(self, names: Sequence[str]) -> list[str]:
        """Which of the optional packages ``names`` Slicer's Python cannot import yet."""
        return [n for n in names if importlib.util.find_spec(OPTIONAL_PACKAGES[n].module) is None
                or (OPTIONAL_PACKAGES[n].apart and not _apart_folder_filled())]

    def ensureOptionalPackages(self, names: Sequence[str], askConfirmation: bool = True) -> bool:
        """Install the optional packages ``names`` that are missing, after asking; False when declined (or in
        testing mode). Main thread only (pip from a background thread crashes Slicer on macOS).

        Raises:
            RuntimeError: an installation failed.
        """
        missing = self.missingOptionalPackages(names)
        if not missing:
            return True
        if not self._installAllowed():
            logging.info(f"MedXAI: testing mode, not installing {', '.join(missing)}")
            return False
        ask = askConfirmation and not self._testing()
        lines = "\n".join(f"- {OPTIONAL_PACKAGES[n].requirement}: {OPTIONAL_PACKAGES[n].needed_for}" for n in missing)
        if not self._confirm(ask, _("This needs more Python packages:\n{packages}\n\nInstall them now? This may take "
                                    "several minutes.").format(packages=lines)):
            return False
        for name in missing:
            self._installOptional(OPTIONAL_PACKAGES[name])
        importlib.invalidate_caches()
        return True

    def _installOptional(self, package: OptionalPackage) -> None:
        import slicer

        if package.apart:
            slicer.util.pip_install(f'--no-deps --target "{_apart_folder()}" '
                                    + " ".join(f'"{r}"' for r in package.apart))
            if importlib.util.find_spec(package.module) is not None:
                return

        if package.module == "nnunetv2":
            try:
                import SlicerNNUNetLib  # the SlicerNNUNet extension's installer, as SlicerTotalSegmentator uses it
            except ImportError:
                SlicerNNUNetLib = None
            if SlicerNNUNetLib is not None:
                if not SlicerNNUNetLib.InstallLogic(doAskConfirmation=False).setupPythonRequirements(
                        package.requirement):
                    raise RuntimeError(f"{package.requirement} could not be installed (SlicerNNUNet)")
                return
        packaging = _slicer_packaging()
        if packaging is not None:
            packaging.pip_ensure([package.requirement], prompt_install=False, prompt_restart=False,
                                 requester="MedXAI", skip_in_testing=False,
                                 skip_packages=list(package.skip) or None)
            return
        if package.skip:  # older Slicer: the package without its dependencies, then the ones it really needs
            slicer.util.pip_install(f'--no-deps "{package.requirement}"')
            slicer.util.pip_install(" ".join(f'"{extra}"' for extra in package.no_deps_extras))
        else:
            slicer.util.pip_install(f'"{package.requirement}"')


def _apart_folder() -> str:
    """The folder for the ``apart`` requirements: the core's own rule, so the CLI child finds them."""
    from MedXAILib.shap_dependency import shap_slicer_dir

    return str(shap_slicer_dir())


def _apart_folder_filled() -> bool:
    return os.path.isfile(os.path.join(_apart_folder(), "slicer", "__init__.py"))


def _slicer_packaging() -> Any:
    """``slicer.packaging`` with ``pip_ensure`` (Slicer >= 5.12), else None."""
    try:
        import slicer.packaging as packaging
    except ImportError:
        return None
    return packaging if hasattr(packaging, "pip_ensure") else None
