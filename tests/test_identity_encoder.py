"""The identity encoder on a tiny model built in code: save/load, embed, pixels and crops."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from reelsmith.errors import InputError
from reelsmith.renderer.identity.encoder import (
    IdentityEncoder,
    crop_boxes,
    load_identity_encoder,
    to_pixels,
)

RESOLUTION, DIM = 8, 4


@pytest.fixture(scope="module")
def encoder() -> IdentityEncoder:
    torch.manual_seed(0)
    return IdentityEncoder(resolution=RESOLUTION, width=8, dim=DIM).eval()  # GroupNorm(8, w)


def image(seed: int, height: int = RESOLUTION, width: int = RESOLUTION) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_save_and_load_round_trip_is_bit_exact(encoder, tmp_path):
    encoder.save_pretrained(tmp_path)
    loaded = load_identity_encoder(tmp_path)
    assert isinstance(loaded, IdentityEncoder) and not loaded.training
    assert (loaded.config.resolution, loaded.config.width, loaded.config.dim) == (
        RESOLUTION,
        8,
        DIM,
    )
    before, after = encoder.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    images = [image(1), image(2)]
    assert torch.equal(loaded.embed(images), encoder.embed(images))


def test_embed_gives_unit_vectors(encoder):
    embeddings = encoder.embed([image(seed) for seed in range(5)])
    assert embeddings.shape == (5, DIM) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(5))
    assert not torch.allclose(embeddings[0], embeddings[1])
    assert encoder.embed(image(0)).shape == (1, DIM)  # one (H, W, 3) array is one image


def test_embed_resizes_images_of_any_size(encoder):
    mixed = encoder.embed([image(0, 20, 24), image(1, 3, 5), image(2, 64, 64)])
    assert mixed.shape == (3, DIM)
    # area resizing: a 2x-enlarged image (each pixel a 2x2 block) comes back as the original
    small = image(3)
    large = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # (16, 16, 3)
    torch.testing.assert_close(encoder.embed(large), encoder.embed(small))


def test_to_pixels_maps_uint8_to_unit_range():
    flat = np.zeros((4, 4, 3), np.uint8)
    flat[..., 0], flat[..., 2] = 255, 51
    pixels = to_pixels(flat, 4)
    assert pixels.shape == (3, 4, 4)
    torch.testing.assert_close(pixels[:, 0, 0], torch.tensor([1.0, -1.0, 51 / 127.5 - 1]))
    assert to_pixels(flat, 2).shape == (3, 2, 2)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), "float32"),
        (np.zeros((8, 8), np.uint8), "(8, 8)"),
        (np.zeros((8, 8, 1), np.uint8), "(8, 8, 1)"),
        (np.zeros((8, 8, 4), np.uint8), "(8, 8, 4)"),
    ],
)
def test_to_pixels_refuses_float_and_non_rgb_images(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        to_pixels(bad, RESOLUTION)


def test_crop_boxes_centre_on_each_box():
    grey, red, blue = (128, 128, 128), (255, 0, 0), (0, 0, 255)
    frames = np.full((2, 40, 48, 3), grey, np.uint8)
    frames[0, 20:30, 5:15] = red  # a 10 x 10 red square at x 5..15, y 20..30
    frames[1, 2:10, 30:46] = blue  # a 16 x 8 blue bar at x 30..46, y 2..10
    frames[1, 20:30, 5:15] = red  # red where frame 0's box is: must not be picked
    boxes = torch.tensor([[5, 20, 15, 30], [30, 2, 46, 10]])
    crops = crop_boxes(torch.from_numpy(frames), boxes, 16)
    assert crops.shape == (2, 3, 16, 16) and crops.dtype == torch.float32
    for crop, colour in zip(crops, (red, blue), strict=True):
        centre = crop[:, 6:10, 6:10]  # the middle 4 x 4 of 16
        expected = torch.tensor(colour, dtype=torch.float32) / 127.5 - 1
        torch.testing.assert_close(centre, expected[:, None, None].expand(3, 4, 4))
    # the square is 1.1x the longer side: the red square fills all but a thin grey rim
    red_pixels = (crops[0, 0] > 0.9) & (crops[0, 1] < -0.9)
    assert 0.6 < red_pixels.float().mean() < 1.0
    # the blue bar is half as tall as the square crop: its top and bottom rows are grey
    torch.testing.assert_close(crops[1, :, 0], torch.full((3, 16), 128 / 127.5 - 1))


def test_load_from_a_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="missing"):
        load_identity_encoder(tmp_path / "missing")
    with pytest.raises(InputError, match="config.json"):
        load_identity_encoder(tmp_path)  # exists but holds no encoder
