"""A synchronous client for `maskmaker serve` (the native `/v1/masks` and the hosted-compatible
`/v1/inpaint-mask-maker` endpoints), on `requests`."""
from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import requests
from PIL import Image

from . import rle as _rle

# What `image` may be: a path (str or Path) to a file; an http(s) URL or a data: URI (sent as text, the server
# fetches or decodes it); raw bytes of an image file; a PIL image; an array (H, W) or (H, W, 3|4) of uint8, RGB.
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Image.Image, np.ndarray]
Phrases = Union[str, Sequence[str]]


# ------------------------------------------------------------------------------------------------ errors

class MaskmakerError(Exception):
    """An answer other than 2xx (status, message from the server's {"error": ...}), or no answer (status None)."""

    def __init__(self, message: str, status: Optional[int] = None, request_id: Optional[str] = None,
                 retry_after: Optional[float] = None, response: Optional[requests.Response] = None):
        super().__init__(f"{status} {message}" if status is not None else message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.response = response


class BadRequestError(MaskmakerError):
    """400: a field or the image is not acceptable (the message names the field)."""


class AuthenticationError(MaskmakerError):
    """401: the server has keys and ours is missing or unknown."""


class PermissionDeniedError(MaskmakerError):
    """403: the key is disabled or not allowed this endpoint."""


class NoCreditsError(MaskmakerError):
    """406: the key has no credits left."""


class PayloadTooLargeError(MaskmakerError):
    """413: the body or the image is over the server's limit."""


class RateLimitError(MaskmakerError):
    """429: over the key's rate; retry_after says when to try again."""


class UpstreamError(MaskmakerError):
    """502: the server could not fetch the image URL."""


class ServiceUnavailableError(MaskmakerError):
    """503: models loading or queue full; retry_after says when to try again."""


class ServerTimeoutError(MaskmakerError):
    """504: fetching the image URL or waiting for a worker took too long."""


class ConnectionFailedError(MaskmakerError):
    """No HTTP answer at all (connection refused, reset, client-side timeout); status is None."""


_ERRORS = {400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 406: NoCreditsError,
           413: PayloadTooLargeError, 429: RateLimitError, 502: UpstreamError, 503: ServiceUnavailableError,
           504: ServerTimeoutError}


def _raise_for(response: requests.Response) -> None:
    if response.ok:
        return
    try:
        message = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        message = response.text[:500] or response.reason or "request failed"
    retry: Optional[float] = None
    if "Retry-After" in response.headers:
        try:
            retry = float(response.headers["Retry-After"])
        except ValueError:
            pass
    cls = _ERRORS.get(response.status_code, MaskmakerError)
    raise cls(message, response.status_code, response.headers.get("X-Request-Id"), retry, response)


# ------------------------------------------------------------------------------------------------ results

Box = Tuple[float, float, float, float]


@dataclass
class Instance:
    """One detected instance: its phrase, score, box [x1, y1, x2, y2] in original pixels, area in pixels, and its
    mask (uint8 H x W, 255 inside; None when asked without instance masks)."""
    phrase: str
    label: str
    score: float
    box: Box
    area: int
    mask: Optional[np.ndarray] = field(default=None, repr=False)
    negative: bool = False

    @classmethod
    def from_json(cls, j: Mapping[str, Any], negative: bool = False) -> "Instance":
        x1, y1, x2, y2 = (float(v) for v in j["box"])
        mask = _rle.to_mask(j["mask"]) if j.get("mask") is not None else None
        return cls(phrase=j["phrase"], label=j.get("label", j["phrase"]), score=float(j["score"]),
                   box=(x1, y1, x2, y2), area=int(j["area"]), mask=mask, negative=negative)


@dataclass
class Crop:
    """The crop for inpainting (`crop` in the request): `box` (x1, y1, x2, y2) in original pixels (x2, y2
    exclusive), `mask_box` the mask's bounding box, `size` (width, height) of the crop image, `scale` (x, y) = size
    / box size, `image` (PIL RGB) and `mask` (uint8, 255 = inpaint) at `size`. Paste an inpainted crop back with
    `maskmaker_client.stitch`."""
    box: Tuple[int, int, int, int]
    mask_box: Tuple[int, int, int, int]
    size: Tuple[int, int]
    scale: Tuple[float, float]
    image: Image.Image = field(repr=False)
    mask: np.ndarray = field(repr=False)

    @classmethod
    def from_json(cls, j: Mapping[str, Any]) -> "Crop":
        mask = np.asarray(_open(base64.b64decode(j["mask"])).convert("L")).copy()
        return cls(box=tuple(int(v) for v in j["box"]), mask_box=tuple(int(v) for v in j["mask_box"]),
                   size=(int(j["width"]), int(j["height"])), scale=(float(j["scale"][0]), float(j["scale"][1])),
                   image=_open(base64.b64decode(j["image"])).convert("RGB"), mask=mask)


@dataclass
class MasksResult:
    """The native API's answer, decoded.

    mask: the union mask, uint8 H x W (0..255). With mask_format "rle" it is binary (0/255); a feathered mask keeps
    its soft edge in `image` (output "mask") or with mask_format "png".
    image: the output image (mask: mode "L"; annotated: "RGB"; cutout: "RGBA"), None with output "none".
    """
    width: int
    height: int
    phrases: List[str]
    unmatched: List[str]
    instances: List[Instance]
    negative_instances: List[Instance]
    mask: np.ndarray = field(repr=False)
    image: Optional[Image.Image] = field(default=None, repr=False)
    image_content_type: Optional[str] = None
    output: Optional[str] = None
    detections: int = 0
    infer_time_ms: float = 0.0
    timings_ms: Dict[str, float] = field(default_factory=dict)
    image_cache_hit: bool = False
    request_id: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)
    crop: Optional[Crop] = None        # asked with crop=...: None when the mask is empty (see crop_reason)
    crop_reason: Optional[str] = None

    @classmethod
    def from_json(cls, j: Mapping[str, Any], request_id: Optional[str] = None) -> "MasksResult":
        image = None
        if j.get("image"):
            image = _open(base64.b64decode(j["image"]))
        return cls(width=int(j["width"]), height=int(j["height"]), phrases=list(j["phrases"]),
                   unmatched=list(j["unmatched"]),
                   instances=[Instance.from_json(i) for i in j["instances"]],
                   negative_instances=[Instance.from_json(i, negative=True) for i in j["negative_instances"]],
                   mask=_rle.to_mask(j["mask"]), image=image, image_content_type=j.get("image_content_type"),
                   output=j.get("output"), detections=int(j["detections"]),
                   infer_time_ms=float(j.get("infer_time_ms", 0.0)),
                   timings_ms={k: float(v) for k, v in j.get("timings_ms", {}).items()},
                   image_cache_hit=bool(j.get("image_cache_hit", False)), request_id=request_id, raw=dict(j),
                   crop=Crop.from_json(j["crop"]) if j.get("crop") else None, crop_reason=j.get("crop_reason"))

    def mask_image(self) -> Image.Image:
        """The union mask as a PIL image, mode "L"."""
        return Image.fromarray(self.mask, "L")


def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


# ------------------------------------------------------------------------------------------------ the client

def _image_part(image: ImageInput) -> Tuple[Optional[str], Optional[Tuple[str, bytes, str]]]:
    """(text for the JSON/form `image` field, or None; or a file part to upload)."""
    if isinstance(image, str):
        head = image[:16].lower()
        if head.startswith(("http://", "https://", "data:")):
            return image, None
        image = Path(image)
    if isinstance(image, os.PathLike):
        path = Path(image)
        return None, (path.name or "image", path.read_bytes(), "application/octet-stream")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return None, ("image", bytes(image), "application/octet-stream")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"an image array must be uint8, not {image.dtype}")
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, "PNG")
        return None, ("image.png", buf.getvalue(), "image/png")
    raise TypeError(f"cannot send an image of type {type(image).__name__}")


def _phrases(value: Optional[Phrases]) -> Optional[List[str]]:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


class Client:
    """A client for one server.

    >>> client = Client("http://127.0.0.1:8080", api_key=None)
    >>> result = client.masks("photo.jpg", ["dog", "horse"], confidence_thresh=0.3)
    >>> [(i.phrase, round(i.score, 2), i.box) for i in result.instances]
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8080", api_key: Optional[str] = None,
                 timeout: float = 120.0, session: Optional[requests.Session] = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.session = session or requests.Session()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if self.api_key:
            headers["x-api-key"] = self.api_key
        try:
            response = self.session.request(method, self.base_url + path, headers=headers,
                                            timeout=kw.pop("timeout", self.timeout), **kw)
        except requests.RequestException as e:
            raise ConnectionFailedError(f"{method} {self.base_url + path} failed: {e}") from e
        _raise_for(response)
        return response

    def _post_mask(self, path: str, image: ImageInput, fields: Dict[str, Any]) -> requests.Response:
        fields = {k: v for k, v in fields.items() if v is not None}
        text, upload = _image_part(image)
        if upload is None:
            return self._request("POST", path, json={**fields, "image": text})
        # multipart/form-data: the server reads booleans, numbers and JSON lists as JSON, anything else as text.
        form = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in fields.items()}
        return self._request("POST", path, data=form, files={"image": upload})

    # -- the native API

    def masks(self, image: ImageInput, prompt: Phrases, *, negative_prompt: Optional[Phrases] = None,
              confidence_thresh: Optional[float] = None, iou_thresh: Optional[float] = None,
              grow_mask: Optional[int] = None, feather: Optional[int] = None, invert_mask: Optional[bool] = None,
              max_detections: Optional[int] = None, output: str = "mask", mask_format: str = "rle",
              instance_masks: bool = True, crop: Optional[Mapping[str, Any]] = None) -> MasksResult:
        """POST /v1/masks. `prompt` is a comma-separated string or a list of phrases; None leaves a parameter to
        the server's default (grow_mask 10, confidence_thresh 0.5, ...). Local images are uploaded as
        multipart/form-data; URLs and data URIs are sent as text for the server to fetch or decode.
        `crop`: a crop for inpainting, e.g. {"padding": 32, "multiple_of": 64, "target_size": 1024} ({} for the
        defaults); the answer's `crop` then holds it (docs/inpainting.md)."""
        fields: Dict[str, Any] = {
            "negative_prompt": _phrases(negative_prompt), "confidence_thresh": confidence_thresh,
            "iou_thresh": iou_thresh, "grow_mask": grow_mask, "feather": feather, "invert_mask": invert_mask,
            "max_detections": max_detections, "output": output, "mask_format": mask_format,
            "instance_masks": instance_masks, "crop": dict(crop) if crop is not None else None}
        if isinstance(prompt, str):
            fields["prompt"] = prompt
        else:
            fields["phrases"] = _phrases(prompt)
        r = self._post_mask("/v1/masks", image, fields)
        return MasksResult.from_json(r.json(), r.headers.get("X-Request-Id"))

    # -- the hosted-compatible API

    def inpaint_mask_maker(self, image: ImageInput, prompt: str, *, return_mask: bool = True,
                           invert_mask: Optional[bool] = None, confidence_thresh: Optional[float] = None,
                           iou_thresh: Optional[float] = None, grow_mask: Optional[int] = None) -> Image.Image:
        """POST /v1/inpaint-mask-maker: the mask (PIL mode "L", 255 = inpaint) or, with return_mask False, the
        annotated image."""
        fields = {"prompt": prompt, "return_mask": return_mask, "invert_mask": invert_mask,
                  "confidence_thresh": confidence_thresh, "iou_thresh": iou_thresh, "grow_mask": grow_mask}
        return _open(self._post_mask("/v1/inpaint-mask-maker", image, fields).content)

    def mask(self, image: ImageInput, prompt: str, **kw: Any) -> np.ndarray:
        """The compatible endpoint's mask as a uint8 array (H x W, 0 or 255)."""
        return np.asarray(self.inpaint_mask_maker(image, prompt, return_mask=True, **kw).convert("L")).copy()

    def annotate(self, image: ImageInput, prompt: str, **kw: Any) -> Image.Image:
        """The compatible endpoint's annotated image."""
        return self.inpaint_mask_maker(image, prompt, return_mask=False, **kw)

    # -- operations

    def healthy(self) -> bool:
        try:
            self._request("GET", "/healthz", timeout=10)
            return True
        except MaskmakerError:
            return False

    def ready(self) -> bool:
        try:
            self._request("GET", "/readyz", timeout=10)
            return True
        except MaskmakerError:
            return False

    def openapi(self) -> Dict[str, Any]:
        return self._request("GET", "/openapi.json").json()

