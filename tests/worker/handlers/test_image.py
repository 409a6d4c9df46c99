from __future__ import annotations

from io import BytesIO
from typing import cast

import pytest
from PIL import Image

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import NonRetryable
from worker.handlers.image import MAX_PIXELS, image_processing

Op = tasks_pb2.ImageOperation


def encoded(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(BytesIO(data))
    image.load()
    return image


def run(
    data: bytes,
    *operations: tasks_pb2.ImageOperation,
    output: tasks_pb2.ImageFormat = tasks_pb2.IMAGE_FORMAT_UNSPECIFIED,
) -> tasks_pb2.ImageProcessingResult:
    return image_processing(
        tasks_pb2.ImageProcessingInput(image=data, operations=operations, output_format=output)
    )


def resize(width: int, height: int) -> tasks_pb2.ImageOperation:
    return Op(resize=tasks_pb2.ImageResize(width=width, height=height))


def thumbnail(width: int, height: int) -> tasks_pb2.ImageOperation:
    return Op(thumbnail=tasks_pb2.ImageThumbnail(max_width=width, max_height=height))


def rotate(degrees: float) -> tasks_pb2.ImageOperation:
    return Op(rotate=tasks_pb2.ImageRotate(degrees=degrees))


GRAYSCALE = Op(grayscale=tasks_pb2.ImageGrayscale())


@pytest.fixture
def png() -> bytes:
    """A 200x100 RGB PNG: red left half, blue right half."""
    image = Image.new("RGB", (200, 100), "red")
    image.paste((0, 0, 255), (100, 0, 200, 100))
    return encoded(image)


def test_no_operations_keeps_size_and_format(png: bytes) -> None:
    result = run(png)

    assert (result.width, result.height, result.mode) == (200, 100, "RGB")
    assert result.format == result.original_format == tasks_pb2.IMAGE_FORMAT_PNG
    assert (result.original_width, result.original_height) == (200, 100)
    assert result.size_bytes == len(result.image)
    assert decoded(result.image).getpixel((10, 50)) == (255, 0, 0)


def test_resize_scales_to_the_exact_size(png: bytes) -> None:
    result = run(png, resize(50, 80))

    image = decoded(result.image)
    assert image.size == (50, 80) == (result.width, result.height)
    assert image.format == "PNG"
    assert image.getpixel((5, 40)) == (255, 0, 0)
    assert image.getpixel((45, 40)) == (0, 0, 255)


def test_thumbnail_fits_the_box_keeping_aspect_ratio(png: bytes) -> None:
    assert decoded(run(png, thumbnail(50, 50)).image).size == (50, 25)
    # A thumbnail never enlarges.
    assert decoded(run(png, thumbnail(1000, 1000)).image).size == (200, 100)


def test_rotate_counter_clockwise_expands_the_canvas(png: bytes) -> None:
    image = decoded(run(png, rotate(90)).image)

    assert image.size == (100, 200)
    # Counter-clockwise: the red left half ends up at the bottom.
    assert image.getpixel((50, 190)) == (255, 0, 0)
    assert image.getpixel((50, 10)) == (0, 0, 255)
    # 45 degrees needs a canvas of about (200 + 100) / sqrt(2) each way.
    assert decoded(run(png, rotate(45)).image).size == pytest.approx((213, 213), abs=2)


def test_grayscale_gives_mode_l_or_la_with_alpha(png: bytes) -> None:
    result = run(png, GRAYSCALE)
    assert result.mode == decoded(result.image).mode == "L"

    rgba = encoded(Image.new("RGBA", (10, 10), (0, 255, 0, 100)))
    result = run(rgba, GRAYSCALE)
    image = decoded(result.image)
    assert result.mode == image.mode == "LA"
    # Pure green has ITU-R 601 luma 0.587 * 255; the alpha of 100 is kept.
    assert image.getpixel((0, 0)) == (150, 100)


def test_operations_apply_in_order(png: bytes) -> None:
    resized_then_rotated = run(png, resize(40, 10), rotate(-90), GRAYSCALE)
    assert (resized_then_rotated.width, resized_then_rotated.height) == (10, 40)
    assert resized_then_rotated.mode == "L"


def test_rgba_to_jpeg_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 10, 20))

    result = run(encoded(image), output=tasks_pb2.IMAGE_FORMAT_JPEG)
    out = decoded(result.image)

    assert out.format == "JPEG"
    assert result.format == tasks_pb2.IMAGE_FORMAT_JPEG
    assert result.original_format == tasks_pb2.IMAGE_FORMAT_PNG
    assert out.mode == result.mode == "RGB"
    red, white = out.getpixel((2, 10)), out.getpixel((17, 10))
    assert isinstance(red, tuple) and isinstance(white, tuple)
    assert red[0] > 200 and red[1] < 60
    assert min(white) > 240  # transparent became white, not black


def test_palette_image_converts_to_every_output_format() -> None:
    palette = Image.new("RGB", (30, 20), "green").convert("P")
    data = encoded(palette, "GIF")
    expected = {
        tasks_pb2.IMAGE_FORMAT_PNG: "PNG",
        tasks_pb2.IMAGE_FORMAT_JPEG: "JPEG",
        tasks_pb2.IMAGE_FORMAT_WEBP: "WEBP",
        tasks_pb2.IMAGE_FORMAT_GIF: "GIF",
        tasks_pb2.IMAGE_FORMAT_BMP: "BMP",
    }
    for value, name in expected.items():
        result = run(data, resize(15, 10), output=value)
        out = decoded(result.image)
        assert (out.format, out.size) == (name, (15, 10))
        assert result.original_format == tasks_pb2.IMAGE_FORMAT_GIF


def test_jpeg_input_keeps_jpeg_and_applies_exif_orientation() -> None:
    image = Image.new("RGB", (40, 20), "blue")
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: a viewer rotates it 90 degrees clockwise
    result = run(encoded(image, "JPEG", exif=exif))

    assert result.format == tasks_pb2.IMAGE_FORMAT_JPEG
    assert (result.original_width, result.original_height) == (20, 40)
    assert (result.width, result.height) == (20, 40)


def test_unsupported_input_format_falls_back_to_png() -> None:
    result = run(encoded(Image.new("RGB", (8, 8)), "TIFF"))
    assert result.format == tasks_pb2.IMAGE_FORMAT_PNG
    assert result.original_format == tasks_pb2.IMAGE_FORMAT_UNSPECIFIED


@pytest.mark.parametrize(
    "data",
    [b"definitely not an image" * 10, b"\x89PNG\r\n", encoded(Image.new("RGB", (4, 4)), "TGA")],
    ids=["garbage", "header-only", "disabled-decoder"],
)
def test_unrecognised_bytes_are_not_retryable(data: bytes) -> None:
    with pytest.raises(NonRetryable, match=r"^image: not a recognised image format \(expected"):
        run(data)


def test_empty_bytes_are_not_retryable() -> None:
    with pytest.raises(NonRetryable, match="image is empty"):
        run(b"")


def test_truncated_png_is_not_retryable(png: bytes) -> None:
    noisy = Image.effect_noise((200, 200), 50).convert("RGB")
    data = encoded(noisy)
    with pytest.raises(NonRetryable, match="corrupt or truncated"):
        run(data[: len(data) // 2])


def test_too_many_pixels_are_refused_before_decoding() -> None:
    # A 1-bit image compresses to almost nothing but would decode to 64 megapixels.
    bomb = encoded(Image.new("1", (8000, 8000)))
    assert MAX_PIXELS < 8000 * 8000
    with pytest.raises(NonRetryable, match="8000x8000 is more than 50,000,000 pixels"):
        run(bomb)


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (resize(0, 10), "resize: width and height must be 1..10000, got 0x10"),
        (resize(10, 20_000), "resize: width and height must be 1..10000, got 10x20000"),
        (resize(10_000, 10_000), "resize: 10000x10000 is more than 50,000,000 pixels"),
        (thumbnail(10, 0), "thumbnail: width and height must be 1..10000, got 10x0"),
        (rotate(720), "rotate: degrees must be -360..360, got 720"),
        (rotate(float("nan")), "rotate: degrees must be -360..360, got nan"),
        (Op(), r"operations\[1\]: no operation set"),
    ],
)
def test_invalid_operations_are_not_retryable(
    png: bytes, operation: tasks_pb2.ImageOperation, message: str
) -> None:
    with pytest.raises(NonRetryable, match=message):
        run(png, GRAYSCALE, operation)


def test_unknown_output_format_is_not_retryable(png: bytes) -> None:
    with pytest.raises(NonRetryable, match="unsupported output format 42"):
        run(png, output=cast(tasks_pb2.ImageFormat, 42))
