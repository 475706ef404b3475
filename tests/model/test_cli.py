"""`maskmaker run` over files, folders and globs: outputs on disk, failures reported, exit codes (SPEC §5)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MASKMAKER_SHARED", ROOT.parent / "shared"))
SAMPLES = SHARED / "data/samples"
BIN = os.environ.get("MASKMAKER_BIN", str(ROOT / "build" / "maskmaker"))


def run(*args, timeout=600):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_folder_with_a_broken_file_reports_it_and_goes_on(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(SAMPLES / "bus.jpg", src / "bus.jpg")
    shutil.copy(SAMPLES / "hopper.webp", src / "sub" / "hopper.webp")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("not an image, not picked up")
    out = tmp_path / "out"
    r = run("run", "--prompt", "bus", "--return-mask", "--json", "--confidence-thresh", "0.3", src, "--out", out)
    assert r.returncode == 1, r.stderr
    assert "broken.png" in r.stderr and "error:" in r.stderr
    assert "2 of 3 images done, 1 failed" in r.stderr
    mask = Image.open(out / "bus.png")
    assert mask.mode == "L" and mask.size == (810, 1080)
    assert mask.getextrema() == (0, 255)
    assert Image.open(out / "hopper.png").size == (128, 128)
    result = json.loads((out / "bus.json").read_text())
    assert result["width"] == 810 and result["height"] == 1080
    assert [i["phrase"] for i in result["instances"]] == ["bus"]
    assert len(result["instances"][0]["box"]) == 4
    assert not (out / "notes.png").exists()


def test_annotated_output_keeps_the_format_and_size(tmp_path):
    r = run("run", "-p", "horse, unicorn", SAMPLES / "darknet_horses.jpg", SAMPLES / "alpha_rgba.png", "--out", tmp_path,
            "--quiet")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "darknet_horses.jpg").size == (773, 512)
    assert Image.open(tmp_path / "darknet_horses.jpg").format == "JPEG"
    assert Image.open(tmp_path / "alpha_rgba.png").format == "PNG"


def test_glob_and_missing_file(tmp_path):
    r = run("run", "-p", "person", "--return-mask", str(SAMPLES / "hopper*.jpg"), tmp_path / "missing.jpg",
            "--out", tmp_path / "o")
    assert r.returncode == 1
    assert "missing.jpg" in r.stderr
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["hopper.png", "hopper_orient6.png", "hopper_orient8.png"]


def test_usage_errors_exit_2(tmp_path):
    assert run("run", SAMPLES / "bus.jpg", "--out", tmp_path).returncode == 2           # no --prompt
    assert run("run", "-p", "bus", "--grow-mask", "500", SAMPLES / "bus.jpg").returncode == 2
    assert run("run", "-p", " , ", SAMPLES / "bus.jpg", "--out", tmp_path).returncode == 2
    assert run("frobnicate").returncode == 2


# ------------------------------------------------------------------------------------------------ output safety

def test_output_never_overwrites_an_input(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.open(SAMPLES / "hopper.jpg").save(imgs / "t.png")
    before = (imgs / "t.png").read_bytes()
    # The mask of imgs/t.png would be imgs/t.png.
    r = run("run", "-p", "person", "--return-mask", "--quiet", "--out", imgs, imgs / "t.png")
    assert r.returncode == 1, r.stderr
    assert f"refusing to write {imgs / 't.png'}: it is an input image" in r.stderr, r.stderr
    assert "0 of 1 images done, 1 failed" in r.stderr
    assert (imgs / "t.png").read_bytes() == before
    assert sorted(p.name for p in imgs.iterdir()) == ["t.png"]  # no temporary file left behind


def test_output_never_follows_a_symlink(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "hopper.png").symlink_to(victim)
    r = run("run", "-p", "person", "--return-mask", "--quiet", "--out", out, SAMPLES / "hopper.jpg",
            SAMPLES / "bus.jpg")
    assert r.returncode == 1, r.stderr
    assert f"refusing to write {out / 'hopper.png'}: it is a symbolic link" in r.stderr, r.stderr
    assert "1 of 2 images done, 1 failed" in r.stderr
    assert victim.read_text() == "precious"
    assert (out / "hopper.png").is_symlink()
    assert Image.open(out / "bus.png").size == (810, 1080)  # the other file is written


def test_failed_write_is_a_failure(tmp_path):
    # Files may not grow past 1000 bytes (RLIMIT_FSIZE, SIGXFSZ ignored so write() fails with EFBIG): the
    # annotated JPEG cannot be written, and that is an error, not a success.
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    out = tmp_path / "out"
    r = subprocess.run([BIN, "run", "-p", "person", "--quiet", "--out", str(out), str(SAMPLES / "hopper.jpg")],
                       capture_output=True, text=True, timeout=600, preexec_fn=limit)
    assert r.returncode == 1, r.stderr
    assert f"cannot write {out / 'hopper.jpg'}: File too large" in r.stderr, r.stderr
    assert "0 of 1 images done, 1 failed" in r.stderr
    assert list(out.iterdir()) == []  # neither a truncated output nor the temporary file
