"""Family "images": what the `image` field holds is not base64, not an image, a broken image, an extreme size, a
pixel bomb (refused from its header, before decoding), or an unusual but valid encoding (16-bit, CMYK, animated,
WebP, malformed EXIF): each gets its SPEC status, and valid images a mask of their (oriented) size."""
import io
import struct

import pytest
from PIL import Image

from .common import (COMPAT, NATIVE, Case, b64, check, health, jpeg_sof_size, jpeg_with_app1, pil_bytes, png16_rgb,
                     png_raw, sample_bytes)

FAMILY = "images"
HOPPER = sample_bytes("hopper.jpg")  # 128x128


def rgb(w, h, colour=(200, 40, 40)):
    return Image.new("RGB", (w, h), colour)


def gradient(w, h):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 7) % 256, (y * 5) % 256, (x + y) % 256) for y in range(h) for x in range(w)])
    return im


def exif_block(order: bytes, ifd_offset: int, entries: list[tuple[int, int, int, int]], declared_count=None) -> bytes:
    """An "Exif\\0\\0" APP1 payload: TIFF header with the given byte order and IFD offset, then the entries."""
    e = "<" if order == b"II" else ">"
    tiff = order + struct.pack(e + "HI", 42, ifd_offset)
    body = struct.pack(e + "H", len(entries) if declared_count is None else declared_count)
    for tag, typ, count, value in entries:
        if typ == 3:
            body += struct.pack(e + "HHIHH", tag, typ, count, value, 0)
        else:
            body += struct.pack(e + "HHII", tag, typ, count, value)
    return b"Exif\0\0" + tiff + body + b"\0\0\0\0"


def gif_animated():
    frames = [rgb(40, 30, c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def webp_animated():
    frames = [rgb(40, 30, c) for c in ((255, 0, 0), (0, 255, 0))]
    return pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)


def gif_big_frame(frame, screen):
    """A GIF whose first frame (frame x frame) is larger than its logical screen (screen x screen): the header
    check sees the screen; the frame's LZW data is what giflib decodes."""
    im = Image.new("P", (frame, frame), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    data = bytearray(pil_bytes(im, "GIF"))
    data[6:10] = struct.pack("<HH", screen, screen)
    return bytes(data)


def jpeg_repeated_scans(size, repeats):
    """A progressive JPEG (PIL writes 10 scans) whose last scan is repeated `repeats` more times."""
    prog = pil_bytes(gradient(size, size), "JPEG", quality=80, progressive=True)
    sos, eoi = prog.rfind(b"\xff\xda"), prog.rfind(b"\xff\xd9")
    assert prog.count(b"\xff\xda") == 10
    return prog[:eoi] + prog[sos:eoi] * repeats + prog[eoi:]


def gif_header(w, h):
    return b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff" + b"," + \
        struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02\x02\x44\x01\x00;"


def bmp_header(w, h):
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 0, 0, 0, 0)


def webp_vp8x(w, h):
    chunk = struct.pack("<I", 0) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(chunk)) + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_header(w, h):
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8),
               (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHIHH", tag, typ, count, value, 0) if typ == 3 else struct.pack("<HHII", tag, typ, count, value)
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0\0\0\0"


def cases():
    c = []

    def add(name, expect, image, field=None, size=None, path=COMPAT, forms=("base64",), extra=None):
        for form in forms:
            value = image if isinstance(image, str) else (
                b64(image) if form == "base64" else "data:image/png;base64," + b64(image))
            body = {"prompt": "person", "image": value, "return_mask": True, **(extra or {})}
            label = name if len(forms) == 1 else f"{name} [{form}]"
            c.append(Case(FAMILY, label, expect, body=body, field=field, size=size, path=path))

    both = ("base64", "data URI")
    # Not base64, or base64 of something that is not an image.
    for label, text in (("punctuation", "!!!!"), ("a dollar sign", "abc$"), ("one character", "Q"),
                        ("five characters", "QUJDR"), ("data after padding", "QUJD=QUJD"),
                        ("percent-encoded", "%2F9j%2F4AAQ"), ("non-ASCII letters", "ÿØÿà"), ("a NUL", "QU\u0000JD"),
                        ("only padding", "===="), ("a JSON string inside", '"/9j/4AAQ"')):
        add(f"invalid base64: {label}", 400, text, field="image")
    for label, uri in (("no comma", "data:image/png;base64"), ("empty data", "data:image/png;base64,"),
                       ("not base64 (percent-encoded)", "data:image/png,%89PNG%0D%0A"),
                       ("text without base64", "data:text/plain,hello"), ("invalid base64", "data:image/jpeg;base64,!!!!"),
                       ("charset instead of base64", "data:image/jpeg;charset=utf-8," + b64(HOPPER)),
                       ("bare 'data:'", "data:")):
        add(f"data URI: {label}", 400, uri, field="image")
    not_images = {
        "text": b"hello, this is not an image\n",
        "HTML": b"<!DOCTYPE html><html><head><title>x</title></head><body><img src=x></body></html>",
        "SVG": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
        "PDF": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        "JSON": b'{"image": "x"}',
        "ZIP": b"PK\x03\x04" + b"\0" * 26,
        "gzip of a JPEG": __import__("gzip").compress(HOPPER),
        "ELF header": b"\x7fELF\x02\x01\x01" + b"\0" * 57,
        "one zero byte": b"\0",
        "ICO": b"\0\0\1\0\1\0\x10\x10\0\0\1\0\x20\0" + b"\0" * 40,
        "JPEG 2000": b"\0\0\0\x0cjP  \r\n\x87\n" + b"\0" * 40,
        "HEIC": b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 20,
        "AVIF": b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + b"\0" * 20,
        "PSD": b"8BPS\0\1" + b"\0" * 20,
        "magic bytes only (JPEG)": b"\xff\xd8\xff",
        "magic bytes only (PNG)": b"\x89PNG\r\n\x1a\n",
        "magic bytes only (GIF)": b"GIF89a",
        "magic bytes only (WebP)": b"RIFF\0\0\0\0WEBP",
        "magic bytes only (BMP)": b"BM" + b"\0" * 30,
        "magic bytes only (TIFF)": b"II*\0\x08\0\0\0",
    }
    for label, data in not_images.items():
        add(f"not an image: {label}", 400, data, field="image", forms=both)

    # Truncated and corrupt files.
    png = pil_bytes(gradient(64, 48), "PNG")
    gif = pil_bytes(gradient(64, 48).quantize(64), "GIF")
    webp = pil_bytes(gradient(64, 48), "WEBP", quality=80)
    for label, data in (("JPEG, SOI only", HOPPER[:2]), ("JPEG, first 100 bytes", HOPPER[:100]),
                        ("JPEG, half", HOPPER[: len(HOPPER) // 2]), ("JPEG, all but the last 100 bytes", HOPPER[:-100]),
                        ("JPEG, without its end-of-image marker", HOPPER[:-2]),
                        ("PNG, signature + half IHDR", png[:20]), ("PNG, headers only", png[:33]),
                        ("PNG, half", png[: len(png) // 2]), ("PNG, all but the last 30 bytes", png[:-30]),
                        ("GIF, half", gif[: len(gif) // 2]), ("WebP, half", webp[: len(webp) // 2])):
        add(f"truncated {label}", 400, data, field="image", forms=both)
    corrupt_png = bytearray(png)
    corrupt_png[40:60] = b"\xAA" * 20  # inside IDAT: CRC and zlib stream broken
    add("PNG with a corrupted IDAT", 400, bytes(corrupt_png), field="image")
    corrupt_jpeg = bytearray(HOPPER)
    sos = HOPPER.find(b"\xff\xda")
    corrupt_jpeg[sos + 2:sos + 4] = b"\x00\x01"  # SOS length 1
    add("JPEG with a broken SOS header", 400, bytes(corrupt_jpeg), field="image")
    add("PNG declaring 100x100 with data for 10x10", 400, png_raw(100, 100, rows=(b"\0" + b"\x80" * 30) * 10),
        field="image")
    add("PNG with bit depth 3 (invalid)", 400, png_raw(4, 4, 3, 2, rows=(b"\0" + b"\0" * 12) * 4), field="image")
    add("PNG with colour type 5 (invalid)", 400, png_raw(4, 4, 8, 5, rows=(b"\0" + b"\0" * 8) * 4), field="image")

    # Zero and extreme sizes.
    add("PNG 0x0", 400, png_raw(0, 0), field="image", forms=both)
    add("PNG 0x10", 400, png_raw(0, 10), field="image")
    add("PNG 10x0", 400, png_raw(10, 0), field="image")
    add("JPEG declaring 0x0", 400, jpeg_sof_size(HOPPER, 0, 0), field="image")
    add("GIF 0x0", 400, gif_header(0, 0), field="image")
    add("BMP 0x0", 400, bmp_header(0, 0), field="image")
    add("PNG 1x1", 200, pil_bytes(rgb(1, 1), "PNG"), size=(1, 1))
    add("JPEG 1x1", 200, pil_bytes(rgb(1, 1), "JPEG"), size=(1, 1))
    add("GIF 1x1", 200, pil_bytes(rgb(1, 1), "GIF"), size=(1, 1))
    add("PNG 1x20000", 200, pil_bytes(gradient(1, 20000), "PNG"), size=(1, 20000))
    add("PNG 20000x1", 200, pil_bytes(gradient(20000, 1), "PNG"), size=(20000, 1))
    add("PNG 3x7000 (grow_mask 100)", 200, pil_bytes(gradient(3, 7000), "PNG"), size=(3, 7000), extra={"grow_mask": 100})

    # Pixel bombs: refused from the header (no decoding; a few hundred bytes each).
    for label, data in (("PNG declaring 30000x30000", png_raw(30000, 30000, idat=b"x\x9c\x03\x00\x00\x00\x00\x01")),
                        ("PNG declaring 65535x65535 (real zlib stream)", png_raw(65535, 65535, rows=b"\0" * 1000)),
                        ("PNG declaring 2^31-1 x 2^31-1", png_raw(2**31 - 1, 2**31 - 1)),
                        ("JPEG declaring 65535x65535", jpeg_sof_size(HOPPER, 65535, 65535)),
                        ("JPEG declaring 60000x1000", jpeg_sof_size(HOPPER, 60000, 1000)),
                        ("GIF declaring 65535x65535", gif_header(65535, 65535)),
                        ("BMP declaring 30000x30000", bmp_header(30000, 30000)),
                        ("BMP declaring 30000x-30000 (top-down)", bmp_header(30000, -30000)),
                        ("WebP declaring 16384x16384", webp_vp8x(16384, 16384)),
                        ("TIFF declaring 100000x100000", tiff_header(100000, 100000))):
        add(f"pixel bomb: {label}", 400, data, field="pixel" if "2^31" not in label else "image", forms=both)
    add("progressive JPEG with its last scan repeated 150 times", 400, jpeg_repeated_scans(120, 150), field="scans")
    add("progressive JPEG with 100 scans (the most decoded)", 200, jpeg_repeated_scans(64, 90), size=(64, 64))
    add("GIF: 8000x8000 first frame on a 16x16 screen", 400, gif_big_frame(8000, 16), field="pixels")
    add("GIF: 3000x3000 first frame on a 16x16 screen (within the limit)", 200, gif_big_frame(3000, 16),
        size=(16, 16))
    add("PNG declaring 2^32-1 wide (over INT32)", 400, png_raw(2**32 - 1, 1), field="image")
    add("BMP with height INT32_MIN", 400, bmp_header(10, -2**31), field="image")

    # Valid but unusual encodings: all decode.
    add("16-bit RGB PNG", 200, png16_rgb(40, 30), size=(40, 30), forms=both)
    add("16-bit grayscale PNG", 200, pil_bytes(Image.new("I;16", (33, 17), 40000), "PNG"), size=(33, 17))
    add("palette PNG with transparency", 200, pil_bytes(gradient(30, 20).quantize(16), "PNG", transparency=0), size=(30, 20))
    add("RGBA PNG (alpha dropped)", 200, pil_bytes(Image.new("RGBA", (30, 20), (255, 0, 0, 0)), "PNG"), size=(30, 20))
    add("grayscale+alpha PNG", 200, pil_bytes(Image.new("LA", (30, 20), (100, 50)), "PNG"), size=(30, 20))
    add("1-bit PNG", 200, pil_bytes(Image.new("1", (31, 9), 1), "PNG"), size=(31, 9))
    add("CMYK JPEG", 200, pil_bytes(Image.new("CMYK", (48, 32), (0, 200, 200, 0)), "JPEG"), size=(48, 32), forms=both)
    add("grayscale JPEG", 200, pil_bytes(Image.new("L", (48, 32), 90), "JPEG"), size=(48, 32))
    add("progressive JPEG", 200, pil_bytes(gradient(48, 32), "JPEG", progressive=True), size=(48, 32))
    add("JPEG with 4:4:4 sampling and restart markers", 200, pil_bytes(gradient(48, 32), "JPEG", subsampling=0),
        size=(48, 32))
    add("animated GIF (first frame)", 200, gif_animated(), size=(40, 30), forms=both)
    add("GIF with transparency", 200, pil_bytes(gradient(30, 20).quantize(8), "GIF", transparency=0), size=(30, 20))
    add("lossy WebP", 200, webp, size=(64, 48), forms=both)
    add("lossless WebP with alpha", 200, pil_bytes(Image.new("RGBA", (30, 20), (0, 0, 255, 128)), "WEBP", lossless=True),
        size=(30, 20))
    add("animated WebP", 400, webp_animated(), field="image")
    add("BMP", 200, pil_bytes(gradient(30, 20), "BMP"), size=(30, 20))
    add("TIFF", 200, pil_bytes(gradient(30, 20), "TIFF"), size=(30, 20))
    add("JPEG with trailing garbage after EOI", 200, HOPPER + b"garbage" * 100, size=(128, 128))
    add("URL-safe base64 without padding", 200, b64(pil_bytes(gradient(31, 7), "PNG")).replace("+", "-").replace("/", "_").rstrip("="),
        size=(31, 7))
    add("base64 with MIME line breaks", 200, "\r\n".join(b64(HOPPER)[i:i + 76] for i in range(0, len(b64(HOPPER)), 76)),
        size=(128, 128))
    add("data URI with an upper-case scheme and no media type", 200, "DATA:;BASE64," + b64(HOPPER), size=(128, 128))
    add("data URI whose media type disagrees (JPEG labelled PNG)", 200, "data:image/png;base64," + b64(HOPPER),
        size=(128, 128))
    add("native endpoint, 1x1 GIF", 200, pil_bytes(rgb(1, 1), "GIF"), path=NATIVE)

    # Malformed EXIF blocks: ignored (orientation 1), never a crash.
    base = pil_bytes(gradient(40, 24), "JPEG")
    for label, payload in (
            ("IFD offset past the end", exif_block(b"II", 0xFFFFFFF0, [])),
            ("IFD offset 2^32-1", exif_block(b"MM", 0xFFFFFFFF, [])),
            ("65535 entries declared, 1 present", exif_block(b"II", 8, [(0x010F, 2, 4, 0)], declared_count=0xFFFF)),
            ("orientation 9 (invalid)", exif_block(b"II", 8, [(0x0112, 3, 1, 9)])),
            ("orientation 0 (invalid)", exif_block(b"MM", 8, [(0x0112, 3, 1, 0)])),
            ("orientation as LONG 65535", exif_block(b"II", 8, [(0x0112, 4, 1, 0xFFFF)])),
            ("unknown byte order", b"Exif\0\0XX*\0\x08\0\0\0" + b"\0" * 10),
            ("header only", b"Exif\0\0"),
            ("TIFF header cut short", b"Exif\0\0II*\0"),
            ("IFD offset pointing at itself", exif_block(b"II", 4, [])),
            ("1000 bytes of 0xFF", b"Exif\0\0" + b"\xff" * 1000),
            ("not Exif at all", b"XMP garbage " * 10)):
        add(f"malformed EXIF: {label}", 200, jpeg_with_app1(base, payload), size=(40, 24))
    add("valid EXIF orientation 6 (rotated output)", 200,
        jpeg_with_app1(base, exif_block(b"MM", 8, [(0x0112, 3, 1, 6)])), size=(24, 40))
    add("APP1 segment length beyond the file", 400, base[:2] + b"\xff\xe1\xff\xff" + b"Exif\0\0II", field="image")
    return c


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_images(strict, case):
    check(strict, case)


def test_images_health(strict):
    health(strict, FAMILY)
