"""DICOM in and out.

- :mod:`.series` — read one image series (a folder of single-frame slices, one enhanced multi-frame file, or a
  single-frame 2D image such as an X-ray) into a :class:`~MedXAILib.volume.Volume`, after checking that the slices form
  one regular grid; the :class:`DicomSource` it returns remembers the source instances so outputs can reference them.
- :mod:`.pixels` — the pixel data of those files, checked against its declared size before it is decoded, as
  modality values.
- :mod:`.seg` — a DICOM Segmentation (SEG) from a prediction, one segment per class, with coded terminology.
- :mod:`.pmap` — a DICOM Parametric Map from a heat map (float pixels, real-world value mapping).
- :mod:`.terminology` — SNOMED CT codes for class names (and a marked local scheme for the rest).

Writing goes through ``highdicom``; reading headers through ``pydicom``. Both are imported lazily, so importing
MedXAILib does not need them.
"""

from __future__ import annotations

from .series import DicomSource, is_dicom_path, read_dicom, split_series_spec

__all__ = ["DicomSource", "is_dicom_path", "read_dicom", "split_series_spec"]
