"""Output forms of POST /v1/inpaint-mask-maker (SPEC section 1, "Responses") and a real-mask sanity check."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

import mm_helpers as h


def mask_of(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/png"
    im = h.open_image(r.content)
    assert im.format == "PNG" and im.mode == "L", (im.format, im.mode)
    return np.asarray(im)


def detections(r) -> int:
    return int(r.headers["X-Detections"])


# ------------------------------------------------------------------------------------------- images of each format

def _photo(size=(96, 64)) -> Image.Image:
    """A small picture with structure (so JPEG/PNG round trips are not trivially constant)."""
    w, hgt = size
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(hgt, 0)
    y = np.linspace(0, 255, hgt, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1), "RGB")


FORMATS = {
    # name: (bytes builder, expected annotated content type)
    "png": (lambda: h.encode(_photo(), "PNG"), "image/png"),
    "jpeg": (lambda: h.encode(_photo(), "JPEG", quality=92), "image/jpeg"),
    "webp": (lambda: h.encode(_photo(), "WEBP"), "image/png"),
    "bmp": (lambda: h.encode(_photo(), "BMP"), "image/png"),
    "gif": (lambda: h.encode(_photo().convert("P"), "GIF"), "image/png"),
    "tiff": (lambda: h.encode(_photo(), "TIFF"), "image/png"),
    "png-rgba": (lambda: h.encode(_photo().convert("RGBA"), "PNG"), "image/png"),
    "png-gray": (lambda: h.encode(_photo().convert("L"), "PNG"), "image/png"),
    "png-16bit": (lambda: h.encode(Image.fromarray((np.asarray(_photo().convert("L")).astype(np.uint16) * 257),
                                                   "I;16"), "PNG"), "image/png"),
    "jpeg-gray": (lambda: h.encode(_photo().convert("L"), "JPEG"), "image/jpeg"),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_mask_is_8bit_gray_png_of_input_size(server, fmt):
    data = FORMATS[fmt][0]()
    r = server.post({"prompt": "unicorn", "image": h.b64(data), "return_mask": True})
    m = mask_of(r)
    assert m.shape == (64, 96)
    assert m.max() == 0  # nothing found: all keep
    assert detections(r) == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_annotated_output_format_follows_input(server, fmt):
    data, ctype = FORMATS[fmt][0](), FORMATS[fmt][1]
    r = server.post({"prompt": "unicorn", "image": h.b64(data), "return_mask": False})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == ctype
    im = h.open_image(r.content)
    assert im.format == {"image/png": "PNG", "image/jpeg": "JPEG"}[ctype]
    assert im.size == (96, 64)
    assert im.mode == "RGB"  # alpha dropped, gray turned to colour


def test_nothing_found_returns_the_unannotated_png_pixels(server):
    src = _photo()
    r = server.post({"prompt": "unicorn", "image": h.b64(h.encode(src, "PNG"))})
    assert r.status_code == 200 and detections(r) == 0
    assert np.array_equal(np.asarray(h.open_image(r.content).convert("RGB")), np.asarray(src))


def test_nothing_found_inverted_is_all_255(server, small_png):
    r = server.post({"prompt": "unicorn", "image": h.b64(small_png), "return_mask": True, "invert_mask": True})
    m = mask_of(r)
    assert m.shape == (32, 48) and m.min() == 255


def test_image_as_data_uri_and_bare_base64_with_whitespace(server):
    data = h.encode(_photo(), "JPEG")
    enc = h.b64(data)
    for image in (f"data:image/jpeg;base64,{enc}", f"DATA:image/jpeg;BASE64,{enc}",
                  "\n".join(enc[i:i + 76] for i in range(0, len(enc), 76)),  # MIME line breaks
                  base64.urlsafe_b64encode(data).decode(),  # URL-safe alphabet
                  enc.rstrip("=")):  # padding dropped
        r = server.post({"prompt": "unicorn", "image": image, "return_mask": True})
        assert mask_of(r).shape == (64, 96)


def test_data_uri_media_type_does_not_override_the_bytes(server):
    # the format is sniffed from the bytes: a PNG labelled image/jpeg is a PNG
    data = h.encode(_photo(), "PNG")
    r = server.post({"prompt": "unicorn", "image": "data:image/jpeg;base64," + h.b64(data)})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"


def test_exif_orientation_sets_the_output_size(server):
    stored = _photo((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = h.encode(stored, "JPEG", exif=exif.tobytes())
    for return_mask in (True, False):
        r = server.post({"prompt": "unicorn", "image": h.b64(data), "return_mask": return_mask})
        assert r.status_code == 200, r.text
        assert h.open_image(r.content).size == (40, 80)


def test_animated_gif_uses_the_first_frame(server):
    frames = [Image.new("RGB", (40, 30), c) for c in [(250, 10, 10), (10, 250, 10), (10, 10, 250)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    r = server.post({"prompt": "unicorn", "image": h.b64(buf.getvalue())})
    assert r.status_code == 200, r.text
    out = np.asarray(h.open_image(r.content).convert("RGB")).astype(int)
    assert out.shape == (30, 40, 3)
    assert abs(out[..., 0].mean() - 250) < 8 and out[..., 1].mean() < 20  # red, the first frame


def test_sample_formats_decode(server):
    for name, size in [("hopper.webp", (128, 128)), ("animated_chi.gif", (320, 240)),
                       ("alpha_rgba.png", (200, 150)), ("tiny_4x4.png", (4, 4))]:
        r = server.post({"prompt": "unicorn", "image": h.b64(h.sample(name)), "return_mask": True})
        assert mask_of(r).shape == (size[1], size[0]), name


# ------------------------------------------------------------------------------------------- base64 JSON

@pytest.mark.parametrize("return_mask,fmt,magic", [(True, "JPEG", b"\x89PNG"), (False, "JPEG", b"\xff\xd8\xff"),
                                                   (False, "PNG", b"\x89PNG"), (True, "PNG", b"\x89PNG")])
def test_base64_json_answer(server, return_mask, fmt, magic):
    r = server.post({"prompt": "unicorn", "image": h.b64(h.encode(_photo(), fmt)), "return_mask": return_mask,
                     "base64": True})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert {"image", "status", "detections", "infer_time_ms"} <= set(j)
    assert j["status"] == "Success"
    assert j["detections"] == 0 == detections(r)
    assert isinstance(j["infer_time_ms"], (int, float)) and j["infer_time_ms"] >= 0
    assert not j["image"].startswith("data:")
    raw = base64.b64decode(j["image"], validate=True)
    assert raw.startswith(magic)
    assert h.open_image(raw).size == (96, 64)
    assert j["unmatched"] == ["unicorn"]


def test_headers_always_present(server, small_png):
    r = server.post({"prompt": "unicorn", "image": h.b64(small_png), "return_mask": True})
    assert r.headers["X-Detections"] == "0"
    assert float(r.headers["X-Inference-Time-Ms"]) >= 0
    assert r.headers["X-Unmatched-Phrases"] == "unicorn"
    assert r.headers.get("X-Request-Id")


def test_unmatched_header_lists_only_unknown_phrases(server, small_png):
    r = server.post({"prompt": "dog, unicorn, bicycle, flux capacitor", "image": h.b64(small_png),
                     "return_mask": True, "base64": True})
    assert r.status_code == 200, r.text
    assert r.headers["X-Unmatched-Phrases"] == "unicorn,flux capacitor"
    assert r.json()["unmatched"] == ["unicorn", "flux capacitor"]


def test_no_unmatched_header_for_known_phrases(server, small_png):
    r = server.post({"prompt": "dog", "image": h.b64(small_png), "return_mask": True, "base64": True})
    assert r.status_code == 200, r.text
    assert "X-Unmatched-Phrases" not in r.headers
    assert "unmatched" not in r.json()
    assert r.headers["X-Detections"] == "0" and r.json()["detections"] == 0


def test_unmatched_header_is_printable_ascii(server, small_png):
    r = server.post({"prompt": "licorne ünïcörn, 独角兽", "image": h.b64(small_png), "return_mask": True})
    assert r.status_code == 200, r.text
    value = r.headers["X-Unmatched-Phrases"]
    assert all(32 <= ord(c) < 127 for c in value), value
    assert value.count(",") == 1


# ------------------------------------------------------------------------------------------- real masks

@pytest.fixture(scope="module")
def bus() -> bytes:
    return h.sample("bus.jpg")


def test_bus_mask_sanity(server, bus):
    """bus.jpg, prompt "bus" at 0.3: one bus, a plausible mask, the inverted mask is its exact complement, the
    annotated JPEG differs from the input where the bus is, and base64 JSON carries the same mask."""
    req = {"prompt": "bus", "image": h.b64(bus), "confidence_thresh": 0.3, "return_mask": True}
    r = server.post(req)
    m = mask_of(r)
    assert m.shape == (1080, 810)
    assert detections(r) == 1
    assert "X-Unmatched-Phrases" not in r.headers
    assert set(np.unique(m)) <= {0, 255}
    frac = (m == 255).mean()
    assert 0.2 < frac < 0.9, frac
    # the bus is in the middle band of the photo: its centre is masked, the top-left corner (sky/building) is not
    assert m[540, 405] == 255 and m[5, 5] == 0

    inv = mask_of(server.post({**req, "invert_mask": True}))
    assert np.array_equal(inv, 255 - m)

    no_grow = mask_of(server.post({**req, "grow_mask": 0}))
    grown = mask_of(server.post({**req, "grow_mask": 40}))
    assert (no_grow == 255).sum() < (m == 255).sum() < (grown == 255).sum()
    assert not ((no_grow == 255) & (m == 0)).any()  # growing only adds
    assert not ((m == 255) & (grown == 0)).any()

    j = server.post({**req, "base64": True}).json()
    assert j["detections"] == 1 and j["status"] == "Success"
    assert np.array_equal(np.asarray(h.open_image(base64.b64decode(j["image"]))), m)

    ann = server.post({**req, "return_mask": False})
    assert ann.status_code == 200 and ann.headers["Content-Type"] == "image/jpeg"
    a = np.asarray(h.open_image(ann.content).convert("RGB")).astype(int)
    src = np.asarray(h.open_image(bus).convert("RGB")).astype(int)
    assert a.shape == src.shape
    diff = np.abs(a - src).sum(-1)
    assert diff[no_grow == 255].mean() > 3 * diff[m == 0].mean() + 5  # the overlay is on the bus


def test_high_confidence_finds_nothing(server, bus):
    r = server.post({"prompt": "bus", "image": h.b64(bus), "confidence_thresh": 1.0, "return_mask": True})
    m = mask_of(r)
    assert detections(r) == 0 and m.max() == 0


def test_defaults_equal_the_documented_values(server, bus_small):
    base = {"prompt": "bus", "image": h.b64(bus_small), "return_mask": True}
    implicit = server.post(base)
    explicit = server.post({**base, "invert_mask": False, "confidence_thresh": 0.5, "iou_thresh": 0.2,
                            "grow_mask": 10, "base64": False})
    assert implicit.status_code == explicit.status_code == 200
    assert implicit.content == explicit.content
    assert detections(implicit) == detections(explicit) >= 1
    assert mask_of(implicit).shape == (360, 270)
