"""Planted artifacts: where an artifact goes (seeded, per case) and how it is drawn, in 2D and 3D.

Three kinds, each drawn on the input grid of a :class:`~MedXAILib.volume.Volume` ``(C, K, J, I)`` and returned with
its ``(K, J, I)`` boolean mask, the artifact's footprint: for a tag or patch the voxels it sets (a voxel that already
held the marker's value keeps it: 14 of the 621 NIH X-rays at 256 px have such voxels under the tag, at most 6 % of
it), for a blob its 10 %-of-peak region (it changes the voxels around it a little too):

- ``tag``: a small bright letter (``L`` or ``R``, a 4 × 5 block glyph like a radiographer's laterality marker) near
  one of the two upper corners of the image; in 3D the letter is extruded over a slab of slices. Its value per
  channel is the channel's 99.5th percentile (:func:`bright_value`).
- ``patch``: a filled square (a cube in 3D) of the same fixed value per channel, at a seeded position inside the
  image.
- ``intensity``: a smooth hyperintense blob (MRI): a Gaussian of full width at half maximum ``size`` added to the
  foreground (voxels where any channel differs from the background value of the image's first voxel; the whole
  image when none does), with a peak of
  ``contrast`` standard deviations of the channel's foreground intensities. Its mask is where the added signal is at
  least 10 % of the peak.

``size`` is in millimetres (tag: letter height; patch: side; intensity: FWHM); by default a fraction of the smallest
in-plane field of view (:data:`DEFAULT_SIZE_FRACTION`). Positions and sizes come from a random generator seeded by
``(seed, CRC-32 of the case id, stream)``, so the same case gets the same artifact in every run, process and fold,
whatever the order cases are read in.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..volume import Volume

ARTIFACT_KINDS = ("tag", "patch", "intensity")
#: Default size as a fraction of the smallest in-plane field of view (mm per mm).
DEFAULT_SIZE_FRACTION = {"tag": 0.12, "patch": 0.10, "intensity": 0.12}
#: Default peak of the intensity blob, in standard deviations of the channel's foreground intensities.
DEFAULT_CONTRAST = 2.0
#: The blob's mask: where the added signal reaches this share of its peak.
BLOB_MASK_LEVEL = 0.1
#: Seed streams of the per-case generators: presence, placement on the case, placement away from the lesion.
STREAM_PRESENCE, STREAM_PLACE, STREAM_PLACE_OFF = 0, 1, 2

# 4 × 5 block glyphs (rows top to bottom): the laterality letters
_GLYPHS = {
    "L": ["X...", "X...", "X...", "X...", "XXXX"],
    "R": ["XXX.", "X..X", "XXX.", "X.X.", "X..X"],
}


@dataclass(frozen=True)
class ArtifactSpec:
    """What to plant.

    Attributes:
        kind: ``tag``, ``patch`` or ``intensity``.
        strength: in training, the artifact accompanies a positive case with this probability and a negative one
            with ``1 − strength`` (0.5: no confounding; 1: perfect confounding).
        seed: seeds the per-case positions, sizes and presence.
        size_mm: letter height (tag), side (patch) or FWHM (intensity) in mm; None: a fraction of the field of view.
        contrast: intensity blob peak in standard deviations of the foreground (intensity only).
    """

    kind: str
    strength: float = 0.9
    seed: int = 0
    size_mm: float | None = None
    contrast: float = DEFAULT_CONTRAST

    def check(self) -> None:
        """Refuse values that cannot work (raises :class:`InputError`)."""
        if self.kind not in ARTIFACT_KINDS:
            raise InputError(f"--artifact must be one of {', '.join(ARTIFACT_KINDS)}; got {self.kind!r}")
        if not (0.0 <= float(self.strength) <= 1.0):
            raise InputError(f"--strength must lie in [0, 1] (the probability that the artifact accompanies a "
                             f"positive case); got {self.strength}")
        if self.size_mm is not None and not (float(self.size_mm) > 0 and np.isfinite(self.size_mm)):
            raise InputError(f"--artifact-size must be a positive number of mm; got {self.size_mm}")
        if not (float(self.contrast) > 0 and np.isfinite(self.contrast)):
            raise InputError(f"--artifact-contrast must be a positive number of standard deviations; got "
                             f"{self.contrast}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ArtifactSpec:
        spec = ArtifactSpec(**{k: data[k] for k in ("kind", "strength", "seed", "size_mm", "contrast") if k in data})
        spec.check()
        return spec


@dataclass(frozen=True)
class Placement:
    """Where one case's artifact lies, in voxel indices of its input grid (array order k, j, i).

    Attributes:
        start_kji: first voxel of the artifact's box (tag, patch) or the blob centre (intensity).
        size_kji: the box's extent in voxels (tag, patch) or the blob's σ in voxels (intensity).
        letter: the tag's letter (None for the other kinds).
        size_mm: the size actually used (mm).
    """

    start_kji: tuple[int, int, int]
    size_kji: tuple[float, float, float]
    letter: str | None
    size_mm: float

    def as_dict(self) -> dict[str, Any]:
        return {"start_kji": list(self.start_kji), "size_kji": [round(float(s), 3) for s in self.size_kji],
                "letter": self.letter, "size_mm": round(float(self.size_mm), 3)}


def case_rng(seed: int, case_id: str, stream: int) -> np.random.Generator:
    """The generator of one case and stream, independent of the order cases are visited in."""
    return np.random.default_rng([int(seed) % (2**32), zlib.crc32(str(case_id).encode("utf-8")), int(stream)])


def presence_draw(spec: ArtifactSpec, case_id: str) -> float:
    """The case's uniform draw in [0, 1) that decides whether the artifact is drawn in training."""
    return float(case_rng(spec.seed, case_id, STREAM_PRESENCE).random())


def _fov_mm(volume: Volume) -> tuple[float, float]:
    """In-plane field of view (rows J, columns I) in mm."""
    sk, sj, si = volume.spacing_kji
    return volume.shape[1] * float(sj), volume.shape[2] * float(si)


def artifact_size_mm(spec: ArtifactSpec, volume: Volume) -> float:
    """The size the artifact gets on this image (mm)."""
    if spec.size_mm is not None:
        return float(spec.size_mm)
    return DEFAULT_SIZE_FRACTION[spec.kind] * min(_fov_mm(volume))


def check_fits(spec: ArtifactSpec, volume: Volume, what: str = "the image") -> None:
    """Refuse an artifact that does not fit inside the image (raises :class:`InputError`)."""
    size = artifact_size_mm(spec, volume)
    fov = min(_fov_mm(volume))
    limit = fov / 2.0 if spec.kind == "tag" else fov
    if size >= limit:
        raise InputError(
            f"--artifact-size {size:g} mm does not fit in {what} (in-plane field of view "
            f"{' × '.join(f'{v:.0f}' for v in _fov_mm(volume))} mm; a {spec.kind} must be smaller than "
            f"{limit:.0f} mm)"
        )


def foreground(volume: Volume) -> np.ndarray:
    """``(K, J, I)`` voxels where any channel differs from its background value (the value of the first voxel: 0
    in skull-stripped MRI, a constant in MRI z-scored inside the brain); every voxel when fewer than 1 % of them
    hold that value (an X-ray, a CT: no constant background)."""
    arr = volume.array
    background = arr[:, :1, :1, :1]
    fg = np.any(np.abs(arr - background) > 1e-6 * (1.0 + np.abs(background)), axis=0)
    if not fg.any() or (~fg).sum() < 0.01 * fg.size:
        return np.ones(volume.shape, dtype=bool)
    return fg


def place(
    spec: ArtifactSpec,
    volume: Volume,
    case_id: str,
    allowed: np.ndarray | None = None,
    avoid: np.ndarray | None = None,
    stream: int = STREAM_PLACE,
) -> Placement:
    """Where the artifact goes on this case (deterministic for ``(spec.seed, case_id, stream)``).

    Args:
        allowed: intensity blobs: ``(K, J, I)`` voxels the centre may be drawn from (default: the foreground).
        avoid: intensity blobs: voxels the blob's mask must not reach (e.g. the lesion), best effort: the candidate
            farthest from them is kept when none of 200 draws clears them.

    Raises:
        InputError: the artifact does not fit in the image, or no voxel is allowed.
    """
    check_fits(spec, volume, f"case {case_id}")
    rng = case_rng(spec.seed, case_id, stream)
    size = artifact_size_mm(spec, volume)
    shape = volume.shape
    sk, sj, si = (float(s) for s in volume.spacing_kji)
    if spec.kind == "intensity":
        return _place_blob(rng, volume, size, allowed, avoid, case_id)
    if spec.kind == "tag":
        h = max(5, int(round(size / sj)))
        w = max(4, int(round(size * 0.8 / si)))
        d = 1 if shape[0] == 1 else min(shape[0], max(1, int(round(size * 0.8 / sk))))
        right = bool(rng.integers(2))
        mj = int(round(shape[1] * rng.uniform(0.03, 0.07)))
        mi = int(round(shape[2] * rng.uniform(0.03, 0.07)))
        i0 = shape[2] - mi - w if right else mi
        k0 = 0 if shape[0] == 1 else int(rng.integers(int(0.2 * (shape[0] - d)), int(0.8 * (shape[0] - d)) + 1))
        # the marker names the patient's side shown there on a frontal film in radiological convention
        return Placement((k0, mj, max(0, i0)), (d, h, w), "L" if right else "R", size)
    side = [1 if shape[0] == 1 else min(shape[0], max(1, int(round(size / sk)))),
            max(1, int(round(size / sj))), max(1, int(round(size / si)))]
    start = [0 if n == 1 else int(rng.integers(int(0.05 * (n - s)), int(0.95 * (n - s)) + 1))
             for n, s in zip(shape, side)]
    return Placement(tuple(start), tuple(float(s) for s in side), None, size)  # type: ignore[arg-type]


def _place_blob(rng: np.random.Generator, volume: Volume, fwhm_mm: float, allowed: np.ndarray | None,
                avoid: np.ndarray | None, case_id: str) -> Placement:
    spacing = np.asarray(volume.spacing_kji, dtype=float)
    sigma_vox = fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / spacing
    if volume.shape[0] == 1:
        sigma_vox[0] = 0.0
    cand = np.argwhere(foreground(volume) if allowed is None else allowed)
    if len(cand) == 0:
        raise InputError(f"case {case_id}: no voxel where the intensity artifact may be centred")
    # mask radius in mm: the blob reaches BLOB_MASK_LEVEL of its peak at sqrt(2 ln(1/level)) σ
    reach_mm = float(np.sqrt(2.0 * np.log(1.0 / BLOB_MASK_LEVEL)) * fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))))
    if avoid is not None and avoid.any():
        targets = np.argwhere(avoid).astype(float) * spacing
        step = max(1, len(targets) // 20000)
        targets = targets[::step]
        best, best_d = None, -1.0
        for _ in range(200):
            c = cand[int(rng.integers(len(cand)))]
            d = float(np.sqrt(((targets - c * spacing) ** 2).sum(axis=1)).min())
            if d > best_d:
                best, best_d = c, d
            if d > reach_mm:
                break
        centre = best
    else:
        centre = cand[int(rng.integers(len(cand)))]
    assert centre is not None
    return Placement(tuple(int(v) for v in centre), tuple(float(s) for s in sigma_vox), None,  # type: ignore[arg-type]
                     fwhm_mm)


def bright_value(channel: np.ndarray) -> float:
    """The value of a tag or patch in one channel: its 99.5th percentile, as bright as the brightest anatomy.

    Neither brighter nor darker: the 99.5th percentile is the top of the usual intensity window (percentile
    normalisation, 0.5–99.5), and pixels set exactly to it leave that percentile where it was. A brighter marker of
    more than 0.5 % of the image would become the new top and a darker one would pull it down; either would change
    every pixel the model sees, not only the marker's.
    """
    return float(np.percentile(channel, 99.5))


def render(spec: ArtifactSpec, volume: Volume, placement: Placement) -> tuple[Volume, np.ndarray]:
    """Draw the artifact; returns ``(new Volume, (K, J, I) bool mask)`` (the input is not modified)."""
    arr = volume.array.astype(np.float32, copy=True)
    mask = np.zeros(volume.shape, dtype=bool)
    if spec.kind == "intensity":
        g = blob(volume.shape, placement)
        fg = foreground(volume)
        for c in range(arr.shape[0]):
            vals = arr[c][fg]
            sd = float(vals.std()) if vals.size else 0.0
            arr[c] += (spec.contrast * (sd if sd > 0 else 1.0) * g * fg).astype(np.float32)
        mask = (g >= BLOB_MASK_LEVEL) & fg
        return volume.with_array(arr), mask
    (k0, j0, i0) = placement.start_kji
    d, h, w = (int(round(s)) for s in placement.size_kji)
    box = (slice(k0, k0 + d), slice(j0, j0 + h), slice(i0, i0 + w))
    if spec.kind == "tag":
        glyph = np.array([[ch == "X" for ch in row] for row in _GLYPHS[placement.letter or "L"]])
        rows = np.minimum((np.arange(h) * glyph.shape[0]) // h, glyph.shape[0] - 1)
        cols = np.minimum((np.arange(w) * glyph.shape[1]) // w, glyph.shape[1] - 1)
        stroke = glyph[rows][:, cols]
        mask[box] = stroke[None]
    else:
        mask[box] = True
    for c in range(arr.shape[0]):
        arr[c][mask] = bright_value(volume.array[c])
    return volume.with_array(arr), mask


def blob(shape: tuple[int, int, int], placement: Placement) -> np.ndarray:
    """The unit-peak Gaussian of an intensity placement on a ``(K, J, I)`` grid (float32)."""
    out = np.zeros(shape, dtype=np.float32)
    centre = np.asarray(placement.start_kji, dtype=float)
    sigma = np.asarray(placement.size_kji, dtype=float)
    lo = [int(max(0, np.floor(c - 4 * s))) for c, s in zip(centre, sigma)]
    hi = [int(min(n, np.ceil(c + 4 * s) + 1)) for c, s, n in zip(centre, sigma, shape)]
    axes = []
    for a in range(3):
        x = np.arange(lo[a], hi[a], dtype=float) - centre[a]
        axes.append(np.exp(-0.5 * (x / sigma[a]) ** 2) if sigma[a] > 0 else (x == 0).astype(float))
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = (
        axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    ).astype(np.float32)
    return out


__all__ = ["ARTIFACT_KINDS", "ArtifactSpec", "Placement", "artifact_size_mm", "blob", "case_rng", "check_fits",
           "foreground", "place", "presence_draw", "render"]
