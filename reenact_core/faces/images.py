"""Input images of any common layout, reduced to the 8-bit RGB the face models work on, and given back after.

Accepted: numpy arrays (H, W) grey, (H, W, 1) grey, (H, W, 3) RGB or (H, W, 4) RGBA, of dtype uint8, uint16 or
float (float values are read as [0, 1] and clipped to it). Every processed image keeps its caller's layout: the
working copy is RGB, and :func:`from_float_rgb` writes a result back in the layout, bit depth and alpha of the
original (pixels of a region are converted one by one, so a region can be converted on its own), and
:func:`save_image` writes it to a file without losing alpha or depth where the format can hold them.
Image files are read by :func:`read_image` into one of these layouts at their real range (:func:`from_pil`).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from ..errors import InputError
from ..files import atomic_write

MIN_SIDE = 64  # smallest accepted image side in pixels: no face model can work on less
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as cv2.COLOR_RGB2GRAY
_INTEGER_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_CONVERSION_ROWS = 256  # rows converted at a time to 8 bits
JPEG_QUALITY = 95  # cv2 JPEG quality of written images (0..100)


def check_image(image, min_side: int = MIN_SIDE) -> np.ndarray:
    """Validates an image and returns it as a numpy array (no copy).

    Raises InputError (one line) for a non-array, an empty array, a wrong number of dimensions or channels, an
    unsupported dtype, a side shorter than ``min_side`` pixels, or NaN / infinite values.
    """
    array = _check_layout(image)
    h, w = array.shape[:2]
    if min(h, w) < min_side:
        raise InputError(f"image is {h}×{w} pixels; each side must be at least {min_side}")
    if array.dtype in _FLOAT_DTYPES and not np.isfinite(array).all():
        raise InputError("image contains NaN or infinite values")
    return array


def _check_layout(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise InputError(f"image is empty (shape {image.shape})")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InputError(f"image must be (H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA, got {image.shape}")
    if image.dtype not in _INTEGER_MAX and image.dtype not in _FLOAT_DTYPES:
        raise InputError(f"image dtype {image.dtype} is not supported; use uint8, uint16 or float in [0, 1]")
    return image


def channels(image: np.ndarray) -> int:
    """Number of channels: 1 (grey), 3 (RGB) or 4 (RGBA)."""
    return 1 if image.ndim == 2 else image.shape[2]


def _colour(image: np.ndarray) -> np.ndarray:
    """The colour channels as (H, W, 1) or (H, W, 3), alpha left out."""
    return image[..., None] if image.ndim == 2 else image[..., :3]


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """Any accepted image (or a region of one) as float32 RGB.

    Returns:
        (H, W, 3) float32 in [0, 1]; grey is repeated over the three channels, alpha is dropped.
    """
    image = _check_layout(image)
    colour = _colour(image).astype(np.float32)
    if image.dtype in _INTEGER_MAX:
        colour /= _INTEGER_MAX[image.dtype]
    else:
        np.clip(colour, 0.0, 1.0, out=colour)
    return np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """The 8-bit working copy of an accepted image: (H, W, 3) uint8 RGB, C-contiguous."""
    image = _check_layout(image)
    if image.dtype == np.uint8:
        colour = _colour(image)
        rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
        return np.ascontiguousarray(rgb)
    rgb = np.empty(image.shape[:2] + (3,), np.uint8)
    for top in range(0, image.shape[0], _CONVERSION_ROWS):  # in bands: flat memory on very large images
        rgb[top:top + _CONVERSION_ROWS] = np.rint(to_float_rgb(image[top:top + _CONVERSION_ROWS]) * 255.0)
    return rgb


def from_float_rgb(rgb: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Writes a float RGB result in the layout, dtype and alpha of ``like``.

    Args:
        rgb: (H, W, 3) float in [0, 1] (clipped).
        like: the accepted image (or region) of the same height and width the result replaces; its alpha
            channel, if any, is copied unchanged.

    Returns:
        An array of ``like``'s shape and dtype. Grey layouts get BT.601 luma; integer dtypes are rounded.
    """
    like = _check_layout(like)
    if rgb.shape != like.shape[:2] + (3,):
        raise InputError(f"result of shape {rgb.shape} does not fit an image of shape {like.shape}")
    colour = np.clip(rgb, 0.0, 1.0)
    if channels(like) == 1:
        colour = (colour @ np.asarray(GREY_WEIGHTS, dtype=colour.dtype))[..., None]
    if like.dtype in _INTEGER_MAX:
        colour = np.rint(colour * _INTEGER_MAX[like.dtype])
    colour = colour.astype(like.dtype)
    if like.ndim == 2:
        return colour[..., 0]
    if channels(like) == 4:
        return np.concatenate([colour, like[..., 3:]], axis=2)
    return colour


def rescaled(rgb: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """A copy scaled by ``factor`` (cv2 INTER_AREA down, INTER_LINEAR up), and the scales applied.

    Returns:
        ``(copy, scale)``: ``scale`` is the (2,) float64 ``(sx, sy)`` = copy size / original size per axis, all
        1.0 (and the image itself, not a copy) for ``factor == 1``. A point ``p = (x, y)`` of the copy lies at
        ``(p + 0.5) / scale - 0.5`` in the original (pixel centres on integers).
    """
    if factor == 1:
        return rgb, np.ones(2)
    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interpolation), np.array([size[0] / w, size[1] / h])


def downscaled(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy whose long side is at most ``max_side`` pixels (cv2 INTER_AREA), and the scales applied
    (:func:`rescaled`; the image itself when it is small enough)."""
    return rescaled(rgb, min(1.0, max_side / max(rgb.shape[:2])))


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Writes an accepted image (any layout :func:`check_image` takes, any size) to ``path``, atomically.

    ``.png`` keeps the image's channels (grey, RGB, RGBA: alpha included) and depth: uint8 gives 8-bit, uint16
    16-bit, float (in [0, 1]) 16-bit. ``.jpg``/``.jpeg`` hold 8-bit RGB: alpha is dropped, depth reduced.

    Raises:
        InputError: not an accepted image, or another suffix.
    """
    path = Path(path)
    image = check_image(image, min_side=1)
    suffix = path.suffix.lower()
    if suffix == ".png":
        if image.dtype in _FLOAT_DTYPES:
            image = np.rint(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
        if channels(image) == 3:
            image = image[..., ::-1]                          # OpenCV stores BGR
        elif channels(image) == 4:
            image = image[..., [2, 1, 0, 3]]                  # BGRA
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image))
    elif suffix in (".jpg", ".jpeg"):
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(to_uint8_rgb(image)[..., ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        raise InputError(f"cannot write image {path.name}: give a .png, .jpg or .jpeg file")
    if not ok:
        raise InputError(f"cannot encode image {path.name} ({image.dtype} {image.shape})")
    return atomic_write(path, lambda temporary: Path(temporary).write_bytes(encoded.tobytes()))


def read_image(path: str | Path) -> np.ndarray:
    """An image file, turned upright by its EXIF orientation, as an accepted array at its real range.

    Returns:
        The layout and dtype :func:`from_pil` gives for the file's PIL mode (a multi-frame file gives its
        first frame); a 16-bit RGB or RGBA file (which PIL opens as 8-bit) gives (H, W, 3|4) uint16.

    Raises:
        InputError: a missing, unreadable or unsupported file (one line, naming it).
    """
    try:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA") and ";16" in _raw_mode(image):
                return _deep_colour(path, image)
            return from_pil(ImageOps.exif_transpose(image))
    except (OSError, ValueError) as exc:   # PIL's UnidentifiedImageError is an OSError
        raise InputError(f"cannot read the image {path}: {exc}") from None


_EXIF_ORIENTATION = 0x0112
# EXIF orientation → (quarter turns counter-clockwise, then top-bottom mirror, then left-right mirror) to upright
_EXIF_UPRIGHT = {2: (0, False, True), 3: (2, False, False), 4: (0, True, False), 5: (1, True, False),
                 6: (-1, False, False), 7: (-1, True, False), 8: (1, False, False)}


def _raw_mode(image: Image.Image) -> str:
    """How the file stores its pixels (e.g. ``RGB;16B`` for a 16-bit RGB PNG), as far as PIL says."""
    args = image.tile[0].args if image.tile else None
    return args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""


def _deep_colour(path: str | Path, image: Image.Image) -> np.ndarray:
    """A 16-bit RGB(A) file, which PIL opens as 8-bit: (H, W, 3|4) uint16 decoded by OpenCV, made upright."""
    from ..video.orientation import Orientation   # the video package imports this module

    decoded = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)   # EXIF orientation not applied
    if decoded is None or decoded.dtype != np.uint16 or decoded.ndim != 3:
        return from_pil(ImageOps.exif_transpose(image))   # a layout OpenCV reads otherwise: PIL's 8 bits
    rgb = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA if decoded.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    upright = _EXIF_UPRIGHT.get(image.getexif().get(_EXIF_ORIENTATION, 1), (0, False, False))
    return Orientation(*upright).apply(rgb)


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


def from_pil(image: Image.Image) -> np.ndarray:
    """A PIL image as an array :func:`check_image` accepts, read at the real range of its mode.

    ``convert("RGB")`` clips 16-bit, 32-bit and float modes to 0..255 (a 16-bit grey scan reads nearly white);
    here no mode is clipped:

    * ``1`` → (H, W) uint8, 0 or 255; ``L`` → (H, W) uint8;
    * ``I;16`` (any byte order) → (H, W) uint16;
    * ``I`` (32-bit int, which PIL uses for 8-bit and 16-bit greys alike) → (H, W) uint8 when all values lie
      in 0..255, uint16 in 0..65535, else float32 stretched from the image's minimum (0) to its maximum (1);
    * ``F`` (float) → (H, W) float32 in [0, 1], values read as [0, 1], 0..255 or 0..65535: the smallest of
      those ranges that holds the image's maximum (negatives clipped to 0), stretched like ``I`` beyond;
    * modes with alpha (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour, ...) → (H, W, 4) uint8 RGBA;
    * every other mode (``RGB``, ``CMYK``, ``YCbCr``, ``LAB``, ``P``, ``HSV``, ...) → (H, W, 3) uint8 RGB by PIL.

    PIL has no 16-bit colour mode: :func:`read_image` reads 16-bit RGB(A) files (PNG, TIFF) through OpenCV instead,
    as (H, W, 3|4) uint16.

    Raises:
        InputError: NaN or infinite values in an ``F`` image. ValueError: a mode PIL cannot turn into RGB.
    """
    mode = image.mode
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"))
    if mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.uint16)   # native byte order
    if mode in ("I", "F"):
        return _wide_grey(np.asarray(image), mode)
    if mode == "La":   # premultiplied alpha, which PIL turns into RGBA only through LA
        image = image.convert("LA")
    with_alpha = mode in _WITH_ALPHA or (mode == "P" and "transparency" in image.info)
    return np.asarray(image.convert("RGBA" if with_alpha else "RGB"))


_GREY_RANGES = {"I": (255, 65535), "F": (1.0, 255.0, 65535.0)}  # ranges values are read in, smallest first


def _wide_grey(values: np.ndarray, mode: str) -> np.ndarray:
    """A 32-bit int (``I``) or float (``F``) grey image at its range (see :func:`from_pil`)."""
    if mode == "F" and not np.isfinite(values).all():
        raise InputError("image contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    top = next((r for r in _GREY_RANGES[mode] if high <= r), None)
    if top is None or (mode == "I" and low < 0):
        return ((values.astype(np.float64) - low) / max(high - low, 1e-12)).astype(np.float32)
    if mode == "I":
        return values.astype(np.uint8 if top == 255 else np.uint16)
    return np.clip(values / np.float32(top), 0.0, 1.0).astype(np.float32)
