"""Dataset readers: the published on-disk layouts of public cohorts, listed as :class:`Case` records with patient IDs.

``open_dataset("KIND:PATH")`` lists a cohort without reading any image; :meth:`Case.load` reads one case through
:mod:`MedXAILib.io` (or generates it, for phantoms). Every case carries a ``patient_id`` so that cross-validation
folds can be cut per patient (:mod:`MedXAILib.splits`): several scans of one patient never end up on both sides
of a split.

Kinds (``KIND:PATH``):

- ``brats2021:DIR``: ``BraTS2021_xxxxx/BraTS2021_xxxxx_{t1,t1ce,t2,flair,seg}.nii.gz``; labels 1 necrotic core,
  2 oedema, 4 enhancing tumour.
- ``brats2023:DIR``: ``BraTS-GLI-xxxxx-yyy/BraTS-GLI-xxxxx-yyy-{t1n,t1c,t2w,t2f,seg}.nii.gz``; the patient is
  ``BraTS-GLI-xxxxx`` (``-yyy`` is the time point); labels 1 non-enhancing core, 2 oedema, 3 enhancing tumour.
- ``msd:DIR``: Medical Segmentation Decathlon Task01_BrainTumour (``dataset.json``, 4D ``imagesTr/``, ``labelsTr/``).
- ``chestxray14:DIR``: NIH ChestX-ray14 (``Data_Entry_2017*.csv[.gz]``, ``images/``, ``BBox_List_2017.csv[.gz]``,
  ``train_val_list.txt`` / ``test_list.txt``).
- ``deepmedic:DIR``: the BRATS 2015 example layout shipped with DeepMedic (FLAIR + T1c, ``OTMultiClass``).
- ``csv:FILE``: a generic manifest.
- ``phantom:N`` / ``phantom-brain:N`` / ``phantom-chest:N``: synthetic cases with known truth.

Brain images are always returned in the channel order ``t1, t1ce, t2, flair`` (the channels a dataset has, in that
order), whatever the file naming of the release.


One module per layout (:mod:`.brats`, :mod:`.msd`, :mod:`.chestxray14`, :mod:`.deepmedic`, :mod:`.csv_manifest`,
:mod:`.phantom`), each registering its ``KIND`` with :func:`.base.register`; :mod:`.base` holds the records and
:func:`open_dataset`. To add a layout, copy one module, register it, and import it here.
"""

from . import brats, chestxray14, csv_manifest, deepmedic, msd, phantom  # noqa: F401 - each registers its kinds
from .base import (
    BRAIN_CHANNELS,
    CHESTXRAY14_FINDINGS,
    LAYOUTS,
    PHANTOM_SEED_BASE,
    Box,
    Case,
    Dataset,
    kinds,
    open_dataset,
    register,
)

#: The dataset kinds ``open_dataset`` understands.
KINDS = kinds()

__all__ = [
    "BRAIN_CHANNELS",
    "CHESTXRAY14_FINDINGS",
    "KINDS",
    "LAYOUTS",
    "PHANTOM_SEED_BASE",
    "Box",
    "Case",
    "Dataset",
    "open_dataset",
    "register",
]
