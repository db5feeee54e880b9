"""Parity report (not a test): MedXAI's nnU-Net adapter against ``nnUNetPredictor`` with the same weights.

``python Testing/nnunet_parity_report.py RESULTS_DATASET_DIR`` where the folder holds the ``…__3d_fullres`` and
``…__2d`` trained-model folders that ``nnunet_fixture.py`` builds. Prints one line per case: windows, max |Δp|,
argmax agreement and the seconds each side took.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch


def main() -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from MedXAILib.io import read_volume
    from MedXAILib.models import load_model
    from MedXAILib.volume import Volume

    torch.set_num_threads(1)
    root = sys.argv[1]
    data = os.environ.get("MEDXAI_TEST_DATA", "../shared/medxai-test-data")
    full = read_volume(f"{data}/totalsegmentator/example_ct_sm.nii.gz")
    crop = Volume(np.ascontiguousarray(full.array[:, 5:25, 30:60, 30:70]), full.ijk_to_ras)
    cases = [("3d_fullres", "crop 20x30x40", crop, (0,), True), ("3d_fullres", "crop 20x30x40", crop, (0, 1), False),
             ("2d", "crop 20x30x40", crop, (0,), True), ("3d_fullres", "example_ct_sm", full, (0, 1), False)]
    for cfg, what, vol, folds, tta in cases:
        folder = f"{root}/nnUNetTrainer__nnUNetPlans__{cfg}"
        m = load_model(folder, options={"folds": list(folds), "tta": tta})
        t = time.time()
        ours = m.predict(vol)
        t_ours = time.time() - t
        p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=tta,
                            perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
        p.initialize_from_trained_model_folder(folder, use_folds=folds, checkpoint_name="checkpoint_final.pth")
        t = time.time()
        props = {"spacing": list(vol.spacing_kji)}
        seg, probs = p.predict_single_npy_array(vol.array.astype(np.float32), props, None, None, True)
        t_ref = time.time() - t
        dp = float(np.abs(probs - ours.probabilities.array).max())
        agree = float((seg == ours.labels.array[0]).mean())
        n_windows = len(m.window_plan(m.prepare(vol).model_shape).slices)
        print(f"{cfg} | {what} | folds {folds} | mirroring {tta} | windows {n_windows} | max|dp| {dp:.3g} | "
              f"argmax agreement {agree:.6f} | ours {t_ours:.1f} s, nnUNetPredictor {t_ref:.1f} s", flush=True)


if __name__ == "__main__":
    main()
