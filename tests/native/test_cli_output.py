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
