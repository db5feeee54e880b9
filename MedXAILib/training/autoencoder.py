"""``train --task autoencoder``: a small MONAI AutoEncoder fitted on a cohort, to judge how plausible an input is.

A counterfactual that flips a decision by drawing something no scan looks like explains little. Its distance to the
data is measured by the reconstruction error of an autoencoder trained on the cohort, compared with the error on
the original input (:mod:`MedXAILib.explain.plausibility`): a ratio near 1 means the counterfactual looks as much
like the cohort as the input does.

The autoencoder sees exactly what the explained model sees: each case is prepared by that model's own preprocessing
(normalisation and resampling onto its grid, :meth:`Model.prepare`), so one autoencoder belongs to one model's input
representation (``--model``). It is MONAI's :class:`~monai.networks.nets.AutoEncoder` (fully convolutional: three
stride-2 levels of 16, 32, 64 channels, one residual unit each), trained with mean squared error on random patches
(3D ``32 × 48 × 48``, 2D ``128 × 128`` voxels of the model grid), AdamW with the learning rate decaying linearly to 0.
The last ``max(1, n // 5)`` patients are held out and their mean reconstruction error is stored as the reference.

Writes ``DIR/autoencoder.json`` (architecture, model it belongs to, channel names, preprocessing, training record) and
``DIR/weights.pt`` (a ``state_dict``, loadable with ``weights_only=True``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..progress import ProgressCallback, no_progress

DESCRIPTION_FILE = "autoencoder.json"
WEIGHTS_FILE = "weights.pt"
DIVISOR = 8  # three stride-2 levels


def architecture(spatial_dims: int, channels: int) -> dict[str, Any]:
    """The autoencoder's MONAI description (``{"name", "kwargs"}``)."""
    return {"name": "AutoEncoder", "kwargs": {
        "spatial_dims": spatial_dims, "in_channels": channels, "out_channels": channels,
        "channels": [16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1, "norm": "instance",
    }}


def pad_to_divisor(x: torch.Tensor, div: int = DIVISOR) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Edge-pad ``(B, C, *spatial)`` at the end of each axis to a multiple of ``div``; returns it and the crop back."""
    spatial = x.shape[2:]
    pads: list[int] = []
    for s in reversed(spatial):
        pads += [0, (-s) % div]
    crop = (slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)
    if not any(pads):
        return x, crop
    return torch.nn.functional.pad(x, pads, mode="replicate"), crop


def reconstruct(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The autoencoder's reconstruction of a ``(B, C, *grid)`` model-grid tensor (same shape)."""
    padded, crop = pad_to_divisor(x)
    return network(padded)[crop]


def _patch(x: np.ndarray, size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    pads = [(0, 0)] + [(0, max(0, p - s)) for s, p in zip(x.shape[1:], size)]
    x = np.pad(x, pads, mode="edge") if any(p[1] for p in pads) else x
    starts = [int(rng.integers(0, s - p + 1)) for s, p in zip(x.shape[1:], size)]
    return x[(slice(None),) + tuple(slice(a, a + p) for a, p in zip(starts, size))]


def train_autoencoder(
    dataset: str,
    model_name: str,
    output: str | Path,
    epochs: int = 20,
    steps_per_epoch: int = 25,
    lr: float = 2e-3,
    batch_size: int = 2,
    seed: int = 0,
    device: str = "cpu",
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Fit the autoencoder on ``dataset`` (``KIND:PATH``) in ``model_name``'s input representation; see the module.

    Returns:
        the written description (also at ``output/autoencoder.json``).
    """
    from ..datasets import open_dataset
    from ..models import load_model
    from ..models.monai_network import build_network
    from ..training.config import set_determinism

    if epochs < 1 or steps_per_epoch < 1 or batch_size < 1:
        raise InputError("--epochs, --steps-per-epoch and --batch-size must be at least 1")
    model = load_model(model_name, device=device)
    set_determinism(seed, model.device)
    ds = open_dataset(dataset)
    if len(ds.cases) < 2:
        raise InputError(f"{dataset}: an autoencoder needs at least 2 cases (one is held out); found {len(ds.cases)}")
    patients = sorted({c.patient_id for c in ds.cases})
    held = set(patients[len(patients) - max(1, len(patients) // 5):])
    arrays: dict[str, list[np.ndarray]] = {"train": [], "held_out": []}
    for n, case in enumerate(ds.cases):
        progress(0.2 * n / len(ds.cases), f"preparing {case.case_id}")
        vol = case.load_image()
        if vol.n_channels != model.description.n_channels:
            raise InputError(
                f"{case.case_id}: {vol.n_channels} channel(s), but model {model.name!r} takes "
                f"{', '.join(model.description.channel_names)}"
            )
        x = model.prepare(vol).tensor[0].cpu().numpy()
        arrays["held_out" if case.patient_id in held else "train"].append(x)
    dims = model.spatial_dims
    arch = architecture(dims, model.description.n_channels)
    network = build_network(arch, "autoencoder").to(model.device)
    opt = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-5)
    size = (32, 48, 48) if dims == 3 else (128, 128)
    rng = np.random.default_rng(seed)
    total = epochs * steps_per_epoch
    losses: list[float] = []
    t0 = time.perf_counter()
    network.train()
    for step in range(total):
        for group in opt.param_groups:
            group["lr"] = lr * (1 - step / total)
        batch = np.stack([_patch(arrays["train"][int(rng.integers(len(arrays["train"])))], size, rng)
                          for _ in range(batch_size)])
        xb = torch.from_numpy(batch).to(model.device)
        loss = torch.nn.functional.mse_loss(reconstruct(network, xb), xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % steps_per_epoch == 0:
            progress(0.2 + 0.75 * (step + 1) / total, f"autoencoder epoch {(step + 1) // steps_per_epoch}: "
                                                        f"mse {np.mean(losses[-steps_per_epoch:]):.4f}")
    network.eval()
    with torch.no_grad():
        held_mse = [float(torch.nn.functional.mse_loss(reconstruct(network, t), t))
                    for t in (torch.from_numpy(a)[None].to(model.device) for a in arrays["held_out"])]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    from ..io import atomic_path

    with atomic_path(out / WEIGHTS_FILE) as tmp:
        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, tmp)
    desc = {
        "kind": "autoencoder",
        "for_model": model.name,
        "spatial_dims": dims,
        "channel_names": list(model.description.channel_names),
        "preprocessing": model.description.preprocessing,
        "architecture": arch,
        "weights": WEIGHTS_FILE,
        "training": {
            "dataset": dataset, "seed": seed, "epochs": epochs, "steps_per_epoch": steps_per_epoch, "lr": lr,
            "batch_size": batch_size, "patch": list(size), "n_train": len(arrays["train"]),
            "n_held_out": len(arrays["held_out"]), "final_train_mse": float(np.mean(losses[-steps_per_epoch:])),
            "held_out_mse": float(np.mean(held_mse)), "seconds": round(time.perf_counter() - t0, 1),
        },
    }
    with atomic_path(out / DESCRIPTION_FILE) as tmp:
        tmp.write_text(json.dumps(desc, indent=2))
    progress(1.0, f"wrote {out / DESCRIPTION_FILE}")
    return desc


def load_autoencoder(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load ``DIR`` (or ``DIR/autoencoder.json``) written by :func:`train_autoencoder`."""
    from ..models.monai_network import build_network

    p = Path(path)
    if p.is_dir():
        p = p / DESCRIPTION_FILE
    if not p.exists():
        raise InputError(f"{path}: no autoencoder here (expected {DESCRIPTION_FILE} written by "
                         "`train --task autoencoder`)")
    desc = json.loads(p.read_text())
    if desc.get("kind") != "autoencoder":
        raise InputError(f"{p}: not an autoencoder description (train one with `train --task autoencoder`)")
    network = build_network(desc["architecture"], str(p), check=True)
    state = torch.load(p.parent / desc["weights"], map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    return network.to(device).eval(), desc
