"""Sample data for the built-in models, made on this computer (no download): the brain phantom and a chest X-ray.

Each function adds the case to a scene and returns ``{"volumes": [...], "reference": segmentation}``: the input
volumes in the model's channel order and the known truth as a segmentation with named segments (and terminology
for the brain's classes), grouped under a patient and study in the subject hierarchy. Qt-free.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import slicer

from MedXAILib.volume import Volume

from . import bridge, terminology

BRAIN_SEED = 7
#: The `demo` command's held-out chest phantom (the demo models were trained on seeds < 10 000).
XRAY_SEED = 20_261_126
BRAIN_CLASSES = {1: "necrotic core", 2: "oedema", 3: "enhancing rim"}


def _place_case(scene: slicer.vtkMRMLScene, nodes: Sequence[Any], patient_name: str, study_name: str) -> None:
    sh = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    if sh is None:
        return
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), patient_name)
    study = sh.CreateStudyItem(patient, study_name)
    for node in nodes:
        item = sh.GetItemByDataNode(node)
        if item:
            sh.SetItemParent(item, study)
        else:
            sh.CreateItem(study, node)


def brain_phantom_case(scene: slicer.vtkMRMLScene, seed: int = BRAIN_SEED) -> dict[str, Any]:
    """The BraTS-like brain phantom for ``demo-brain-tumour``: t1, t1ce, t2, flair and the tumour's truth."""
    from MedXAILib.phantoms import make_brain_phantom

    phantom = make_brain_phantom(seed)
    volumes = [bridge.add_volume_node(scene, phantom.image.channel(c), f"MedXAIPhantom_{name}", channel=None)
               for c, name in enumerate(["t1", "t1ce", "t2", "flair"])]
    reference = bridge.labelmap_to_segmentation(scene, phantom.label, volumes[0], BRAIN_CLASSES,
                                                name="MedXAIPhantom truth",
                                                terminology=terminology.entries_for_labels(BRAIN_CLASSES))
    _place_case(scene, volumes + [reference], "MedXAI phantom", f"seed {seed}")
    return {"volumes": volumes, "reference": reference}


def chest_xray_case(scene: slicer.vtkMRMLScene, seed: int = XRAY_SEED) -> dict[str, Any]:
    """A synthetic frontal chest radiograph for ``demo-chest-xray`` (2D, 1.4 mm pixels) with a nodule and an
    enlarged heart, and their true regions as segments (one per present finding)."""
    from MedXAILib.phantoms import CHEST_FINDINGS, make_chest_phantom

    phantom = make_chest_phantom(seed, findings=(1, 1, 0))
    xray = bridge.add_volume_node(scene, phantom.image, "MedXAIChestXray", channel=None)
    labels = np.zeros(phantom.masks.shape[1:], np.int16)
    for index, mask in enumerate(phantom.masks):
        labels[mask] = index + 1
    reference = bridge.labelmap_to_segmentation(
        scene, Volume(labels[None, None], phantom.image.ijk_to_ras), xray,
        {i + 1: name for i, name in enumerate(CHEST_FINDINGS)}, name="MedXAIChestXray truth")
    _place_case(scene, [xray, reference], "MedXAI chest X-ray", f"seed {seed}")
    return {"volumes": [xray], "reference": reference}

