"""The Python client (clients/python, imported from its src folder: no pip install) against the live server: every
kind of image input, the per-instance results as dataclasses with decoded masks, the compatible endpoint, and
errors as exceptions carrying the status and the server's message. Its session validates every answer against
the OpenAPI document too."""
from __future__ import annotations

import base64
import dataclasses

import numpy as np
import pytest
from PIL import Image

import native_support as ns
from native_support import PROMPT
from maskmaker_client import (AuthenticationError, BadRequestError, Client, ConnectionFailedError, Instance,
                              MaskmakerError, MasksResult, NoCreditsError, PermissionDeniedError, RateLimitError, rle)

PHRASES = ["dog", "horse", "person"]


@pytest.fixture(scope="module")
def client(srv, api):
    with Client(srv.base, session=ns.checked_session(api)) as c:
        yield c


def same_instances(result: MasksResult, base: dict) -> None:
    assert [i.phrase for i in result.instances] == [i["phrase"] for i in base["instances"]]
    for inst, ref in zip(result.instances, base["instances"]):
        assert isinstance(inst, Instance) and not inst.negative
        assert inst.box == tuple(ref["box"]) and inst.area == ref["area"] and inst.score == pytest.approx(ref["score"])
        assert inst.mask is not None and inst.mask.dtype == np.uint8 and inst.mask.shape == (result.height, result.width)
        assert np.array_equal(inst.mask == 255, rle.decode(ref["mask"]))
        assert int((inst.mask == 255).sum()) == inst.area


def test_masks_from_a_file_path(client, base, photo_png, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(photo_png)
    result = client.masks(str(path), PHRASES, confidence_thresh=0.3, grow_mask=0)
    assert dataclasses.is_dataclass(result) and isinstance(result, MasksResult)
    assert (result.width, result.height) == (base["width"], base["height"])
    assert result.phrases == PHRASES and result.unmatched == [] and result.detections == 3
    same_instances(result, base)
    union = np.zeros((result.height, result.width), bool)
    for inst in result.instances:
        union |= inst.mask == 255
    assert np.array_equal(result.mask == 255, union) and np.array_equal(result.mask, base["mask_png"])
    assert isinstance(result.image, Image.Image) and result.image.mode == "L"
    assert np.array_equal(np.asarray(result.image), result.mask)
    assert result.output == "mask" and result.image_content_type == "image/png"
    assert result.request_id and set(result.timings_ms) >= {"detect", "segment"} and result.infer_time_ms > 0
    assert np.array_equal(np.asarray(result.mask_image()), result.mask)


def test_masks_from_an_array_as_a_cutout(client, base, photo_rgb):
    result = client.masks(photo_rgb, PROMPT, confidence_thresh=0.3, grow_mask=0, output="cutout")
    same_instances(result, base)
    assert result.image.mode == "RGBA" and np.array_equal(np.asarray(result.image)[..., 3], base["mask_png"])
    assert np.array_equal(np.asarray(result.image)[..., :3], photo_rgb)


def test_masks_from_a_data_uri_with_png_masks_and_a_negative_prompt(client, base, photo_png):
    uri = "data:image/png;base64," + base64.b64encode(photo_png).decode()
    result = client.masks(uri, "dog, horse", negative_prompt=["person"], confidence_thresh=0.3, grow_mask=0,
                          mask_format="png", output="annotated")
    assert [i.phrase for i in result.instances] == ["dog", "horse"]
    assert [i.phrase for i in result.negative_instances] == ["person"] and result.negative_instances[0].negative
    person = {i["phrase"]: i for i in base["instances"]}["person"]
    assert np.array_equal(result.negative_instances[0].mask == 255, rle.decode(person["mask"]))
    assert result.image.mode == "RGB" and result.image.size == (base["width"], base["height"])
    assert result.image_content_type == "image/png"


def test_masks_from_bytes_and_a_pil_image_without_instance_masks(client, base, photo_png, photo_rgb):
    for image in (photo_png, Image.fromarray(photo_rgb)):
        result = client.masks(image, PHRASES, confidence_thresh=0.3, grow_mask=0, instance_masks=False,
                              output="none", max_detections=2)
        assert [i.phrase for i in result.instances] == [i["phrase"] for i in base["instances"][:2]]
        assert all(i.mask is None for i in result.instances)
        assert result.image is None and result.output is None


def test_compatible_endpoint(client, base, tmp_path, photo_png):
    path = tmp_path / "photo.png"
    path.write_bytes(photo_png)
    mask = client.mask(path, PROMPT, confidence_thresh=0.3, grow_mask=0)
    assert mask.dtype == np.uint8 and np.array_equal(mask, base["mask_png"])
    annotated = client.annotate(path, "dog", confidence_thresh=0.3)
    assert annotated.size == (base["width"], base["height"]) and annotated.format == "PNG"


def test_operations(client, srv):
    assert client.healthy() and client.ready()
    assert client.openapi()["paths"][ns.NATIVE]
    assert not Client(f"http://127.0.0.1:{ns.free_port()}", timeout=5).healthy()


def test_errors_carry_status_and_message(client, srv):
    tiny = ns.encode(Image.new("RGB", (32, 24)), "PNG")
    with pytest.raises(BadRequestError) as e:
        client.masks(tiny, "dog", feather=500)
    assert e.value.status == 400 and e.value.message == "feather must be an integer between 0 and 100"
    assert e.value.request_id and isinstance(e.value, MaskmakerError)
    with pytest.raises(BadRequestError, match="unsupported image format"):
        client.masks(b"not an image at all", "dog")
    with pytest.raises(BadRequestError, match="grow_mask must be an integer between 0 and 100"):
        client.mask(tiny, "dog", grow_mask=-3)
    with pytest.raises(MaskmakerError) as e:
        client._request("GET", "/v1/masks")
    assert e.value.status == 405 and "not allowed" in e.value.message
    with pytest.raises(ConnectionFailedError) as e:
        Client(f"http://127.0.0.1:{ns.free_port()}", timeout=5).masks(tiny, "dog")
    assert e.value.status is None
    with pytest.raises(TypeError):
        client.masks(3.5, "dog")  # type: ignore[arg-type]


def test_key_errors(strict, api):
    with ns.checked_session(api) as session:
        tiny = ns.encode(Image.new("RGB", (32, 24)), "PNG")
        with pytest.raises(AuthenticationError) as e:
            Client(strict.base, session=session).masks(tiny, "unicorn")
        assert e.value.status == 401 and e.value.message == "missing x-api-key header"
        with pytest.raises(NoCreditsError):
            Client(strict.base, api_key=strict.keys["empty"], session=session).masks(tiny, "unicorn")
        with pytest.raises(PermissionDeniedError):
            Client(strict.base, api_key=strict.keys["native"], session=session).mask(tiny, "unicorn")
        key = ns.keys_cli(strict.db, "add", "client-slow", "--rate", "1")
        slow = Client(strict.base, api_key=key, session=session)
        assert slow.masks(tiny, "unicorn").detections == 0
        with pytest.raises(RateLimitError) as e:
            slow.masks(tiny, "unicorn")
        assert e.value.status == 429 and e.value.retry_after and e.value.retry_after >= 1
        ok = Client(strict.base, api_key=strict.keys["ok"], session=session).masks(tiny, ["unicorn"], output="none")
        assert ok.unmatched == ["unicorn"]
