"""The ``image_processing`` task: resize, thumbnail, greyscale and rotate with Pillow.

Input bytes come from clients, so decoding is defensive: only common formats are tried,
the pixel count is checked before anything is decoded, and every way a broken file can
fail is reported as :class:`~conveyor.errors.NonRetryable`, since another attempt would
fail the same way. Animated images keep their first frame.
"""

from __future__ import annotations

import struct
import warnings
from io import BytesIO

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import NonRetryable

MAX_PIXELS = 50_000_000
"""Largest input or resize target, in pixels: about 200 MB decoded as RGBA."""
MAX_SIDE = 10_000
"""Largest width or height a resize or thumbnail may ask for."""

_FORMATS: dict[str, tasks_pb2.ImageFormat] = {
    "PNG": tasks_pb2.IMAGE_FORMAT_PNG,
    "JPEG": tasks_pb2.IMAGE_FORMAT_JPEG,
    "WEBP": tasks_pb2.IMAGE_FORMAT_WEBP,
    "GIF": tasks_pb2.IMAGE_FORMAT_GIF,
    "BMP": tasks_pb2.IMAGE_FORMAT_BMP,
}
_FORMAT_NAMES = {value: name for name, value in _FORMATS.items()}
# Decoders tried on input. Pillow knows dozens of formats; rarely used decoders are
# attack surface, so only these are enabled (the JPEG decoder also opens phones' MPO files).
_DECODERS = ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"]
_DECODER_LIST = "PNG, JPEG, WebP, GIF, BMP or TIFF"

# Modes each output format stores faithfully; anything else is converted before saving.
_WRITABLE: dict[str, frozenset[str]] = {
    "PNG": frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}),
    "JPEG": frozenset({"L", "RGB"}),
    "WEBP": frozenset({"RGB", "RGBA"}),
    "GIF": frozenset({"L", "P", "RGB", "RGBA"}),
    "BMP": frozenset({"1", "L", "P", "RGB"}),
}
_KEEPS_ALPHA = frozenset({"PNG", "WEBP", "GIF"})
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "F"})
_SAVE_OPTIONS: dict[str, dict[str, int]] = {"JPEG": {"quality": 90}, "WEBP": {"quality": 90}}

# What Pillow raises on corrupt or truncated data; SyntaxError and struct.error come
# from plugins parsing malformed headers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


def decode(data: bytes) -> tuple[Image.Image, str]:
    """Decodes an image fully and returns it with its Pillow format name.

    EXIF orientation is applied, so the image is upright as a viewer would show it.
    """
    if not data:
        raise NonRetryable("image: the image is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than fails) on large images; here that is a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(BytesIO(data), formats=_DECODERS)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise NonRetryable(f"image: {width}x{height} is more than {MAX_PIXELS:,} pixels")
            image.load()
            fmt = "JPEG" if image.format == "MPO" else str(image.format)
            if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
                image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise NonRetryable(
            f"image: not a recognised image format (expected {_DECODER_LIST})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NonRetryable(f"image: too large to decode safely: {exc}") from None
    except _DECODE_ERRORS as exc:
        raise NonRetryable(f"image: corrupt or truncated image data: {exc}") from None
    return image, fmt


def _resamplable(image: Image.Image) -> Image.Image:
    """The image in a mode that resamples smoothly (Pillow uses nearest for 1 and P)."""
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "P":
        return image.convert("RGBA" if image.has_transparency_data else "RGB")
    return image


def _check_size(what: str, width: int, height: int) -> None:
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise NonRetryable(
            f"image: {what}: width and height must be 1..{MAX_SIDE}, got {width}x{height}"
        )


def resize(image: Image.Image, op: tasks_pb2.ImageResize) -> Image.Image:
    """Scales to exactly ``op.width`` x ``op.height``."""
    _check_size("resize", op.width, op.height)
    if op.width * op.height > MAX_PIXELS:
        raise NonRetryable(
            f"image: resize: {op.width}x{op.height} is more than {MAX_PIXELS:,} pixels"
        )
    return _resamplable(image).resize((op.width, op.height), Image.Resampling.LANCZOS)


def thumbnail(image: Image.Image, op: tasks_pb2.ImageThumbnail) -> Image.Image:
    """Shrinks to fit in ``op.max_width`` x ``op.max_height``, keeping the aspect ratio."""
    _check_size("thumbnail", op.max_width, op.max_height)
    result = _resamplable(image)
    result = result.copy() if result is image else result  # thumbnail() works in place
    result.thumbnail((op.max_width, op.max_height), Image.Resampling.LANCZOS)
    return result


def grayscale(image: Image.Image) -> Image.Image:
    """Converts to shades of grey: mode L, or LA to keep transparency."""
    return image.convert("LA" if image.has_transparency_data else "L")


def rotate(image: Image.Image, op: tasks_pb2.ImageRotate) -> Image.Image:
    """Rotates ``op.degrees`` counter-clockwise, growing the canvas to fit."""
    if not -360 <= op.degrees <= 360:  # also false for NaN
        raise NonRetryable(f"image: rotate: degrees must be -360..360, got {op.degrees}")
    # Multiples of 90 are exact transposes inside Pillow; other angles are resampled.
    return _resamplable(image).rotate(op.degrees, Image.Resampling.BICUBIC, expand=True)


def apply_operations(image: Image.Image, operations: list[tasks_pb2.ImageOperation]) -> Image.Image:
    """Applies the operations in order."""
    for position, operation in enumerate(operations):
        kind = operation.WhichOneof("operation")
        if kind == "resize":
            image = resize(image, operation.resize)
        elif kind == "thumbnail":
            image = thumbnail(image, operation.thumbnail)
        elif kind == "grayscale":
            image = grayscale(image)
        elif kind == "rotate":
            image = rotate(image, operation.rotate)
        else:
            raise NonRetryable(f"image: operations[{position}]: no operation set")
    return image


def _flatten(image: Image.Image, mode: str) -> Image.Image:
    """The image composited onto white, for formats without transparency."""
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert(mode)


def _writable(image: Image.Image, fmt: str) -> Image.Image:
    """The image in a mode ``fmt`` can store, keeping transparency where it can."""
    if image.mode in _WRITABLE[fmt]:
        return image
    grey = image.mode in _GREY_MODES
    if image.has_transparency_data:
        if fmt in _KEEPS_ALPHA:
            return image.convert("LA" if grey and "LA" in _WRITABLE[fmt] else "RGBA")
        return _flatten(image, "L" if grey and "L" in _WRITABLE[fmt] else "RGB")
    return image.convert("L" if grey and "L" in _WRITABLE[fmt] else "RGB")


def encode(image: Image.Image, fmt: str) -> bytes:
    """The image encoded as ``fmt`` (a Pillow format name)."""
    out = BytesIO()
    try:
        _writable(image, fmt).save(out, fmt, **_SAVE_OPTIONS.get(fmt, {}))
    except (OSError, ValueError) as exc:
        raise NonRetryable(f"image: cannot write {image.mode} image as {fmt}: {exc}") from None
    return out.getvalue()


def image_processing(input: tasks_pb2.ImageProcessingInput) -> tasks_pb2.ImageProcessingResult:
    """Decodes an image, applies the operations in order and encodes the result.

    An unspecified output format keeps the input's, or PNG when the input's format
    (such as TIFF) cannot be an output.
    """
    image, input_format = decode(input.image)
    original_width, original_height = image.size
    if input.output_format == tasks_pb2.IMAGE_FORMAT_UNSPECIFIED:
        output_format = input_format if input_format in _FORMATS else "PNG"
    elif input.output_format in _FORMAT_NAMES:
        output_format = _FORMAT_NAMES[input.output_format]
    else:
        raise NonRetryable(f"image: unsupported output format {input.output_format}")
    data = encode(apply_operations(image, list(input.operations)), output_format)
    # Report what was written, which can differ from the in-memory image (GIF is
    # always palette-based, BMP drops alpha).
    with Image.open(BytesIO(data)) as written:
        width, height = written.size
        mode = written.mode
    return tasks_pb2.ImageProcessingResult(
        image=data,
        format=_FORMATS[output_format],
        width=width,
        height=height,
        mode=mode,
        original_width=original_width,
        original_height=original_height,
        original_format=_FORMATS.get(input_format, tasks_pb2.IMAGE_FORMAT_UNSPECIFIED),
        size_bytes=len(data),
    )
