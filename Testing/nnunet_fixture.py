"""Build a REAL nnU-Net v2 trained-model folder for the tests, with nnU-Net's own code.

1. A tiny raw dataset (``Dataset511_MedXAITiny``) is cut from the shared TotalSegmentator CT (``example_ct_sm``) and
   its reference labels (``example_seg``), keeping TotalSegmentator's first five classes, which are consecutive
   (1 spleen, 2 kidney_right, 3 kidney_left, 4 gallbladder, 5 liver) as nnU-Net requires.
2. nnU-Net's own planner and preprocessor run on it (the code behind ``nnUNetv2_plan_and_preprocess``:
   fingerprint, ``ExperimentPlanner``, ``DefaultPreprocessor``), for ``3d_fullres`` and ``2d``.
3. ``nnUNetTrainer`` (or a named trainer) is built on those plans and writes ``fold_K/checkpoint_final.pth`` with its
   own ``save_checkpoint``. The weights stay untrained; the training log is filled the way a real training epoch fills
   it (numpy scalars included), so the checkpoint looks like a trained one to the loader.

nnU-Net reads its folder variables (``nnUNet_raw`` …) when it is imported, so this runs in a child process:
``python Testing/nnunet_fixture.py OUT_DIR DATA_DIR [--folds 0,1] [--trainer NAME] [--target-spacing Z Y X]``.
It prints the 3d_fullres results folder
(``OUT/nnUNet_results/Dataset511_MedXAITiny/<trainer>__nnUNetPlans__3d_fullres``); the ``…__2d`` folder (fold 0)
lies beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

DATASET_ID = 511
DATASET_NAME = f"Dataset{DATASET_ID}_MedXAITiny"
CLASSES = {"background": 0, "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5}
# (z, y, x) corners of the training crops, each CROP voxels large, inside example_ct_sm's 30 x 101 x 122 grid
CROP = (16, 32, 32)
CORNERS = [(0, 20, 10), (12, 40, 60), (6, 55, 30)]
#: (z, y, x) mm of the tests' folder: the shared CT (3 mm) is resampled on the way in and out
TEST_TARGET_SPACING = [3.5, 4.0, 4.0]


def make_raw_dataset(raw: Path, data_dir: Path) -> None:
    import numpy as np
    import SimpleITK as sitk

    ct = sitk.ReadImage(str(data_dir / "totalsegmentator" / "example_ct_sm.nii.gz"))
    seg = sitk.ReadImage(str(data_dir / "totalsegmentator" / "example_seg.nii.gz"))
    folder = raw / DATASET_NAME
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    for n, (z, y, x) in enumerate(CORNERS):
        index, size = [x, y, z], [CROP[2], CROP[1], CROP[0]]
        img = sitk.RegionOfInterest(ct, size, index)
        lab = sitk.RegionOfInterest(seg, size, index)
        arr = sitk.GetArrayFromImage(lab).astype(np.uint8)
        arr[arr > 5] = 0
        lab2 = sitk.GetImageFromArray(arr)
        lab2.CopyInformation(lab)
        sitk.WriteImage(sitk.Cast(img, sitk.sitkInt16), str(folder / "imagesTr" / f"case_{n:03d}_0000.nii.gz"))
        sitk.WriteImage(lab2, str(folder / "labelsTr" / f"case_{n:03d}.nii.gz"))
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": CLASSES,
        "numTraining": len(CORNERS),
        "file_ending": ".nii.gz",
        "name": "MedXAITiny",
        "description": "crops of TotalSegmentator's example CT, for MedXAI's tests",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))


def plan_and_preprocess(target_spacing: list[float] | None) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=True, clean=True, verbose=False)
    plan_experiments([DATASET_ID], overwrite_target_spacing=target_spacing)
    preprocess([DATASET_ID], configurations=("3d_fullres", "2d"), num_processes=(1, 1), verbose=False)


def write_checkpoints(folds: list[int], trainer_name: str, configuration: str = "3d_fullres") -> Path:
    import numpy as np
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    trainer_class = recursive_find_trainer_class_by_name(trainer_name)
    pre = Path(nnUNet_preprocessed) / DATASET_NAME
    out = None
    for fold in folds:
        torch.manual_seed(fold)
        plans = load_json(str(pre / "nnUNetPlans.json"))
        plans["continue_training"] = False  # nnU-Net 2.8's run script sets this before building a trainer
        dataset_json = load_json(str(pre / "dataset.json"))
        trainer = trainer_class(plans, configuration, fold, dataset_json, device=torch.device("cpu"))
        trainer.initialize()
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets inference_allowed_mirroring_axes
        # one epoch's log, as on_train_epoch_end / on_validation_epoch_end / on_epoch_end write it (numpy scalars)
        trainer.on_epoch_start()
        trainer.logger.log("train_losses", np.mean([0.9, 0.8]), trainer.current_epoch)
        trainer.logger.log("val_losses", np.mean([0.95, 0.85]), trainer.current_epoch)
        dice = [np.float64(0.1 * (i + 1)) for i in range(len(CLASSES) - 1)]
        trainer.logger.log("mean_fg_dice", np.nanmean(dice), trainer.current_epoch)
        trainer.logger.log("dice_per_class_or_region", dice, trainer.current_epoch)
        trainer.on_epoch_end()
        trainer.save_checkpoint(os.path.join(trainer.output_folder, "checkpoint_final.pth"))
        trainer.save_checkpoint(os.path.join(trainer.output_folder, "checkpoint_best.pth"))
        out = Path(trainer.output_folder_base)
    # the files nnUNetv2_train leaves beside the folds (nnUNetPredictor reads plans.json and dataset.json)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        src = pre / ("nnUNetPlans.json" if name == "plans.json" else name)
        (out / name).write_text(src.read_text())
    return out


def build_in_subprocess(out: Path, data_dir: Path, folds: str = "0", trainer: str = "nnUNetTrainer",
                        target_spacing: list[float] | None = None, timeout: float = 600) -> Path:
    """Run this file in a child process (nnU-Net's folder variables set) and return the results folder."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", nnUNet_n_proc_DA="1",
               nnUNet_raw=str(out / "nnUNet_raw"), nnUNet_preprocessed=str(out / "nnUNet_preprocessed"),
               nnUNet_results=str(out / "nnUNet_results"))
    cmd = [sys.executable, __file__, str(out), str(data_dir), "--folds", folds, "--trainer", trainer]
    if target_spacing:
        cmd += ["--target-spacing", *[str(s) for s in target_spacing]]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"building the nnU-Net fixture failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--folds", default="0")
    ap.add_argument("--trainer", default="nnUNetTrainer")
    ap.add_argument("--target-spacing", type=float, nargs=3, default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    make_raw_dataset(Path(os.environ["nnUNet_raw"]), a.data_dir)
    plan_and_preprocess(a.target_spacing)
    write_checkpoints([0], a.trainer, "2d")  # a 2D configuration (one fold) beside the 3D one
    out = write_checkpoints([int(f) for f in a.folds.split(",")], a.trainer)
    print(out)


if __name__ == "__main__":
    main()
