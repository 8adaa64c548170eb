"""Image / mask folder readers (formats/images.py): the file types competitions ship."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kagglekit.formats.images import FormatError, files_by_stem, image_hw, read_mask, read_rgb


def test_rgb_from_every_common_file_type(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "b.tif")
    smooth = np.dstack([np.add.outer(np.arange(5) * 20, np.arange(7) * 10).astype(np.uint8)] * 3)
    Image.fromarray(smooth).save(tmp_path / "c.jpg", quality=100)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "d.png")  # greyscale
    Image.fromarray((rgb[..., 0].astype(np.uint16) << 8) | 0x7F).save(tmp_path / "e.png")  # 16-bit greyscale
    Image.fromarray(np.dstack([rgb, np.full((5, 7), 9, np.uint8)])).save(tmp_path / "f.png")  # RGBA
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgb)
    np.testing.assert_array_equal(read_rgb(tmp_path / "b.tif"), rgb)
    assert np.abs(read_rgb(tmp_path / "c.jpg").astype(int) - smooth).max() <= 3  # lossy, but close
    for name in ("d.png", "e.png"):
        out = read_rgb(tmp_path / name)
        assert out.shape == (5, 7, 3) and (out == rgb[..., :1]).all()
    np.testing.assert_array_equal(read_rgb(tmp_path / "f.png"), rgb)
    assert image_hw(tmp_path / "b.tif") == (5, 7)


def test_masks_keep_their_ids_and_colour_masks_are_refused(tmp_path):
    ids = np.array([[0, 18, 90], [44, 1, 0]], np.uint8)
    Image.fromarray(ids).save(tmp_path / "m.png")
    pal = Image.fromarray(ids, mode="P")
    pal.putpalette([v for k in range(256) for v in (k, 255 - k, 7)])
    pal.save(tmp_path / "p.png")
    Image.fromarray(ids.astype(np.uint16) * 300).save(tmp_path / "w.png")  # 16-bit ids
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), ids)
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), ids)  # palette indices, not colours
    np.testing.assert_array_equal(read_mask(tmp_path / "w.png"), ids.astype(np.int64) * 300)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(FormatError, match=r"rgb\.png: mask has PIL mode 'RGB'; expected a single-channel"):
        read_mask(tmp_path / "rgb.png")


def test_folder_by_stem_and_one_line_errors(tmp_path):
    for name in ("b.jpg", "a.png", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    assert list(files_by_stem(tmp_path)) == ["a", "b"]
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(FormatError, match="a.jpg and a.png share the id 'a'"):
        files_by_stem(tmp_path)
    with pytest.raises(FormatError) as err:
        read_rgb(tmp_path / "b.jpg")  # not an image
    assert "b.jpg" in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 200
    with pytest.raises(FormatError, match="folder not found"):
        files_by_stem(tmp_path / "nope")
