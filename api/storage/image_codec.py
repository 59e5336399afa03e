"""Uploaded image bytes made safe: decoded with Pillow, re-encoded, metadata gone.

An upload is never stored as sent. It is opened only as PNG, JPEG or WebP (Pillow picks
the decoder from the bytes, not from a name or a header), its dimensions are checked
from the file header *before* any pixel is decoded (a decompression bomb is refused
without allocating it), then decoded fully (a truncated file fails here) and written
again from the pixels alone: EXIF (after applying its orientation), ICC profiles, text
chunks and comments are left behind. Animated images are refused. Every refusal is an
``ImageRefused`` naming why; nothing is stored by this module.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from api.storage.blobs import sha256_hex

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class ImageRefused(ValueError):
    """An upload that is not a storable image. ``too_large``: a size limit, not a format."""

    def __init__(self, message: str, *, too_large: bool = False, unsupported: bool = False):
        super().__init__(message)
        self.too_large = too_large
        self.unsupported = unsupported


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_side: int = 8192


@dataclass(frozen=True, slots=True)
class CleanImage:
    data: bytes
    sha256: str
    media_type: str
    width: int
    height: int


def sanitize(raw: bytes, limits: ImageLimits = ImageLimits()) -> CleanImage:
    """The upload re-encoded in its own format, or ``ImageRefused``."""
    if not raw:
        raise ImageRefused("the upload is empty")
    if len(raw) > limits.max_bytes:
        raise ImageRefused(
            f"the image is {len(raw)} bytes, more than {limits.max_bytes}", too_large=True
        )
    with warnings.catch_warnings():
        # Pillow's own bomb check only warns below twice its limit: refuse it outright.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw), formats=list(FORMATS)) as image:
                kind = image.format or ""
                _check_header(image, limits)
                image.load()
                pixels = _pixels_only(image)
        except ImageRefused:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageRefused(f"refused as a decompression bomb: {e}", too_large=True) from None
        except UnidentifiedImageError:
            raise ImageRefused("not a PNG, JPEG or WebP image", unsupported=True) from None
        except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
            raise ImageRefused(f"the image cannot be decoded: {e}") from None
    data = _encode(pixels, kind)
    return CleanImage(data, sha256_hex(data), FORMATS[kind], pixels.width, pixels.height)


def _check_header(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRefused("the image has no pixels")
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageRefused(
            f"the image is {width}x{height}; at most {limits.max_side} per side and "
            f"{limits.max_pixels} pixels",
            too_large=True,
        )
    if getattr(image, "n_frames", 1) > 1:
        raise ImageRefused("animated images are not accepted", unsupported=True)


def _pixels_only(image: Image.Image) -> Image.Image:
    """A new image holding the pixels (turned upright) and nothing else."""
    upright = ImageOps.exif_transpose(image)
    mode = (
        "RGBA" if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info else "RGB"
    )
    if image.format == "JPEG":
        mode = "RGB"
    converted = upright.convert(mode)
    clean = Image.new(mode, converted.size)
    clean.paste(converted)
    return clean


def _encode(image: Image.Image, kind: str) -> bytes:
    out = io.BytesIO()
    if kind == "JPEG":
        image.save(out, "JPEG", quality=90, optimize=True)
    elif kind == "WEBP":
        image.save(out, "WEBP", quality=90)
    else:
        image.save(out, "PNG", optimize=False)
    return out.getvalue()
