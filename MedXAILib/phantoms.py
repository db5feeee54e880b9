"""Deterministic synthetic phantoms: a BraTS-like multi-sequence brain MRI and a chest X-ray.

Every phantom is a pure function of its integer ``seed`` (a :class:`numpy.random.Generator`), so tests, demos and
the training of the built-in demo models can regenerate exactly the same data anywhere. Each phantom takes well
under a second to build.

* :func:`make_brain_phantom` — a head (scalp, skull, cerebrospinal fluid, grey and white matter, ventricles) with a
  glioma-like tumour: a necrotic core (sometimes absent) inside an enhancing rim inside oedema. Four sequences
  ``t1, t1ce, t2, flair`` with their usual contrasts, a smooth multiplicative bias field and Rician noise. Voxels
  outside the head are exactly 0 (so a foreground z-score can find the head).
* :func:`make_chest_phantom` — a frontal chest radiograph (lungs, mediastinum, heart, ribs, soft tissue) with three
  independent findings (:data:`CHEST_FINDINGS`): a lung nodule, cardiomegaly and a basal pleural effusion, each with
  its truth mask and bounding box.

Layouts follow :mod:`MedXAILib.volume`: arrays are channel-first ``(C, K, J, I)``; distances are millimetres.
Anatomy is laid out in millimetres along the grid axes about the grid centre, so an anisotropic grid samples the
same head more or less finely, and a rotated ``direction`` only changes where the grid sits in RAS, not the array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from .volume import Volume, make_ijk_to_ras

BRAIN_CHANNELS: list[str] = ["t1", "t1ce", "t2", "flair"]
BRAIN_LABELS: list[str] = ["background", "necrotic core", "oedema", "enhancing rim"]
CHEST_FINDINGS: list[str] = ["nodule", "cardiomegaly", "effusion"]
CHEST_PIXEL_SPACING_MM = 1.4

__all__ = [
    "BRAIN_CHANNELS",
    "BRAIN_LABELS",
    "CHEST_FINDINGS",
    "CHEST_PIXEL_SPACING_MM",
    "BrainPhantom",
    "ChestPhantom",
    "make_brain_phantom",
    "make_chest_phantom",
    "phantom_cohort",
]

# Mean intensity (arbitrary units before the per-sequence scanner gain) of each tissue in t1, t1ce, t2, flair.
_TISSUE_CONTRAST: dict[str, tuple[float, float, float, float]] = {
    "scalp": (0.75, 0.78, 0.55, 0.60),
    "skull": (0.10, 0.10, 0.08, 0.08),
    "csf": (0.20, 0.22, 1.00, 0.12),
    "grey": (0.45, 0.47, 0.62, 0.55),
    "white": (0.62, 0.64, 0.45, 0.42),
    "oedema": (0.36, 0.38, 0.88, 0.92),
    "enhancing": (0.46, 1.05, 0.70, 0.72),
    "necrotic": (0.24, 0.18, 0.92, 0.55),
}


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------------
def _smooth_field(
    rng: np.random.Generator,
    coords: Sequence[np.ndarray],
    wavelength_mm: tuple[float, float],
    n_waves: int = 8,
) -> np.ndarray:
    """A smooth random field (zero mean, roughly in [-1, 1]) defined in millimetres.

    A sum of ``n_waves`` plane cosines with random directions, phases and wavelengths drawn from ``wavelength_mm``
    (min, max). ``coords`` are broadcastable coordinate arrays in mm (one per axis); the result broadcasts to their
    common shape. Defined in physical units, so the same seed gives the same pattern on any grid.
    """
    ndim = len(coords)
    shape = np.broadcast_shapes(*(c.shape for c in coords))
    out = np.zeros(shape, dtype=np.float32)
    for _ in range(n_waves):
        d = rng.normal(size=ndim)
        d /= np.linalg.norm(d) + 1e-12
        k = 2.0 * np.pi / rng.uniform(*wavelength_mm)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        arg = phase + sum(float(k * d[a]) * coords[a] for a in range(ndim))
        out += np.cos(arg).astype(np.float32)
    return out * np.float32(np.sqrt(2.0 / n_waves))


def _as_spacing(spacing: float | Sequence[float]) -> np.ndarray:
    sp = np.asarray(spacing, dtype=float).ravel()
    if sp.size == 1:
        sp = np.repeat(sp, 3)
    if sp.size != 3 or np.any(sp <= 0):
        raise ValueError(f"spacing must be one positive number or three (i, j, k) in mm; got {spacing!r}")
    return sp


# ---------------------------------------------------------------------------------------------------------------
# Brain
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class BrainPhantom:
    """A synthetic BraTS-like case.

    Attributes:
        image: ``(4, K, J, I)`` float32 Volume, channels ``t1, t1ce, t2, flair``; exactly 0 outside the head.
        label: ``(1, K, J, I)`` int16 Volume: 0 background, 1 necrotic core, 2 oedema, 3 enhancing rim.
        brain_mask: ``(1, K, J, I)`` uint8 Volume, 1 inside the brain (parenchyma, ventricles and tumour).
        head_mask: ``(1, K, J, I)`` uint8 Volume, 1 inside the head (everything that is not exactly 0 in ``image``).
        info: generation parameters: ``tumour_center_ras`` (mm), ``tumour_center_ijk`` (voxel index i, j, k),
            ``core_radius_mm``, ``oedema_margin_mm``, ``has_necrosis``, ``gains`` (per channel), ``seed``.
    """

    image: Volume
    label: Volume
    brain_mask: Volume
    head_mask: Volume
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def whole_tumour(self) -> np.ndarray:
        """``(K, J, I)`` bool: any tumour label (BraTS "WT")."""
        return self.label.array[0] > 0

    @property
    def tumour_core(self) -> np.ndarray:
        """``(K, J, I)`` bool: necrotic core or enhancing rim (BraTS "TC")."""
        lab = self.label.array[0]
        return (lab == 1) | (lab == 3)

    @property
    def enhancing(self) -> np.ndarray:
        """``(K, J, I)`` bool: enhancing rim (BraTS "ET")."""
        return self.label.array[0] == 3


def make_brain_phantom(
    seed: int,
    shape: Sequence[int] = (64, 96, 96),
    spacing: float | Sequence[float] = 2.0,
    direction: np.ndarray | None = None,
    origin: Sequence[float] | None = None,
    noise: float = 0.035,
) -> BrainPhantom:
    """Build a multi-sequence brain MRI phantom with a glioma-like tumour.

    Args:
        seed: the only source of randomness; equal seeds give identical phantoms.
        shape: grid size ``(K, J, I)`` in voxels. The default covers 192 × 192 × 128 mm at 2 mm.
        spacing: voxel size in mm, one number or three in ``(i, j, k)`` order (as :func:`make_ijk_to_ras`).
        direction: optional 3×3 matrix whose columns are the RAS unit vectors of the i, j, k axes (oblique grids).
        origin: RAS position (mm) of voxel (0, 0, 0); by default the grid centre sits at RAS (0, 0, 0).
        noise: Rician noise standard deviation relative to white-matter intensity.

    The head is laid out along the grid axes: i is left–right, j posterior–anterior, k inferior–superior, all in mm
    from the grid centre. The tumour centre, size (core radius 8–18 mm, oedema margin 4–14 mm) and outline are
    random; a quarter of the tumours have no necrotic core.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be (K, J, I) with each at least 4 voxels; got {shape!r}")
    sp = _as_spacing(spacing)
    nk, nj, ni = shape
    x = ((np.arange(ni) - (ni - 1) / 2.0) * sp[0]).astype(np.float32)[None, None, :]
    y = ((np.arange(nj) - (nj - 1) / 2.0) * sp[1]).astype(np.float32)[None, :, None]
    z = ((np.arange(nk) - (nk - 1) / 2.0) * sp[2]).astype(np.float32)[:, None, None]
    coords = (x, y, z)
    full = (nk, nj, ni)

    # --- head and brain outlines -------------------------------------------------------------------------------
    scale = rng.uniform(0.86, 1.0)
    axes = np.array([70.0, 88.0, 60.0]) * scale  # semi-axes (mm) along i (LR), j (PA), k (IS)
    centre = rng.normal(0.0, 2.0, size=3) * np.array([1.0, 1.0, 0.5])
    shape_field = _smooth_field(rng, coords, (80.0, 160.0), 6)
    r_head = np.sqrt(
        ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((z - centre[2]) / axes[2]) ** 2
    ) * (1.0 + 0.025 * shape_field)
    a_min = float(axes.min())
    scalp_t, skull_t, csf_t = rng.uniform(4.0, 6.0), rng.uniform(5.0, 7.0), rng.uniform(2.0, 3.5)
    head = r_head < 1.0
    inside_scalp = r_head < 1.0 - scalp_t / a_min
    inside_skull = r_head < 1.0 - (scalp_t + skull_t) / a_min
    brain_edge = 1.0 - (scalp_t + skull_t + csf_t) / a_min
    brain = r_head < brain_edge
    r_brain = r_head / brain_edge

    # grey/white matter: white matter is the inner brain with a folded (gyral) boundary
    gyri = _smooth_field(rng, coords, (14.0, 30.0), 10)
    white = brain & (r_brain + 0.07 * gyri < 0.80)

    # ventricles: a pair of elongated ellipsoids either side of the midline
    vs = rng.uniform(0.7, 1.3)
    vent = np.zeros(full, dtype=bool)
    for side in (-1.0, 1.0):
        c = centre + np.array([side * 9.0 * scale, 4.0, 6.0])
        q = ((x - c[0]) / (5.0 * vs)) ** 2 + ((y - c[1]) / (24.0 * scale)) ** 2 + ((z - c[2]) / (11.0 * vs)) ** 2
        vent |= q < 1.0
    vent &= brain

    # --- tumour --------------------------------------------------------------------------------------------------
    for _ in range(1000):
        u = rng.uniform(-1.0, 1.0, size=3)
        if np.linalg.norm(u) < 0.55:
            break
    # keep the tumour off the midline so it sits in one hemisphere
    if abs(u[0]) < 0.2:
        u[0] = 0.2 * (1 if u[0] >= 0 else -1)
    t_centre = centre + u * axes * brain_edge
    core_r = rng.uniform(8.0, 18.0)
    margin = rng.uniform(4.0, 14.0)
    has_necrosis = bool(rng.random() < 0.75)
    nec_frac = rng.uniform(0.45, 0.72)
    g1 = _smooth_field(rng, coords, (18.0, 40.0), 8)
    g2 = _smooth_field(rng, coords, (20.0, 50.0), 8)
    dist = np.sqrt((x - t_centre[0]) ** 2 + (y - t_centre[1]) ** 2 + (z - t_centre[2]) ** 2)
    core_level = dist / core_r * (1.0 + 0.22 * g1)
    core = brain & (core_level < 1.0)
    if not core.any():  # a very coarse grid can miss a small core: keep at least the centre voxel
        idx = np.unravel_index(np.argmin(core_level + 1e3 * ~brain), full)
        core[idx] = True
    oed_level = dist / (core_r + margin) * (1.0 + 0.25 * g2)
    oedema_region = brain & ((oed_level < 1.0) | core)
    # keep only the oedema connected to the core (no detached specks)
    comp, _ = ndimage.label(oedema_region)
    oedema_region = np.isin(comp, np.unique(comp[core]))
    necrosis = core & (core_level < nec_frac) if has_necrosis else np.zeros(full, dtype=bool)
    # the necrotic core must be wrapped by enhancing rim: never let it touch non-core voxels
    necrosis &= ndimage.binary_erosion(core, structure=ndimage.generate_binary_structure(3, 1))
    rim = core & ~necrosis
    oed = oedema_region & ~core

    label = np.zeros(full, dtype=np.int16)
    label[oed] = 2
    label[rim] = 3
    label[necrosis] = 1

    # --- intensities -----------------------------------------------------------------------------------------------
    tissue = np.zeros(full, dtype=np.uint8)  # 0 air
    names = ["air", "scalp", "skull", "csf", "grey", "white", "oedema", "enhancing", "necrotic"]
    tissue[head] = 1
    tissue[inside_scalp] = 2
    tissue[inside_skull] = 3
    tissue[brain] = 4
    tissue[white] = 5
    tissue[vent] = 3
    tissue[oed] = 6
    tissue[rim] = 7
    tissue[necrosis] = 8
    lut = np.zeros((len(names), 4), dtype=np.float32)
    for t, name in enumerate(names[1:], start=1):
        base = np.asarray(_TISSUE_CONTRAST[name], dtype=np.float32)
        lut[t] = base * rng.uniform(0.93, 1.07, size=4).astype(np.float32)

    texture = _smooth_field(rng, coords, (6.0, 14.0), 8)
    tumour_tex = _smooth_field(rng, coords, (5.0, 12.0), 8)
    bias_field = _smooth_field(rng, coords, (150.0, 300.0), 4)
    gains = rng.uniform(300.0, 1500.0, size=4)
    image = np.empty((4,) + full, dtype=np.float32)
    tumour_any = label > 0
    for ch in range(4):
        img = lut[tissue, ch]
        img = img * (1.0 + 0.04 * texture + 0.10 * tumour_tex * tumour_any)
        img = img * np.exp(rng.uniform(0.08, 0.18) * bias_field * rng.choice([-1.0, 1.0]))
        sigma = noise * float(lut[5, ch])
        n1 = rng.normal(0.0, sigma, size=full).astype(np.float32)
        n2 = rng.normal(0.0, sigma, size=full).astype(np.float32)
        img = np.sqrt((img + n1) ** 2 + n2**2)
        img = np.maximum(img, np.float32(1e-3)) * np.float32(gains[ch])
        img[~head] = 0.0
        image[ch] = img

    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    if origin is None:
        half = (np.array([ni, nj, nk], dtype=float) - 1.0) / 2.0 * sp
        origin = -(d @ half)
    m = make_ijk_to_ras(sp, origin, d)
    t_ijk = t_centre / sp + (np.array([ni, nj, nk], dtype=float) - 1.0) / 2.0
    t_ras = (m @ np.append(t_ijk, 1.0))[:3]
    info = {
        "seed": int(seed),
        "tumour_center_ras": [float(v) for v in t_ras],
        "tumour_center_ijk": [float(v) for v in t_ijk],
        "core_radius_mm": float(core_r),
        "oedema_margin_mm": float(margin),
        "has_necrosis": bool(necrosis.any()),
        "gains": [float(g) for g in gains],
    }
    return BrainPhantom(
        image=Volume(image, m.copy(), list(BRAIN_CHANNELS)),
        label=Volume(label[None], m.copy(), ["label"]),
        brain_mask=Volume(brain[None].astype(np.uint8), m.copy(), ["brain"]),
        head_mask=Volume(head[None].astype(np.uint8), m.copy(), ["head"]),
        info=info,
    )


# ---------------------------------------------------------------------------------------------------------------
# Chest
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ChestPhantom:
    """A synthetic frontal chest radiograph.

    Attributes:
        image: ``(1, 1, size, size)`` float32 Volume (dense = bright, air = dark), pixel spacing 1.4 mm.
        labels: ``(3,)`` int64 of 0/1, one per :data:`CHEST_FINDINGS` (nodule, cardiomegaly, effusion).
        masks: ``(3, size, size)`` bool, rows J by columns I: the truth region of each present finding (nodule
            disks, the enlarged heart silhouette, the basal fluid); all False when the finding is absent.
        boxes: ``{finding: (x, y, w, h)}`` in pixels for the present findings: x = first column (I), y = first row
            (J), w and h the width and height of the mask's bounding box.
        info: generation parameters (``cardiothoracic_ratio``, ``seed``, ...).
    """

    image: Volume
    labels: np.ndarray
    masks: np.ndarray
    boxes: dict[str, tuple[int, int, int, int]]
    info: dict[str, Any] = field(default_factory=dict)


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def make_chest_phantom(
    seed: int,
    size: int = 256,
    findings: Sequence[int] | None = None,
) -> ChestPhantom:
    """Build a frontal chest X-ray phantom with independently drawn findings.

    Args:
        seed: the only source of randomness; equal seeds give identical phantoms.
        size: image width and height in pixels; the field of view is ``256 × 1.4 mm`` ≈ 358 mm whatever the size
            (the pixel spacing is ``358.4 / size`` mm, 1.4 mm at the default size).
        findings: optional forced ``(nodule, cardiomegaly, effusion)`` 0/1 flags; by default each is present with
            probability 0.5, independently.

    Body size, position, exposure (gain, offset, gamma) and rib layout vary, so no global statistic gives a
    finding away: cardiomegaly is a heart wider than half of the thorax (cardiothoracic ratio 0.55–0.68 against
    0.36–0.47), an effusion fills a lung base with a lateral meniscus, a nodule is a 9–20 mm round opacity in a lung.
    """
    rng = np.random.default_rng(seed)
    size = int(size)
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels; got {size}")
    fov = 256 * CHEST_PIXEL_SPACING_MM
    px = fov / size
    flags = (rng.random(3) < 0.5).astype(np.int64)
    if findings is not None:
        flags = np.asarray(findings, dtype=np.int64).reshape(3)
    has_nodule, has_cardio, has_effusion = (bool(f) for f in flags)

    u = ((np.arange(size) - (size - 1) / 2.0) * px).astype(np.float32)[None, :]  # mm, column direction
    v = ((np.arange(size) - (size - 1) / 2.0) * px).astype(np.float32)[:, None]  # mm, row direction (down)
    coords = (v, u)

    # --- body and thorax -------------------------------------------------------------------------------------------
    body_w = rng.uniform(125.0, 168.0)  # half-width of the torso, mm
    cx, cy = rng.normal(0.0, 6.0), rng.normal(0.0, 6.0)
    torso = np.abs((u - cx) / body_w) ** 4 + np.abs(np.maximum(v - cy - 10.0, 0.0) / 400.0) ** 4 < 1.0
    # shoulders: the body narrows above the apices
    thorax_half = body_w * rng.uniform(0.80, 0.88)  # inner rib cage half-width, mm
    lung_h = rng.uniform(1.45, 1.75) * thorax_half  # lung height, apex to costophrenic angle, mm
    lung_top = cy - 0.62 * lung_h
    lung_bottom = lung_top + lung_h
    shoulder = (v - lung_top) < -18.0 + 0.6 * np.maximum(np.abs(u - cx) - 0.55 * body_w, 0.0)
    neck = np.abs(u - cx) < 0.28 * body_w
    body = torso & (~shoulder | neck)
    tissue_thick = np.clip(1.0 - ((u - cx) / (body_w * 1.05)) ** 2, 0.0, 1.0) ** 0.5 * body
    med_half = thorax_half * rng.uniform(0.16, 0.22)  # mediastinum half-width
    lungs = np.zeros((size, size), dtype=bool)
    lung_fields: list[np.ndarray] = []
    outline = _smooth_field(rng, coords, (60.0, 120.0), 4)
    side_centres = []
    for side in (-1.0, 1.0):
        inner = cx + side * med_half
        outer = cx + side * thorax_half
        lc = (inner + outer) / 2.0
        lw = abs(outer - inner) / 2.0
        side_centres.append((lc, lw))
        mid_v = (lung_top + lung_bottom) / 2.0
        lung_half_h = lung_h / 2.0
        q = ((u - lc) / lw) ** 2 + ((v - mid_v) / lung_half_h) ** 4
        # apex rounded: use an ellipse profile in the upper half
        q = np.where(v < mid_v, ((u - lc) / lw) ** 2 + ((v - mid_v) / lung_half_h) ** 2, q)
        # diaphragm dome: the lung base rises medially
        dome = lung_bottom - 18.0 * (1.0 - ((u - lc) / lw) ** 2).clip(0.0, 1.0)
        field_side = (q * (1.0 + 0.04 * outline) < 1.0) & (v < dome)
        lung_fields.append(field_side)
        lungs |= field_side

    # --- heart -----------------------------------------------------------------------------------------------------
    ctr = rng.uniform(0.55, 0.68) if has_cardio else rng.uniform(0.36, 0.47)
    heart_w = ctr * 2.0 * thorax_half
    heart_h = heart_w * rng.uniform(0.70, 0.85) if has_cardio else heart_w * rng.uniform(0.85, 1.0)
    heart_cx = cx + heart_w * rng.uniform(0.10, 0.18)  # shifted to the patient's left (image right)
    heart_cy = lung_bottom - heart_h * 0.42
    heart = ((u - heart_cx) / (heart_w / 2.0)) ** 2 + ((v - heart_cy) / (heart_h / 2.0)) ** 2 < 1.0
    heart &= v < lung_bottom + 5.0

    # --- effusion --------------------------------------------------------------------------------------------------
    fluid = np.zeros((size, size), dtype=bool)
    eff_sides: list[int] = []
    if has_effusion:
        r = rng.random()
        eff_sides = [0, 1] if r < 0.3 else [int(rng.integers(0, 2))]
        for s in eff_sides:
            lc, lw = side_centres[s]
            lateral = 1.0 if (lc - cx) > 0 else -1.0
            depth = rng.uniform(0.25, 0.45) * lung_h
            level = lung_bottom - depth
            # meniscus: the fluid climbs up the lateral chest wall
            t = ((u - lc) * lateral / lw).clip(-1.0, 1.5)
            surface = level - 0.35 * depth * np.maximum(t, 0.0) ** 2 - 0.1 * depth * np.minimum(t, 0.0)
            fluid |= lung_fields[s] & (v > surface)

    # --- nodules ---------------------------------------------------------------------------------------------------
    nodule_mask = np.zeros((size, size), dtype=bool)
    nodule_img = np.zeros((size, size), dtype=np.float32)
    if has_nodule:
        n_nod = 1 if rng.random() < 0.75 else 2
        free = lungs & ~heart & ~fluid
        free = ndimage.binary_erosion(free, iterations=max(1, int(round(8.0 / px))))
        cand = np.argwhere(free)
        if len(cand) == 0:
            cand = np.argwhere(lungs)
        for _ in range(n_nod):
            rr, cc = cand[rng.integers(len(cand))]
            rad = rng.uniform(4.5, 10.0)  # radius, mm
            dd = np.sqrt((u - u[0, cc]) ** 2 + (v - v[rr, 0]) ** 2)
            nodule_mask |= dd <= rad
            nodule_img += rng.uniform(0.30, 0.45) * np.clip(1.2 * (1.0 - (dd / rad) ** 2), 0.0, 1.0) ** 0.5

    # --- ribs and clavicles ----------------------------------------------------------------------------------------
    bone = np.zeros((size, size), dtype=np.float32)
    rib_gap = lung_h / rng.uniform(8.5, 10.0)
    rib_w = rib_gap * rng.uniform(0.38, 0.48)
    rib_curve = rng.uniform(0.8, 1.4)
    for s in range(2):
        sgn = -1.0 if s == 0 else 1.0
        off = (u - cx) * sgn  # distance from the midline, mm (positive towards this side)
        lateral_ok = np.clip((off - 10.0) / 15.0, 0.0, 1.0) * (off < thorax_half * 1.02)
        rel = off / thorax_half
        for n in range(10):
            base = lung_top - 5.0 + n * rib_gap + rng.normal(0.0, 1.5)
            # posterior ribs run down and out from the spine as an arc
            centreline = base + rib_curve * 30.0 * (rel - 0.5) ** 2 - 10.0 * rel
            band = np.exp(-(((v - centreline) / (rib_w / 2.0)) ** 4)) * lateral_ok
            bone += 0.16 * band.astype(np.float32)
        clav = lung_top + 5.0 - 25.0 * (rel - 0.1) * (rel < 0.9)
        bone += (0.20 * np.exp(-(((v - clav) / 6.0) ** 4)) * ((off > 15.0) & (off < thorax_half * 0.95))).astype(
            np.float32
        )
    spine = np.exp(-(((u - cx) / rng.uniform(14.0, 20.0)) ** 4)) * body
    bone += 0.12 * spine.astype(np.float32)

    # --- compose the radiograph (attenuation, then exposure) ---------------------------------------------------------
    lung_air = lungs.astype(np.float32)
    lung_air = ndimage.gaussian_filter(lung_air, sigma=2.5 / px)
    vessels = _smooth_field(rng, coords, (8.0, 20.0), 10)
    dens = 0.75 * tissue_thick.astype(np.float32)
    dens -= lung_air * (0.50 + 0.03 * vessels)
    heart_soft = ndimage.gaussian_filter(heart.astype(np.float32), sigma=1.5 / px)
    dens += 0.38 * heart_soft * lung_air + 0.10 * heart_soft
    fluid_soft = ndimage.gaussian_filter(fluid.astype(np.float32), sigma=1.5 / px)
    dens += 0.42 * fluid_soft
    dens += nodule_img
    dens += bone * body
    dens = np.clip(dens, 0.0, None)
    img = 1.0 - np.exp(-2.2 * dens)
    img = img ** rng.uniform(0.8, 1.25)
    img = img * rng.uniform(0.7, 1.3) + rng.uniform(-0.05, 0.15)
    img += _smooth_field(rng, coords, (200.0, 400.0), 3) * rng.uniform(0.0, 0.04)
    img = ndimage.gaussian_filter(img, sigma=0.6 / px)
    img += rng.normal(0.0, rng.uniform(0.012, 0.025), size=img.shape)
    img = img.astype(np.float32)

    masks = np.zeros((3, size, size), dtype=bool)
    masks[0] = nodule_mask & has_nodule
    masks[1] = heart & has_cardio
    masks[2] = fluid & has_effusion
    labels = masks.reshape(3, -1).any(axis=1).astype(np.int64)  # a finding too small to draw counts as absent
    boxes = {CHEST_FINDINGS[f]: _mask_box(masks[f]) for f in range(3) if labels[f]}
    m = make_ijk_to_ras((px, px, 1.0), (0.0, 0.0, 0.0), np.diag([-1.0, -1.0, 1.0]))  # a PA film seen from the front
    info = {
        "seed": int(seed),
        "cardiothoracic_ratio": float(ctr),
        "effusion_sides": eff_sides,
        "body_half_width_mm": float(body_w),
        "pixel_spacing_mm": float(px),
    }
    return ChestPhantom(
        image=Volume(img[None, None], m, ["xray"]),
        labels=labels,
        masks=masks,
        boxes=boxes,
        info=info,
    )


def phantom_cohort(kind: str, n: int, seed: int = 0, **kwargs: Any) -> list[BrainPhantom] | list[ChestPhantom]:
    """``n`` phantoms of one kind (``"brain"`` or ``"chest"``) with seeds ``seed, seed + 1, ..., seed + n - 1``.

    Extra keyword arguments go to :func:`make_brain_phantom` or :func:`make_chest_phantom`.
    """
    if kind == "brain":
        return [make_brain_phantom(seed + i, **kwargs) for i in range(n)]
    if kind == "chest":
        return [make_chest_phantom(seed + i, **kwargs) for i in range(n)]
    raise ValueError(f"unknown phantom kind {kind!r}; use 'brain' or 'chest'")
