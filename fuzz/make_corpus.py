#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/ (tiny generated files; nothing copied from ../shared).
Run with Debian's python3 (needs python3-pil). Regression inputs found by fuzzing live beside the seeds as
crash-<what>.bin and are never overwritten by this script."""
import base64
import io
import json
import pathlib
import struct
import zlib

from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent / "corpus"


def write(target, name, data: bytes):
    d = HERE / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def img(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def gradient(w, h, mode="RGB"):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 40) % 256, (y * 60) % 256, (x * y * 9) % 256) for y in range(h) for x in range(w)])
    return im.convert(mode)


def exif_app1(jpeg, orientation, order=b"MM"):
    e = ">" if order == b"MM" else "<"
    tiff = order + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1) + \
        struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0\0\0\0"
    payload = b"Exif\0\0" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(w, h):
    rows = b"".join(b"\0" + b"".join(struct.pack(">HHH", x * 9000, y * 9000, 30000) for x in range(w)) for y in range(h))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) + \
        png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")


# ---- decode: one small file per format and feature
g = gradient(6, 4)
jpeg = img(g, "JPEG", quality=50)
decode = {
    "png_rgb_6x4.png": img(g, "PNG"),
    "png_rgba.png": img(gradient(3, 3, "RGBA"), "PNG"),
    "png_palette.png": img(g.quantize(4), "PNG", transparency=0),
    "png_gray16.png": img(Image.new("I;16", (3, 2), 40000), "PNG"),
    "png_rgb16.png": png16(3, 2),
    "png_1bit.png": img(Image.new("1", (9, 3), 1), "PNG"),
    "jpeg_baseline.jpg": jpeg,
    "jpeg_progressive.jpg": img(g, "JPEG", quality=50, progressive=True),
    "jpeg_gray.jpg": img(g.convert("L"), "JPEG", quality=50),
    "jpeg_cmyk.jpg": img(g.convert("CMYK"), "JPEG", quality=50),
    "jpeg_exif6.jpg": exif_app1(jpeg, 6),
    "jpeg_exif8_le.jpg": exif_app1(jpeg, 8, b"II"),
    "gif_still.gif": img(g.quantize(8), "GIF"),
    "gif_animated.gif": img(gradient(4, 3).quantize(4), "GIF", save_all=True,
                            append_images=[gradient(4, 3).rotate(180).quantize(4)], duration=50),
    "gif_transparent.gif": img(g.quantize(4), "GIF", transparency=1),
    "webp_lossy.webp": img(g, "WEBP", quality=30),
    "webp_lossless_alpha.webp": img(gradient(3, 3, "RGBA"), "WEBP", lossless=True),
    "bmp_24.bmp": img(g, "BMP"),
    "tiff_rgb.tif": img(g, "TIFF"),
}
# A 3000x3000 first frame on a 16x16 logical screen (the screen size is what the header check saw).
big_frame = Image.new("P", (3000, 3000), 0)
big_frame.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
gif_bomb = bytearray(img(big_frame, "GIF"))
gif_bomb[6:10] = struct.pack("<HH", 16, 16)
decode["gif_frame_bigger_than_screen.gif"] = bytes(gif_bomb)
# A progressive JPEG whose last scan is repeated 150 times (libjpeg accepts repeats; each is a pass over every block).
prog = img(g, "JPEG", quality=50, progressive=True)
last_scan = prog[prog.rfind(b"\xff\xda"):prog.rfind(b"\xff\xd9")]
decode["jpeg_150_scans.jpg"] = prog[:prog.rfind(b"\xff\xd9")] + last_scan * 149 + b"\xff\xd9"
for name, data in decode.items():
    write("decode", name, data)

# ---- base64: encodings of small payloads in every accepted spelling
png = decode["png_rgb_6x4.png"]
b64 = base64.b64encode(png).decode()
base64_seeds = {
    "std.txt": b64,
    "urlsafe_nopad.txt": base64.urlsafe_b64encode(png).decode().rstrip("="),
    "mime_lines.txt": "\r\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)),
    "short_pad1.txt": "QUI=",
    "short_pad2.txt": "QQ==",
    "garbage.txt": "!!@@##",
    "data_uri.txt": "data:image/png;base64," + b64,
    "data_uri_nob64.txt": "data:image/png,abc",
    "scheme.txt": "file:///etc/passwd",
}
for name, data in base64_seeds.items():
    write("base64", name, data.encode())

# ---- request: first byte picks the endpoint ('0' compatible, '1' native), then the JSON body
small = base64.b64encode(decode["gif_still.gif"]).decode()
documented = {"prompt": "white horse", "image": "https://example.com/horses.jpg", "invert_mask": False,
              "confidence_thresh": 0.5, "iou_thresh": 0.2, "return_mask": False, "grow_mask": 10, "base64": False}
requests_seeds = {
    "documented.json": b"0" + json.dumps(documented).encode(),
    "minimal.json": b"0" + json.dumps({"prompt": "dog", "image": small}).encode(),
    "native_all.json": b"1" + json.dumps({"phrases": ["dog", "red car"], "image": "data:image/gif;base64," + small,
                                          "negative_prompt": "person", "feather": 3, "grow_mask": -4,
                                          "max_detections": 5, "output": "cutout", "mask_format": "png",
                                          "instance_masks": False}).encode(),
    "wrong_types.json": b"0" + json.dumps({"prompt": 1, "image": [], "grow_mask": "x", "iou_thresh": True}).encode(),
    "nulls.json": b"1" + json.dumps({"prompt": None, "image": None, "phrases": None, "output": None}).encode(),
    "nested.json": b"0" + b'{"prompt":"a","image":"QQ==","x":[[[[{"y":[1,2,{}]}]]]]}',
    "big_numbers.json": b"0" + b'{"prompt":"a","image":"QQ==","grow_mask":18446744073709551616,"confidence_thresh":1e308}',
    "unicode.json": b"0" + '{"prompt":"\u00e9l\u00e9phant, \U0001F40E","image":"QQ=="}'.encode(),
    "escapes.json": b"1" + b'{"prompt":"\\u0000\\ud83d\\udc0e, a\\\\b","image":"QQ=="}',
}
for name, data in requests_seeds.items():
    write("request", name, data)
print("corpus written to", HERE)
