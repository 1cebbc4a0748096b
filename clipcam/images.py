"""Reading the user's image: a path, a PIL image or an array → an upright 8-bit RGB PIL image.

Every odd case becomes either a usable image (with a notice saying what was done) or a
ValueError whose sentence says what was wrong and what is accepted.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED = "PNG, JPEG, WebP, GIF, BMP or TIFF"
#: Images with more pixels than this are refused before they are decoded (decompression-bomb guard).
MAX_PIXELS = 120_000_000
#: Larger images are scaled down to about this many pixels as they are read, bounding memory
#: (CLIP sees 224×224 anyway); the heatmaps are drawn on that copy, which keeps the aspect ratio.
WORK_PIXELS = 24_000_000
#: The EXIF tag that says how the camera was held.
ORIENTATION = 0x0112
#: Transparent pixels are composited onto this neutral grey.
BACKGROUND = (128, 128, 128)


def load_image(image: object, max_pixels: int = MAX_PIXELS,
               work_pixels: int = WORK_PIXELS) -> tuple[Image.Image, list[str]]:
    """Return ``(rgb_image, notes)`` for a path, a PIL image or an (H, W[, C]) array.

    The result is upright (EXIF orientation applied), 8-bit RGB, with transparency composited on
    grey, and at most about ``work_pixels`` large; ``notes`` says what was changed. Raises
    ValueError for anything that is not an image or is larger than ``max_pixels``.
    """
    notes: list[str] = []
    if isinstance(image, (str, os.PathLike)):
        image = _open_path(Path(image), max_pixels, work_pixels, notes)
    elif isinstance(image, np.ndarray):
        image = _from_array(image)
    elif not isinstance(image, Image.Image):
        raise ValueError(f"Unsupported image input of type {type(image).__name__}: give a file path, a PIL image or an array.")
    _check_size(image.size, max_pixels)
    if getattr(image, "n_frames", 1) > 1:
        notes.append(f"The image is animated ({image.n_frames} frames); only the first frame is explained.")
        image.seek(0)
    try:
        if image.getexif().get(ORIENTATION, 1) != 1:  # exif_transpose copies even an upright image (27 ms at 12 MP)
            image = ImageOps.exif_transpose(image)
        image = _to_rgb(image, notes)
        image = _shrink(image, work_pixels, notes)
    except (OSError, SyntaxError) as err:  # truncated or corrupt pixel data shows up on decoding
        raise ValueError(f"The image file is damaged or truncated ({err}); please upload a complete {ACCEPTED} file.") from err
    return image, notes


def check_file_size(image: object, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse an image file with more than ``max_pixels`` from its header alone, before anything
    decodes it; anything else (a file that is not an image, a PIL image, an array) is left to
    load_image, which says what is wrong with it."""
    if not isinstance(image, (str, os.PathLike)) or not Path(image).is_file():
        return
    try:
        with Image.open(image) as header:
            size = header.size
    except (OSError, SyntaxError, Image.DecompressionBombError):
        return
    _check_size(size, max_pixels)


def _shrink(image: Image.Image, work_pixels: int, notes: list[str]) -> Image.Image:
    width, height = image.size
    if width * height <= work_pixels:
        return image
    factor = math.ceil(math.sqrt(width * height / work_pixels))
    small = image.reduce(factor)
    notes.append(f"The {width}×{height} image was scaled down to {small.width}×{small.height} to bound memory; "
                 "the model reads a much smaller version of it either way.")
    return small


def _open_path(path: Path, max_pixels: int, work_pixels: int, notes: list[str]) -> Image.Image:
    if not path.is_file():
        raise ValueError(f"Image file {str(path)!r} does not exist.")
    if path.stat().st_size == 0:
        raise ValueError(f"Image file {path.name!r} is empty; please give a {ACCEPTED} image.")
    try:
        image = Image.open(path)
        _check_size(image.size, max_pixels)  # the header is read; the pixels are not yet decoded
        width, height = image.size
        if image.format == "JPEG" and width * height > work_pixels:
            # JPEG decodes cheaply at 1/2, 1/4 or 1/8 size; draft picks the smallest at least this large
            scale = math.sqrt(work_pixels / (width * height)) / 2
            image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
            if image.size != (width, height):
                notes.append(f"The {width}×{height} JPEG was decoded at {image.size[0]}×{image.size[1]} to bound "
                             "memory; the model reads a much smaller version of it either way.")
        image.load()
    except Image.DecompressionBombError as err:
        raise ValueError(f"Image {path.name!r} is too large to process safely ({err}).") from err
    except UnidentifiedImageError:
        raise ValueError(f"{path.name!r} is not an image clipcam can read; please give a {ACCEPTED} file.") from None
    except (OSError, SyntaxError) as err:
        raise ValueError(f"Image {path.name!r} is damaged or truncated; please give a complete {ACCEPTED} file.") from err
    return image


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ValueError("The image has no pixels.")
    if width * height > max_pixels:
        raise ValueError(
            f"The image is {width}×{height} = {width * height / 1e6:.0f} megapixels; the limit is "
            f"{max_pixels / 1e6:.0f} megapixels. Please downscale it first."
        )


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"An image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {array.shape}.")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError("The image array holds NaN or infinite values.")
        array = np.clip(array * 255.0 if array.max() <= 1.0 else array, 0, 255).round().astype(np.uint8)
    elif array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale to 8 bits by the type's range
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("Transparent areas were filled with neutral grey.")
        background = Image.new("RGB", rgba.size, BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image
