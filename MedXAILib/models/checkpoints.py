"""Reading weights safely: state_dicts from ``.pt``/``.pth`` checkpoints and ``.safetensors`` files.

Untrusted checkpoints are never unpickled by default: ``.pt``/``.pth`` files are read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers. A checkpoint that needs arbitrary
unpickling (a whole pickled ``nn.Module``, custom classes) is refused unless the caller passes
``allow_unsafe_pickle=True`` (CLI: ``--allow-unsafe-pickle``), which can run any code stored in the file.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError

UNSAFE_FLAG = "--allow-unsafe-pickle"


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when the message is empty)."""
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return line[:160] or type(exc).__name__


def needs_arbitrary_code(exc: BaseException) -> bool:
    """True when ``torch.load(weights_only=True)`` refused the file because it names a global (a class or function)
    outside the allow-list: torch 2.4-2.5 say "Unsupported global", torch 2.6+ "unsupported GLOBAL"."""
    text = str(exc).lower()
    return "unsupported global" in text or "weights_only" in text and "global" in text


def _blocked_global(exc: BaseException) -> str:
    import re

    found = re.search(r"GLOBAL ([\w.]+)", str(exc), flags=re.IGNORECASE)
    return f"it names {found.group(1)}" if found else "it names Python objects beyond tensors"


def _unwrap_state_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "network", "net"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise ModelError(f"{where}: the checkpoint holds no state_dict (a dict of tensors)")


def load_state_dict(path: str | Path, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read weights from ``.safetensors`` or a torch checkpoint without arbitrary unpickling by default."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: weights file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise ModelError(f"{p}: unreadable safetensors file ({exc})") from None
    if p.is_dir():
        raise ModelError(f"{p}: is a folder, not a weights file")
    if p.stat().st_size == 0:
        raise ModelError(f"{p}: the weights file is empty (0 bytes); copy or save it again")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not needs_arbitrary_code(exc):
            raise ModelError(
                f"{p}: unreadable checkpoint, not a PyTorch weights file or damaged ({_first_line(exc)})"
            ) from None
        if not allow_unsafe_pickle:
            raise ModelError(
                f"{p}: this checkpoint needs arbitrary code to load ({_blocked_global(exc)}): unpickling it can run "
                f"code hidden in the file. Re-save it as a state_dict or TorchScript, or pass {UNSAFE_FLAG} if you "
                "trust its source"
            ) from None
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=False)
        except Exception as exc2:  # noqa: BLE001 - anything here means the file cannot be used
            raise ModelError(f"{p}: unreadable checkpoint ({_first_line(exc2)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{p}: unreadable checkpoint, not a PyTorch weights file or damaged ({_first_line(exc)})") \
            from None
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    return _unwrap_state_dict(obj, str(p))


def load_weights_into(network: torch.nn.Module, path: str | Path, allow_unsafe_pickle: bool = False) -> None:
    state = load_state_dict(path, allow_unsafe_pickle)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ModelError(
            f"{path}: the weights do not fit the described architecture ({'; '.join(lines[1:3])[:240]})"
        ) from None
