"""`maskmaker run --output mask|annotated|cutout` and the RLE masks of --json."""
from __future__ import annotations

import json
import subprocess

import numpy as np

import native_support as ns
from maskmaker_client import rle


def run(*args, timeout=300):
    return subprocess.run([str(ns.BIN), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_cutout_and_json_masks(tmp_path, photo_png, base):
    src = tmp_path / "photo.png"
    src.write_bytes(photo_png)
    out = tmp_path / "out"
    r = run("run", "-p", "dog, horse, person", "--confidence-thresh", "0.3", "--grow-mask", "0", "--output", "cutout",
            "--json", "--quiet", "--models", ns.MODELS, src, "--out", out)
    assert r.returncode == 0, r.stderr
    im = ns.Image.open(out / "photo.png")
    assert im.mode == "RGBA" and im.size == (base["width"], base["height"])
    rgba = np.asarray(im)
    assert np.array_equal(rgba[..., :3], np.asarray(ns.open_image(photo_png).convert("RGB")))
    j = json.loads((out / "photo.json").read_text())
    union = rle.decode(j["mask"])
    assert np.array_equal(rgba[..., 3] == 255, union) and set(np.unique(rgba[..., 3])) <= {0, 255}
    acc = np.zeros_like(union)
    for inst in j["instances"]:
        m = rle.decode(inst["mask"])
        assert int(m.sum()) == inst["area"] and len(inst["box"]) == 4 and inst["negative"] is False
        acc |= m
    assert np.array_equal(acc, union)
    assert sorted(i["phrase"] for i in j["instances"]) == ["dog", "horse", "person"]
    # The same pipeline as the server's (up to the threads' float rounding).
    server = base["mask_png"] == 255
    assert (union & server).sum() / (union | server).sum() > 0.98


def test_output_flag_is_checked(tmp_path):
    src = ns.SAMPLES / "tiny_4x4.png"
    r = run("run", "-p", "dog", "--return-mask", "--output", "cutout", src, "--out", tmp_path)
    assert r.returncode != 0 and "--return-mask contradicts --output cutout" in r.stderr
    r = run("run", "-p", "dog", "--output", "jpeg", src, "--out", tmp_path)
    assert r.returncode != 0 and "--output" in r.stderr
    assert not any(tmp_path.iterdir())


def test_crop_files_and_json(tmp_path):
    """`maskmaker run --crop`: NAME.crop.png and NAME.crop-mask.png, the box in --json; the crop mask is the union
    mask cut at the box (no target size: no resize) and its sides are multiples of --crop-multiple-of."""
    from testlib import sample

    src = tmp_path / "dog.jpg"
    src.write_bytes(sample("darknet_dog_bicycle_truck.jpg"))
    out = tmp_path / "out"
    r = run("run", "-p", "dog", "--confidence-thresh", "0.3", "--output", "mask", "--json", "--quiet", "--crop",
            "--crop-padding", "20", "--crop-multiple-of", "64", "--models", ns.MODELS, src, "--out", out)
    assert r.returncode == 0, r.stderr
    j = json.loads((out / "dog.json").read_text())
    full = rle.decode(j["mask"])
    c = j["crop"]
    assert c["image"] == str(out / "dog.crop.png") and c["mask"] == str(out / "dog.crop-mask.png")
    x1, y1, x2, y2 = c["box"]
    ys, xs = np.nonzero(full)
    assert c["mask_box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    mx1, my1, mx2, my2 = c["mask_box"]
    assert x1 <= max(0, mx1 - 20) and y1 <= max(0, my1 - 20) and x2 >= min(768, mx2 + 20) and y2 >= min(576, my2 + 20)
    assert (c["width"], c["height"]) == (x2 - x1, y2 - y1) and c["width"] % 64 == 0 and c["height"] % 64 == 0
    mask = np.asarray(ns.Image.open(out / "dog.crop-mask.png"))
    assert mask.shape == (c["height"], c["width"]) and np.array_equal(mask == 255, full[y1:y2, x1:x2])
    image = ns.Image.open(out / "dog.crop.png")
    assert image.mode == "RGB" and image.size == (c["width"], c["height"])
    whole = np.asarray(ns.Image.open(out / "dog.png"))
    assert np.array_equal(whole == 255, full)


def test_crop_options_need_crop_and_are_checked(tmp_path):
    src = ns.SAMPLES / "tiny_4x4.png"
    r = run("run", "-p", "dog", "--crop-padding", "8", src, "--out", tmp_path)
    assert r.returncode != 0 and "--crop-padding requires --crop" in r.stderr, r.stderr
    r = run("run", "-p", "dog", "--crop", "--crop-multiple-of", "0", src, "--out", tmp_path)
    assert r.returncode != 0 and "crop.multiple_of must be an integer between 1 and 1024" in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())
