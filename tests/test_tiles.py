"""Tiled inference: crop positions and averaged outputs equal HINet's release, plus our behaviour where it has none.

Golden values: produced by the release's own ``ImageRestorationModel.grids``, ``test`` and ``grids_inverse``
(megvii-model/HINet ``basicsr/models/image_restoration_model.py``, commit ``4e7231543090e6280d03fac22b3bb6869a25dfad``,
lines 123-183, 246-265, 185-200). A scratch driver outside this repository read that file with ``git show``, compiled
those methods (and ``transpose``/``transpose_inverse``) unchanged with ``ast`` and attached them to a stand-in object
(``lq``, ``device``, ``opt = {"val": {"grids": True, "crop_size": tile}}``, ``net_g`` = :func:`_net`), then ran
``grids() -> test() -> grids_inverse()`` on :func:`_image`. Float64 values ran with ``torch.set_default_dtype(float64)``
(the release allocates its sum and count map with ``torch.zeros``, i.e. in the default dtype), float32 values with the
default float32. The driver also ran the release with ``max_minibatch: 4`` (same output, bit for bit) and with an
identity network (returns the input exactly). No release code is in this repository.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import Tensor

from benchmark.scoring.tiles import tile_positions, tiled_forward


def _image(h: int, w: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The golden input: (1, 3, h, w), values k % 251 / 250 in [0, 1] over the flattened index k."""
    return (torch.arange(h * w * 3, dtype=torch.float64).reshape(1, 3, h, w) % 251 / 250).to(dtype)


def _net(t: Tensor) -> Tensor:
    """A per-crop 'network' whose output depends on the crop's content (its mean), so that tiling matters."""
    return t * t.mean(dim=(1, 2, 3), keepdim=True) + torch.roll(t, 1, -1) * 0.1 - 0.05


GOLDEN = {
    # (h, w, tile): release positions (its idxes i, j), output sum / abs-sum (float64), sum (float32), pixels (c, y, x)
    (720, 1280, 256): {
        "positions": [(i, j) for i in (0, 232, 464) for j in (0, 256, 512, 768, 1024)],
        "sum": 691182.7483105605,
        "abs_sum": 702287.8042733099,
        "sum_f32": 691182.7582846526,
        "pixels": {
            (0, 0, 0): -0.048400000000000006,
            (1, 255, 255): 0.02639882812500001,  # last pixel of crop (0, 0)
            (2, 231, 256): 0.22519573242187502,  # just above the row overlap, first column of crop (0, 256)
            (0, 232, 768): 0.05240102026367188,  # first row of the second crop row: two rows of crops overlap
            (1, 463, 1023): 0.4944056713053386,
            (2, 464, 1024): 0.3859805934651692,  # top-left of the last, border-aligned crop
            (0, 488, 500): 0.3095978637695312,  # four crops overlap
            (2, 719, 1279): 0.031195683593749995,  # bottom-right corner
            (1, 719, 0): 0.14839632975260414,
            (0, 0, 1279): 0.007199828125000002,
        },
    },
    (300, 419, 256): {
        "positions": [(0, 0), (0, 163), (44, 0), (44, 163)],
        "sum": 94256.13070107882,
        "abs_sum": 95771.09832666369,
        "sum_f32": 94256.12539339717,
        "pixels": {
            (0, 0, 0): -0.048400000000000006,
            (1, 43, 162): 0.08399817708333333,
            (2, 44, 163): 0.3681969484863281,
            (0, 255, 255): 0.3671969484863281,
            (1, 256, 256): 0.048000734049479174,
            (2, 299, 418): 0.18240173665364584,
        },
    },
    # Smaller than the tile: the release records (h - 256, w - 256) = (-156, -136); its slices [-156:100] and
    # [-136:120] clamp to the whole image, so the single crop is ours at (0, 0).
    (100, 120, 256): {
        "positions": [(0, 0)],
        "sum": 8966.128778496,
        "abs_sum": 9110.392984448,
        "sum_f32": 8966.128391176462,
        "pixels": {(0, 0, 0): -0.0023999999999999994, (1, 50, 60): 0.522381664, (2, 99, 119): 0.20363705600000004},
    },
    (256, 256, 256): {
        "positions": [(0, 0)],
        "sum": 49122.96354492188,
        "abs_sum": 49913.561222558594,
        "sum_f32": 49122.964288899675,
        "pixels": {(0, 0, 0): -0.048400000000000006, (2, 255, 255): 0.12716025390625002},
    },
    (257, 513, 256): {
        "positions": [(i, j) for i in (0, 1) for j in (0, 129, 257)],
        "sum": 98862.79670769919,
        "abs_sum": 100451.37996523661,
        "sum_f32": 98862.79659216944,
        "pixels": {
            (0, 0, 0): -0.048400000000000006,
            (1, 1, 257): 0.14979636267089846,
            (2, 256, 512): 0.4223783569335938,
        },
    },
    # The last crop of an axis is border-aligned before the regular step reaches it (rows 0, 11, 21, not 22).
    (37, 53, 16): {
        "positions": [(i, j) for i in (0, 11, 21) for j in (0, 13, 26, 37)],
        "sum": 1431.0023688854167,
        "abs_sum": 1455.3714777916668,
        "sum_f32": 1431.0023290058598,
        "pixels": {
            (0, 0, 0): -0.044000000000000004,
            (1, 20, 30): 0.04204137499999999,
            (2, 36, 52): 0.21328008333333331,
        },
    },
}
CASES = list(GOLDEN)
IDS = [f"{h}x{w}-tile{t}" for h, w, t in CASES]

SWEEP_SHA256 = "bdab8e99e3fee6e4caae3c046ac0301916ab5420b1cb2a368e48a2a6796126cb"
"""sha256 of the release's row starts (``idxes[k]["i"]`` of ``grids`` on a (1, 1, size, 1) input) for every size in
[tile, 2048] and tiles 16, 64, 256, serialised as
``json.dumps({str(tile): [starts, ...]}, separators=(",", ":"), sort_keys=True)``."""


@pytest.mark.parametrize(("h", "w", "tile"), CASES, ids=IDS)
def test_positions_match_release(h: int, w: int, tile: int) -> None:
    assert tile_positions(h, w, tile) == GOLDEN[(h, w, tile)]["positions"]


def test_positions_match_release_sweep() -> None:
    table = {
        str(tile): [[i for i, _ in tile_positions(size, 1, tile)] for size in range(tile, 2049)]
        for tile in (16, 64, 256)
    }
    blob = json.dumps(table, separators=(",", ":"), sort_keys=True).encode()
    assert hashlib.sha256(blob).hexdigest() == SWEEP_SHA256


@pytest.mark.parametrize(("h", "w", "tile"), CASES, ids=IDS)
def test_tiled_forward_matches_release_float64(h: int, w: int, tile: int) -> None:
    golden = GOLDEN[(h, w, tile)]
    x = _image(h, w)
    out = tiled_forward(_net, x, tile)
    assert out.shape == x.shape and out.dtype == torch.float64
    assert out.sum().item() == pytest.approx(golden["sum"], rel=1e-12)
    assert out.abs().sum().item() == pytest.approx(golden["abs_sum"], rel=1e-12)
    for (c, y, xx), value in golden["pixels"].items():
        assert out[0, c, y, xx].item() == pytest.approx(value, rel=1e-12, abs=1e-15), (c, y, xx)


@pytest.mark.parametrize(("h", "w", "tile"), CASES, ids=IDS)
def test_tiled_forward_matches_release_float32(h: int, w: int, tile: int) -> None:
    out = tiled_forward(_net, _image(h, w, torch.float32), tile)
    assert out.dtype == torch.float32
    assert out.double().sum().item() == pytest.approx(GOLDEN[(h, w, tile)]["sum_f32"], rel=1e-6)


@pytest.mark.parametrize(("h", "w", "tile"), [*CASES, (200, 120, 256), (1, 1, 16)])
def test_identity_network_returns_input_exactly(h: int, w: int, tile: int) -> None:
    x = torch.rand(2, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tiled_forward(lambda t: t, x, tile), x)


def test_crops_fed_in_chunks_of_batch() -> None:
    sizes: list[int] = []

    def net(t: Tensor) -> Tensor:
        sizes.append(t.shape[0])
        return _net(t)

    x = _image(720, 1280)
    reference = tiled_forward(_net, x, 256, batch=15)  # all 15 crops in one call, as the release
    assert torch.allclose(tiled_forward(net, x, 256), reference, rtol=1e-14, atol=0)
    assert sizes == [8, 7]
    sizes.clear()
    assert torch.allclose(tiled_forward(net, x, 256, batch=1), reference, rtol=1e-14, atol=0)
    assert sizes == [1] * 15


def test_batch_of_images_is_tiled_per_image() -> None:
    a, b = _image(300, 419), 1.0 - _image(300, 419)
    out = tiled_forward(_net, torch.cat([a, b]), 256)
    assert torch.equal(out[:1], tiled_forward(_net, a, 256))
    assert torch.equal(out[1:], tiled_forward(_net, b, 256))


@pytest.mark.parametrize(("h", "w"), [(200, 120), (100, 200), (100, 120)])
def test_image_smaller_than_tile_is_one_whole_image_crop(h: int, w: int) -> None:
    # Where the release has no answer: with 128 < H (or W) < 256 its start H - 256 wraps in Python slicing, so it takes
    # only the last 256 - H rows and returns NaN above them (51840 NaN of 72000 values on 200 x 120, 43200 of 60000 on
    # 100 x 200, in the driver's run). Ours: a single crop of the whole image, i.e. the plain forward pass.
    x = _image(h, w)
    assert tile_positions(h, w, 256) == [(0, 0)]
    assert torch.equal(tiled_forward(_net, x, 256), _net(x))


@pytest.mark.parametrize(("h", "w", "tile"), [(720, 1280, 256), (37, 53, 16), (2048, 17, 16), (5, 1000, 3)])
def test_every_pixel_covered_and_crops_inside(h: int, w: int, tile: int) -> None:
    count = torch.zeros(h, w)
    for i, j in tile_positions(h, w, tile):
        assert 0 <= i <= h - min(tile, h)
        assert 0 <= j <= w - min(tile, w)
        count[i : i + tile, j : j + tile] += 1
    assert count.min() >= 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None, "256"])
def test_rejects_bad_tile(bad: object) -> None:
    with pytest.raises(ValueError, match="tile must be a positive int"):
        tile_positions(64, 64, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tile must be a positive int"):
        tiled_forward(_net, _image(8, 8), bad)  # type: ignore[arg-type]


def test_rejects_bad_sizes_batch_and_input() -> None:
    with pytest.raises(ValueError, match="h must be a positive int"):
        tile_positions(0, 64, 16)
    with pytest.raises(ValueError, match="w must be a positive int"):
        tile_positions(64, -3, 16)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        tiled_forward(_net, _image(8, 8), 4, batch=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        tiled_forward(_net, _image(8, 8)[0], 4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        tiled_forward(_net, torch.zeros(0, 3, 8, 8), 4)
    with pytest.raises(ValueError, match=r"torch\.Tensor"):
        tiled_forward(_net, [[0.0]], 4)  # type: ignore[arg-type]


def test_rejects_model_changing_the_crop_shape() -> None:
    with pytest.raises(RuntimeError, match=r"model returned \(4, 3, 3, 4\) for a crop batch of \(4, 3, 4, 4\)"):
        tiled_forward(lambda t: t[..., 1:, :], _image(8, 8), 4)
    with pytest.raises(RuntimeError, match="model returned list"):
        tiled_forward(lambda t: [t], _image(8, 8), 4)  # type: ignore[arg-type,return-value]
