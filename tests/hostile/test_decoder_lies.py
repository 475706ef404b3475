"""Files that show one size to a header check and another to the decoder. The size the server checks against
--max-pixels is each decoder's own header parse (libjpeg, libpng, libtiff, libwebp, giflib, OpenCV's BMP reader),
and a JPEG that libjpeg would have to resynchronise over (bytes skipped to find a marker) is refused, so none of
these can make the server allocate for more pixels than the limit: each gets its status, the process stays up, and
its peak RSS (VmHWM) does not grow by the size of a lying image."""
import io
import pathlib
import struct
import zlib

import pytest
from PIL import Image

from .common import COMPAT, BIN, Server, b64, pil_bytes, png_raw

MAX_PIXELS = 4_000_000  # 2000 x 2000; every lie below claims 8000 x 8000 = 64 M pixels (192 MB of BGR)
BIG = 8000


def small(fmt, w=16, h=16, **kw):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 16) % 256, (y * 16) % 256, 128) for y in range(h) for x in range(w)])
    return pil_bytes(im, fmt, **kw)


def sof_patched(jpeg: bytes, w: int, h: int) -> bytes:
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i + 5] + struct.pack(">HH", h, w) + jpeg[i + 9:]


def jpeg_hidden_sof():
    """SOI, then FF 00 and a 16-bit length that a sniffer reading FF 00 as a marker segment skips, over a whole
    JPEG whose SOF says 8000x8000 (libjpeg skips the FF 00 pair and the length as garbage and resynchronises onto
    it), then an honest 16x16 JPEG's segments, which the sniffer reads."""
    honest = small("JPEG")
    hidden = sof_patched(honest, BIG, BIG)[2:-2]  # without SOI and EOI
    return b"\xff\xd8\xff\x00" + struct.pack(">H", len(hidden) + 2) + hidden + honest[2:]


def tiff(entries, strip=b"\x80" * (16 * 16)):
    """A little-endian, 8-bit grey, one-strip TIFF with the given (tag, value) LONG entries plus the strip's."""
    data_offset = 8
    ifd_offset = data_offset + len(strip)
    entries = sorted(entries + [(273, data_offset), (279, len(strip)), (258, 8), (259, 1), (262, 1), (277, 1)],
                     key=lambda e: e[0])
    ifd = struct.pack("<H", len(entries))
    for tag, value in entries:
        ifd += struct.pack("<HHII", tag, 4, 1, value)
    return b"II*\0" + struct.pack("<I", ifd_offset) + strip + ifd + b"\0\0\0\0"


def gif_screen(data: bytes, w: int, h: int) -> bytes:
    return data[:6] + struct.pack("<HH", w, h) + data[10:]


def webp_vp8_size(data: bytes, w: int, h: int) -> bytes:
    """A simple (VP8) lossy WebP whose key-frame header is rewritten to w x h."""
    assert data[12:16] == b"VP8 "
    frame = 20  # RIFF header 12 + chunk header 8
    assert data[frame + 3:frame + 6] == b"\x9d\x01\x2a"
    return data[:frame + 6] + struct.pack("<HH", w, h) + data[frame + 10:]


def bmp(width, height, header="info", pixels=b""):
    if header == "core":  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        info = struct.pack("<IHHHH", 12, width, height, 1, 24)
    else:
        info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def png_ihdr_small_idat_big():
    """IHDR says 16x16; IDAT holds 8000 rows of 8000 pixels (zeros, so a small stream)."""
    rows = (b"\0" + b"\0" * (BIG * 3)) * 200  # 200 of the 8000 rows are enough to be far over 16x16
    return png_raw(16, 16, rows=rows)


HONEST_CORE_BMP = bmp(16, 16, "core", b"\x40\x80\xc0" * 16 * 16)

# (name, bytes, status, a word the error names, or the mask's size for a 200)
CASES = [
    ("JPEG: FF 00 hides an 8000x8000 SOF", jpeg_hidden_sof(), 400, "cannot read the jpeg image header"),
    ("JPEG: honest SOF 8000x8000", sof_patched(small("JPEG"), BIG, BIG), 400, "pixels"),
    ("TIFF: ImageWidth/Length 8000 then 16 (duplicates)",
     tiff([(256, BIG), (256, 16), (257, BIG), (257, 16)]), 400, "pixels"),  # libtiff keeps the first
    ("TIFF: ImageWidth/Length 16 then 8000 (duplicates)",
     tiff([(256, 16), (256, BIG), (257, 16), (257, BIG)]), 200, (16, 16)),
    ("TIFF: honest 8000x8000 header", tiff([(256, BIG), (257, BIG)]), 400, "pixels"),
    ("PNG: IHDR 16x16, IDAT for 8000-wide rows", png_ihdr_small_idat_big(), 200, (16, 16)),  # the rest ignored
    ("PNG: IHDR 8000x8000, IDAT for 16x16", png_raw(BIG, BIG, rows=(b"\0" + b"\0" * 48) * 16), 400, "pixels"),
    ("GIF: 8000x8000 screen, 16x16 frame", gif_screen(small("GIF"), BIG, BIG), 400, "pixels"),
    ("WebP: VP8 frame header 8000x8000", webp_vp8_size(small("WEBP", quality=80), BIG, BIG), 400, "pixels"),
    ("BMP: 8000 x -8000 (top-down)", bmp(BIG, -BIG), 400, "pixels"),
    ("BMP: OS/2 core header 8000x8000", bmp(BIG, BIG, "core"), 400, "pixels"),
    ("BMP: unknown header size", b"BM" + struct.pack("<IHHI", 40, 0, 0, 26) + struct.pack("<I", 8) + b"\0" * 20,
     400, "cannot read the bmp image header"),
    ("BMP: honest OS/2 core header 16x16", HONEST_CORE_BMP, 200, (16, 16)),
]


def status_kib(pid, field):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def server():
    if not BIN.exists():
        pytest.skip(f"maskmaker binary not built at {BIN}")
    srv = Server("decoder-lies", "--threads", "2", "--max-concurrent", "1", "--max-pixels", str(MAX_PIXELS))
    # Warm: one real request, so that the peak RSS already holds the models' working memory.
    r = srv.post(COMPAT, {"prompt": "person", "image": b64(small("PNG", 64, 64)), "return_mask": True})
    assert r.status_code == 200, r.text[:300]
    srv.hwm_warm = status_kib(srv.pid, "VmHWM")
    yield srv
    srv.terminate()


@pytest.mark.parametrize("name,data,status,expect", CASES, ids=[c[0] for c in CASES])
def test_lying_image(server, name, data, status, expect):
    r = server.post(COMPAT, {"prompt": "person", "image": b64(data), "return_mask": True})
    assert r.status_code == status, (r.status_code, r.text[:300])
    if status == 200:
        assert Image.open(io.BytesIO(r.content)).size == expect
    else:
        err = r.json()["error"]
        assert "image" in err, err
        if expect:
            assert expect in err, err
    assert server.alive()
    # No lie got a buffer of its claimed size: 8000x8000 BGR would be 192 MB.
    grew = status_kib(server.pid, "VmHWM") - server.hwm_warm
    assert grew < 64 * 1024, f"peak RSS grew by {grew} KiB"
