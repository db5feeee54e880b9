"""Masks onto a model grid that only permutes, flips and shifts the input's axes (a MONAI bundle's ``Orientationd``
without resampling, as on BraTS): read by indexing, checked against scipy's nearest-neighbour sampling."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from MedXAILib.preprocessing import axis_moves, take_by_axis_moves


def test_every_axis_permutation_and_flip_equals_scipys_nearest_sampling() -> None:
    rng = np.random.default_rng(0)
    masks = (rng.random((2, 5, 6, 7)) > 0.6).astype(np.float32)  # (M, K, J, I)
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            affine = np.zeros((4, 4))
            affine[3, 3] = 1
            for d in range(3):
                affine[d, perm[d]] = signs[d]
            affine[:3, 3] = rng.integers(-2, 8, 3)  # some model voxels fall outside the input: zero there
            grid = tuple(int(x) for x in rng.integers(4, 9, 3))
            got = take_by_axis_moves(masks, axis_moves(affine), grid)
            abc = np.stack(np.meshgrid(*[np.arange(n) for n in grid], indexing="ij"), 0).reshape(3, -1)
            ijk = affine[:3, :3] @ abc + affine[:3, 3:4]
            for c in range(masks.shape[0]):
                ref = ndimage.map_coordinates(masks[c].transpose(2, 1, 0), ijk, order=0, mode="constant", cval=0)
                assert np.array_equal(got[c], ref.reshape(grid)), (perm, signs)


def test_a_map_that_resamples_is_not_taken_for_an_axis_move() -> None:
    scaled = np.diag([2.0, 1.0, 1.0, 1.0])
    half_shift = np.eye(4)
    half_shift[0, 3] = 0.5
    oblique = np.eye(4)
    oblique[:2, :2] = [[np.cos(0.1), -np.sin(0.1)], [np.sin(0.1), np.cos(0.1)]]
    for affine in (scaled, half_shift, oblique):
        assert axis_moves(affine) is None
    assert axis_moves(np.eye(4) + 1e-9) is not None  # float noise of a composed affine is not a resampling
