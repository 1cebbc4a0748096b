"""Reading the user's image: every format becomes upright RGB, or a clear sentence."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clipcam.images import load_image


def test_rgba_is_composited_on_grey(tmp_path):
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgb, notes = load_image(img)
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (128, 128, 128)
    assert notes == ["Transparent areas were filled with neutral grey."]


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show upright
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif)
    rgb, _ = load_image(path)
    assert rgb.size == (20, 40)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "1"])
def test_modes_become_rgb(mode):
    rgb, _ = load_image(Image.new(mode, (10, 6)))
    assert rgb.mode == "RGB" and rgb.size == (10, 6)


def test_arrays():
    assert load_image(np.zeros((5, 7), np.uint8))[0].size == (7, 5)
    assert load_image(np.ones((5, 7, 3), np.float32))[0].getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ValueError, match=r"An image array must be \(H, W\), \(H, W, 3\) or \(H, W, 4\)"):
        load_image(np.zeros((5, 7, 2), np.uint8))


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    rgb, notes = load_image(path)
    assert rgb.getpixel((0, 0))[0] > 200
    assert "animated (2 frames); only the first frame is explained" in notes[0]


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"this is not an image", "is not an image clipcam can read"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="damaged or truncated"):
        load_image(path)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(path)
    with pytest.raises(ValueError, match=r"The image is 3000×3000 = 9 megapixels; the limit is 4 megapixels"):
        load_image(path, max_pixels=4_000_000)


def test_huge_jpeg_is_decoded_small(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (12000, 9000), (90, 120, 200)).save(path, quality=50)
    rgb, notes = load_image(path)
    assert rgb.size == (3000, 2250)
    assert "was decoded at 3000×2250 to bound memory" in notes[0]


def test_huge_png_is_scaled_down(tmp_path):
    rgb, notes = load_image(Image.new("RGB", (8000, 4000)), work_pixels=8_000_000)
    assert rgb.size == (4000, 2000) and "scaled down to 4000×2000" in notes[0]


def test_svg_is_refused(tmp_path):
    path = tmp_path / "drawing.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>')
    with pytest.raises(ValueError, match="'drawing.svg' is not an image clipcam can read; please give a PNG, JPEG"):
        load_image(path)


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (4000, 50), (50, 4000)])
def test_tiny_and_extreme_images_work(size, explainer):
    res = explainer.explain(Image.new("RGB", size, (200, 30, 30)), ["a red square", "a blue circle"], layer=1)
    assert res.image_maps.shape == (2, size[1], size[0])
    assert np.isfinite(res.probs).all() and res.probs.sum() == pytest.approx(1.0)
