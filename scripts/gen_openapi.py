#!/usr/bin/env python3
"""Writes web/openapi.json (served at /openapi.json, compiled into the binary). Edit here, then run it.
`gen_openapi.py OUT` writes OUT instead (the tests compare it with web/openapi.json). The request parameters come
from `$MASKMAKER_BIN params` (default build/maskmaker), or `--params FILE` holding that command's output.

Every schema is JSON Schema 2020-12 (OpenAPI 3.1); references are "#/components/...". Response schemas are closed
(additionalProperties: false) so that tests/native/test_openapi_live.py, which validates live answers against this
document, notices a field the server sends and the document does not describe. Request schemas stay open: the
server ignores unknown request fields.
"""
import json
import os
import pathlib
import subprocess
import sys


def ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


# ------------------------------------------------------------------------------------------------ headers
headers = {
  "X-Request-Id": {"required": True, "schema": {"type": "string"},
                   "description": "The request's id in the server's log (on every answer, errors included)"},
  "Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 0}, "description": "Seconds to wait before retrying"},
  "Allow": {"required": True, "schema": {"type": "string"}, "description": "The methods the path allows, e.g. `POST, OPTIONS`"},
  "X-Detections": {"required": True, "schema": {"type": "integer", "minimum": 0}, "description": "Instances kept (negative instances not counted)"},
  "X-Inference-Time-Ms": {"required": True, "schema": {"type": "number", "minimum": 0},
                          "description": "Decode + detection + segmentation + post-processing, in ms, one decimal (not the URL fetch, not the output encoding)"},
  "X-Unmatched-Phrases": {"schema": {"type": "string"},
                          "description": "Only when some phrases name nothing the detector can look for: comma-separated, non-ASCII as `?`"},
  "x-credits-consumed": {"schema": {"type": "integer", "const": 1}, "description": "Only when the server has keys: `1`"},
  "x-remaining-credits": {"schema": {"type": "string", "pattern": "^([0-9]+|unlimited)$"},
                          "description": "Only when the server has keys: the key's balance after this call, or `unlimited`"},
}
rid = {"X-Request-Id": ref("headers", "X-Request-Id")}
mask_headers = {**rid, **{k: ref("headers", k) for k in ["X-Detections", "X-Inference-Time-Ms", "X-Unmatched-Phrases",
                                                        "x-credits-consumed", "x-remaining-credits"]}}

# ------------------------------------------------------------------------------------------------ errors
def error_resp(desc: str, examples: list[str], extra_headers: dict | None = None) -> dict:
    media = {"schema": ref("schemas", "Error")}
    if examples:
        media["examples"] = {f"e{i}": {"value": {"error": e}} for i, e in enumerate(examples)}
    r = {"description": desc, "headers": {**rid, **(extra_headers or {})}, "content": {"application/json": media}}
    return r


retry = {"Retry-After": ref("headers", "Retry-After")}
error_responses = {
  "BadRequest": error_resp(
    "The body is not a JSON object (or is empty, nested deeper than 32 levels, or its framing cannot be read); a field "
    "is missing, mistyped or out of range (the message names it); the image field is not a URL, data URI or base64; "
    "the image does not decode, is of an unsupported format or over the pixel limit; the image URL is refused "
    "(scheme, or an address that is private, loopback, link-local or reserved)",
    ["request body is not valid JSON", "prompt is required", "confidence_thresh must be a number between 0 and 1",
     "grow_mask must be an integer between 0 and 100", "output must be one of mask, annotated, cutout, none",
     "crop.multiple_of must be an integer between 1 and 1024",
     "image is neither an http(s) URL, a data URI nor valid base64",
     "unsupported image format: expected JPEG, PNG, WebP, BMP, GIF or TIFF",
     "image URL host '127.0.0.1' resolves to a forbidden address (loopback); private URLs are not allowed on this server"]),
  "Unauthorized": error_resp("The server has keys, and the x-api-key header is missing or unknown",
                             ["missing x-api-key header", "unknown API key"]),
  "Forbidden": error_resp("The key is disabled, or not allowed to call this endpoint",
                          ["this API key is disabled", "this API key is not allowed to call /v1/masks"]),
  "MethodNotAllowed": error_resp("The path exists but not with this method", [
      "method GET is not allowed on /v1/masks; allowed: POST, OPTIONS"], {"Allow": ref("headers", "Allow")}),
  "NoCredits": error_resp("The key has no credits left (the models do not run)", ["this API key has no credits left"]),
  "PayloadTooLarge": error_resp("The request body is over --max-body-bytes (counted after de-chunking and "
                                "decompression), or the image over --fetch-max-bytes",
                                ["request body is larger than the server's limit of 33554432 bytes",
                                 "image is larger than the limit of 20971520 bytes"]),
  "UnsupportedMediaType": error_resp("Content-Type is neither JSON nor multipart/form-data", [
      "Content-Type must be application/json or multipart/form-data, not 'text/plain'"]),
  "RateLimited": error_resp("The key is over its rate limit", ["rate limit exceeded for this API key: retry in 2 s"], retry),
  "Internal": error_resp("An unexpected internal error, logged with the request id; the message leaks nothing else",
                         ["internal error (request id 1a2b3c4d000007)"]),
  "BadGateway": error_resp("The image URL cannot be fetched (DNS, connection, a non-2xx answer, too many redirects)",
                           ["cannot resolve the image URL's host 'example.invalid'", "the image URL answered HTTP 404"]),
  "Unavailable": error_resp("The models are still loading, or the queue is full", [
      "the server is starting: models are loading", "the server is busy (queue full): retry shortly"], retry),
  "Timeout": error_resp("Fetching the image URL, or waiting for a free worker, exceeded its deadline", [
      "fetching the image URL timed out", "the request waited longer than 60000 ms for a free worker"]),
  "NotFound": error_resp("No such path", ["not found: /v2/masks (see /openapi.json for the API)"]),
}
mask_errors = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "405": "MethodNotAllowed",
               "406": "NoCredits", "413": "PayloadTooLarge", "415": "UnsupportedMediaType", "429": "RateLimited",
               "500": "Internal", "502": "BadGateway", "503": "Unavailable", "504": "Timeout"}
mask_error_refs = {status: ref("responses", name) for status, name in mask_errors.items()}

# ------------------------------------------------------------------------------------------------ requests
# Every request parameter's type, range, default and description come from the one parameter table
# (include/maskmaker/params.hpp), printed by `maskmaker params`; only schema details that are not the parameter's
# (lengths, examples, how a list may be written) are added here.
def load_params() -> dict:
    if "--params" in sys.argv:
        return json.loads(pathlib.Path(sys.argv[sys.argv.index("--params") + 1]).read_text())
    binary = os.environ.get("MASKMAKER_BIN") or str(pathlib.Path(__file__).resolve().parent.parent / "build" / "maskmaker")
    return json.loads(subprocess.run([binary, "params"], check=True, capture_output=True, text=True, timeout=60).stdout)


table = load_params()
params = {row["name"]: row for row in table["parameters"]}
phrase_list = {"type": "array", "items": {"type": "string"}, "maxItems": table["max_phrases"]}
extras = {
  "prompt": {"minLength": 1, "maxLength": table["max_prompt_bytes"], "examples": ["white horse", "dog, bicycle"]},
  "image": {"minLength": 1},
  "phrases": {"examples": [["dog", "horse"]]},
  "negative_prompt": {"examples": ["person", ["person", "car"]]},
  "webhook_url": {"format": "uri"},
}


def param_schema(name: str, api: str) -> dict:
    row = params[name]
    kind = row["type"]
    if kind in ("boolean", "number", "integer"):
        schema = {"type": [kind, "null"]}
        if kind != "boolean":
            schema["minimum"] = row["compatible_minimum"] if api in ("compatible", "jobs") else row["minimum"]
            schema["maximum"] = row["maximum"]
        schema["default"] = row["default"]
    elif kind == "choice":
        schema = {"enum": row["choices"] + [None], "default": row["default"]}
    elif kind == "phrases":
        schema = {"anyOf": [phrase_list, {"type": "string", "maxLength": table["max_prompt_bytes"]}, {"type": "null"}]}
    elif kind == "object":
        schema = {"anyOf": [ref("schemas", "CropRequest"), {"type": "null"}]}
    else:
        schema = {"type": "string"} if name in ("prompt", "image") else {"type": ["string", "null"]}
    schema["description"] = row["help"]
    return {**schema, **extras.get(name, {})}


def api_props(api: str) -> dict:
    return {name: param_schema(name, api) for name, row in params.items() if api in row["apis"]}


base_props = {k: v for k, v in api_props("compatible").items()}
native_props = api_props("native")
native_props["prompt"] = {**native_props["prompt"],
                          "description": native_props["prompt"]["description"] + ". Required unless `phrases` is given"}
crop_req = {"type": "object", "additionalProperties": False,
            "description": "The crop box is the mask's bounding box (pixels > 0) grown by the padding on every side, "
                           "to min_size and to aspect_ratio, then to the size whose crop image has sides that are "
                           "multiples of multiple_of; centred on the mask and shifted inside the image (a side larger "
                           "than the image takes the whole side, and the crop image is stretched on that axis). "
                           "null means the default; unknown fields are refused",
            "properties": {
  "padding": {"type": ["integer", "null"], "minimum": 0, "maximum": 4096, "default": 32,
              "description": "Context around the mask's bounding box, in pixels of the original image, on every side"},
  "padding_fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 2, "default": 0,
                       "description": "More context: this fraction of the box's width (left and right) and height "
                                      "(top and bottom), added to padding"},
  "multiple_of": {"type": ["integer", "null"], "minimum": 1, "maximum": 1024, "default": 8,
                  "description": "The crop image's width and height are multiples of this (8 for Stable Diffusion, 64 "
                                 "for some models)"},
  "target_size": {"type": ["integer", "null"], "minimum": 1, "maximum": 4096,
                  "description": "Resize the crop so that its longer side is this (a multiple of multiple_of); the "
                                 "box grows to the crop image's aspect so that both axes scale alike. Absent: no "
                                 "resize (scale 1) unless the box is larger than the image"},
  "min_size": {"type": ["integer", "null"], "minimum": 0, "maximum": 8192, "default": 0,
               "description": "Each side of the box at least this many pixels (more context around small objects)"},
  "aspect_ratio": {"type": ["number", "null"], "minimum": 0.1, "maximum": 10,
                   "description": "Width / height of the crop (1 for square models), reached by growing the box"}}}
native_req = {"type": "object", "required": ["image"], "properties": native_props,
              "anyOf": [{"required": ["prompt"]}, {"required": ["phrases"]}],
              "description": "The compatible fields (return_mask and base64 are accepted and ignored) plus the "
                             "extensions. null means absent; unknown fields are ignored"}
compat_req = {"type": "object", "required": ["prompt", "image"], "properties": base_props,
              "description": "The hosted API's fields. null means absent; unknown fields are ignored"}


def multipart(props: dict, required: list[str]) -> dict:
    p = {k: v for k, v in props.items() if k != "image"}
    if "crop" in p:  # an object in a form is JSON text
        p["crop"] = {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": ref("schemas", "CropRequest"), "description": p["crop"]["description"]}
    p["image"] = {"type": "string", "contentMediaType": "image/*",
                  "description": "The image file (a part with a file name or an image/* type); a text part is read "
                                 "as a URL, data URI or base64 like the JSON field"}
    return {"type": "object", "required": required, "properties": p,
            "description": "The same fields as form fields: true/false, numbers and JSON lists are read as JSON, "
                           "anything else as text"}


# ------------------------------------------------------------------------------------------------ responses
rle = {"type": "object", "required": ["size", "counts"], "additionalProperties": False, "properties": {
  "size": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2,
           "description": "[height, width]"},
  "counts": {"type": "string", "description": "COCO compressed RLE (column-major runs, starting with background), "
                                              "as pycocotools writes it"}}}
mask_enc = {"oneOf": [ref("schemas", "RLE"),
                      {"type": "string", "pattern": "^data:image/png;base64,[A-Za-z0-9+/]+={0,2}$",
                       "description": "8-bit grayscale PNG, 255 = mask"}],
            "description": "mask_format rle: an RLE object; png: a PNG data URI"}
instance = {"type": "object", "required": ["phrase", "label", "score", "box", "area"], "additionalProperties": False,
            "properties": {
  "phrase": {"type": "string", "description": "The prompt (or negative_prompt) phrase this instance answers"},
  "label": {"type": "string", "description": "What the detector called it (a class name for closed-set packs), or "
                                            "for a region (sky, wall, floor...: packs with a region stage) the "
                                            "region class"},
  "score": {"type": "number", "minimum": 0, "maximum": 1,
            "description": "An object's detection confidence; a region's agreement: the IoU of the region in two "
                           "runs of the region segmenter (the photo and its mirror image), kept only when >= 0.3"},
  "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
          "description": "[x1, y1, x2, y2] in pixels of the (EXIF-oriented) original image"},
  "area": {"type": "integer", "minimum": 0, "description": "Pixels in the instance's mask (before grow)"},
  "mask": {**mask_enc, "description": "The instance's own mask, before grow, feather and invert (left out with "
                                      "instance_masks false)"}}}
stage = {"type": "number", "minimum": 0}
native_resp = {"type": "object", "additionalProperties": False,
               "required": ["status", "width", "height", "phrases", "unmatched", "detections", "instances",
                            "negative_instances", "mask", "image_cache_hit", "timings_ms", "infer_time_ms"],
               "properties": {
  "status": {"const": "Success"},
  "width": {"type": "integer", "minimum": 1}, "height": {"type": "integer", "minimum": 1},
  "phrases": {"type": "array", "items": {"type": "string"}, "description": "The parsed phrases"},
  "unmatched": {"type": "array", "items": {"type": "string"},
                "description": "Phrases neither the detector nor the region stage can look for (closed-set packs)"},
  "detections": {"type": "integer", "minimum": 0, "description": "len(instances)"},
  "instances": {"type": "array", "items": ref("schemas", "Instance"), "description": "Kept instances, best first"},
  "negative_instances": {"type": "array", "items": ref("schemas", "Instance"),
                         "description": "Instances of negative_prompt phrases (subtracted from the mask)"},
  "mask": {**mask_enc, "description": "The union mask after grow, negatives, feather and invert: with grow_mask 0 and "
                                      "no negatives, the OR of the instance masks"},
  "image_cache_hit": {"type": "boolean", "description": "The image embedding came from the server's cache"},
  "timings_ms": {"type": "object", "additionalProperties": False,
                 "required": ["decode", "detect", "encode", "segment", "post"],
                 "properties": {k: stage for k in ["decode", "detect", "encode", "segment", "post"]},
                 "description": "Time of each stage (encode and segment are 0 when nothing is found)"},
  "infer_time_ms": {"type": "number", "minimum": 0, "description": "As the X-Inference-Time-Ms header"},
  "output": {"enum": ["mask", "annotated", "cutout"], "description": "The output asked for (absent with output none)"},
  "image": {"type": "string", "contentEncoding": "base64",
            "description": "Base64 (no data: prefix) of the output image (absent with output none)"},
  "image_content_type": {"enum": ["image/png", "image/jpeg"], "description": "The output image's type"},
  "crop": {"anyOf": [ref("schemas", "Crop"), {"type": "null"}],
           "description": "Only when the request has crop: the crop, or null when the mask is empty (crop_reason says so)"},
  "crop_reason": {"type": "string", "description": "Only with crop null: why there is no crop"}},
               "dependentRequired": {"output": ["image", "image_content_type"], "image": ["output", "image_content_type"]}}
int_box = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 4, "maxItems": 4}
crop_resp = {"type": "object", "additionalProperties": False,
             "required": ["box", "mask_box", "width", "height", "scale", "image", "mask"], "properties": {
  "box": {**int_box, "description": "[x1, y1, x2, y2] of the crop in original pixels (x2, y2 exclusive), inside the image"},
  "mask_box": {**int_box, "description": "[x1, y1, x2, y2] of the mask's bounding box (x2, y2 exclusive)"},
  "width": {"type": "integer", "minimum": 1, "description": "The crop image's width: a multiple of multiple_of"},
  "height": {"type": "integer", "minimum": 1, "description": "The crop image's height: a multiple of multiple_of"},
  "scale": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2, "maxItems": 2,
            "description": "[width / box width, height / box height]: equal unless the box is larger than the image "
                           "on an axis"},
  "image": {"type": "string", "contentEncoding": "base64",
            "description": "Base64 (no data: prefix) of the crop of the image, RGB PNG, width x height"},
  "mask": {"type": "string", "contentEncoding": "base64",
           "description": "Base64 of the crop of the union mask, 8-bit grayscale PNG, width x height (a hard mask "
                          "stays 0/255 after the resize)"}}}
compat_b64 = {"type": "object", "required": ["image", "status", "detections", "infer_time_ms"], "additionalProperties": False,
              "properties": {
  "image": {"type": "string", "contentEncoding": "base64", "description": "Bare base64 (no data: prefix) of the PNG or JPEG"},
  "status": {"const": "Success"},
  "detections": {"type": "integer", "minimum": 0},
  "infer_time_ms": {"type": "number", "minimum": 0},
  "unmatched": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                "description": "Only when some phrases are unknown to the detector"}}}
binary = {"type": "string", "contentMediaType": "image/*"}
options_op = {"summary": "CORS preflight", "security": [{}], "responses": {"204": {
  "description": "CORS preflight answer",
  "headers": {**rid, "Allow": ref("headers", "Allow"),
              "Access-Control-Allow-Methods": {"required": True, "schema": {"type": "string"}},
              "Access-Control-Allow-Headers": {"required": True, "schema": {"type": "string"},
                                               "description": "`Content-Type, x-api-key`"}}}}}
get_errors = {"405": ref("responses", "MethodNotAllowed")}

# ------------------------------------------------------------------------------------------------ v2: asynchronous jobs
webhook_url = param_schema("webhook_url", "jobs")
job_props = {**api_props("jobs"), "webhook_url": webhook_url}
job_req = {"type": "object", "required": ["prompt", "image"], "properties": job_props,
           "description": "The body of POST /v1/inpaint-mask-maker, plus webhook_url. null means absent; unknown "
                          "fields are ignored"}
job_id = {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "The job's id (128 random bits)"}
job_id_param = [{"name": "request_id", "in": "path", "required": True, "schema": job_id}]
job_states = ["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]
job_submitted = {"type": "object", "additionalProperties": False,
                 "required": ["request_id", "status", "status_url", "response_url"], "properties": {
  "request_id": job_id, "status": {"const": "QUEUED"},
  "status_url": {"type": "string", "format": "uri", "description": "Absolute URL of GET /v2/requests/{request_id}/status "
                 "(from --public-url, else X-Forwarded-Proto/-Host, else the request's Host)"},
  "response_url": {"type": "string", "format": "uri", "description": "Absolute URL of GET /v2/requests/{request_id}"}}}
job_status_props = {
  "request_id": job_id,
  "status": {"enum": job_states},
  "queue_position": {"type": "integer", "minimum": 0, "description": "Only while QUEUED: jobs ahead of this one"},
  "error": {"type": "string", "minLength": 1, "description": "Only when FAILED: why, as the synchronous endpoint "
                                                            "would have said it"}}
job_status = {"type": "object", "additionalProperties": False, "required": ["request_id", "status"],
              "properties": job_status_props}
ms = {"type": "number", "minimum": 0}
job_output = {"type": "object", "additionalProperties": False,
              "required": ["image", "content_type", "detections", "unmatched", "instances", "width", "height",
                           "infer_time_ms"], "properties": {
  "image": {"type": "string", "contentEncoding": "base64",
            "description": "Base64 of the bytes POST /v1/inpaint-mask-maker answers for the same body: the mask PNG "
                           "(return_mask true) or the annotated image"},
  "content_type": {"enum": ["image/png", "image/jpeg"]},
  "detections": {"type": "integer", "minimum": 0},
  "unmatched": {"type": "array", "items": {"type": "string"}, "description": "Phrases the detector cannot look for"},
  "instances": {"type": "array", "description": "Kept instances, best first", "items": {
      "type": "object", "additionalProperties": False, "required": ["phrase", "score", "box"], "properties": {
          "phrase": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1},
          "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                  "description": "[x1, y1, x2, y2] in pixels of the (EXIF-oriented) original image"}}}},
  "width": {"type": "integer", "minimum": 1}, "height": {"type": "integer", "minimum": 1},
  "infer_time_ms": {**ms, "description": "As X-Inference-Time-Ms"}}}
job_metrics = {"type": "object", "additionalProperties": False,
               "required": ["queue_time_ms", "fetch_time_ms", "inference_time_ms", "output_time_ms", "total_time_ms",
                            "attempts"], "properties": {
  "queue_time_ms": {**ms, "description": "Submitted to inference start, less the image URL fetch"},
  "fetch_time_ms": {**ms, "description": "Fetching the image URL (0 for an inline image)"},
  "inference_time_ms": {**ms, "description": "Decode + detection + segmentation + post-processing"},
  "output_time_ms": {**ms, "description": "Encoding the output image"},
  "total_time_ms": {**ms, "description": "Submitted to finished"},
  "attempts": {"type": "integer", "minimum": 1, "description": "2 when a server stopped while running it"},
  "remaining_credits": {"anyOf": [{"type": "integer", "minimum": 0}, {"const": "unlimited"}],
                        "description": "Only when the server has keys: the key's balance after this job's credit"}}}
job_result = {"type": "object", "additionalProperties": False, "required": ["request_id", "status"],
              "properties": {**job_status_props, "output": ref("schemas", "JobOutput"),
                             "metrics": ref("schemas", "JobMetrics")},
              "dependentRequired": {"output": ["metrics"]},
              "description": "COMPLETED: with output and metrics; otherwise as the status"}
job_not_found = error_resp("No job with this id for this key (another key's job answers the same), or the job "
                           "expired (--jobs-ttl-seconds, or the results' budget --jobs-max-result-bytes)", [
    "no request with id '0123456789abcdef0123456789abcdef' (submit one with POST /v2/inpaint-mask-maker)",
    "request '0123456789abcdef0123456789abcdef' expired: finished jobs are kept 3600 s (and results within the "
    "server's storage budget); submit it again"])
job_get_errors = {"401": ref("responses", "Unauthorized"), "403": ref("responses", "Forbidden"), "404": job_not_found,
                  "405": ref("responses", "MethodNotAllowed"), "500": ref("responses", "Internal")}
job_json = lambda name: {"application/json": {"schema": ref("schemas", name)}}  # noqa: E731
job_failed = {"description": "FAILED: the error, as the synchronous endpoint would have answered it (an image URL "
                             "that cannot be fetched, an image that does not decode, no credit left when it finished)",
              "headers": rid, "content": job_json("JobStatus")}
job_options = {**options_op, "parameters": job_id_param}

doc = {
 "openapi": "3.1.0",
 "info": {"title": "maskmaker", "version": "0.1.0", "license": {"name": "MIT", "identifier": "MIT"},
          "description": "Image + text prompt -> inpainting mask. `/v1/inpaint-mask-maker` is a drop-in replacement "
                         "for the hosted Inpaint Mask Maker API; `/v1/masks` is the native API with per-instance "
                         "results. `/v2/inpaint-mask-maker` queues the same request as an asynchronous job "
                         "(submit, then poll `/v2/requests/{request_id}/status` and read `/v2/requests/{request_id}`). "
                         "Every error is JSON `{\"error\": message}`; an unknown path is a 404 "
                         "(components/responses/NotFound). Every answer carries X-Request-Id and "
                         "Access-Control-Allow-Origin: *."},
 "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
 "components": {
   "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                                  "description": "Needed only when the server runs with --keys-db"}},
   "headers": headers,
   "responses": error_responses,
   "schemas": {"Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                         "properties": {"error": {"type": "string", "minLength": 1}}},
               "RLE": rle, "Instance": instance, "CropRequest": crop_req, "Crop": crop_resp, "CompatibleRequest": compat_req, "NativeRequest": native_req,
               "CompatibleBase64Response": compat_b64, "NativeResponse": native_resp,
               "JobRequest": job_req, "JobSubmitted": job_submitted, "JobStatus": job_status, "JobResult": job_result,
               "JobOutput": job_output, "JobMetrics": job_metrics}},
 "security": [{}, {"apiKey": []}],
 "paths": {
  "/v1/inpaint-mask-maker": {
   "post": {
    "summary": "The hosted API's endpoint: the mask (PNG) or the annotated image",
    "operationId": "inpaintMaskMaker",
    "requestBody": {"required": True, "content": {
       "application/json": {"schema": ref("schemas", "CompatibleRequest")},
       "multipart/form-data": {"schema": multipart(base_props, ["prompt", "image"])}}},
    "responses": {"200": {"description": "return_mask true: the mask, 8-bit grayscale PNG the size of the input "
                                         "(255 = inpaint); false: the annotated image (JPEG for a JPEG input, PNG "
                                         "otherwise); base64 true: JSON with either as base64",
        "headers": mask_headers,
        "content": {"image/png": {"schema": binary}, "image/jpeg": {"schema": binary},
                    "application/json": {"schema": ref("schemas", "CompatibleBase64Response")}}},
        **mask_error_refs}},
   "options": options_op},
  "/v1/masks": {
   "post": {
    "summary": "Native API: every instance with its phrase, score, box, area and mask, plus the union mask",
    "operationId": "masks",
    "requestBody": {"required": True, "content": {
       "application/json": {"schema": ref("schemas", "NativeRequest")},
       "multipart/form-data": {"schema": multipart(native_props, ["image"])}}},
    "responses": {"200": {"description": "Per-instance results", "headers": mask_headers,
        "content": {"application/json": {"schema": ref("schemas", "NativeResponse")}}},
        **mask_error_refs}},
   "options": options_op},
  "/v2/inpaint-mask-maker": {
   "post": {
    "summary": "Submit an asynchronous job: the body of /v1/inpaint-mask-maker (+ webhook_url); answered at once",
    "description": "Validated as the synchronous endpoint validates (every 400, the image URL's scheme and address "
                   "guard included, 401/403/406/429 for the key); the image URL is fetched later (a fetch failure "
                   "makes a FAILED job). The credit is taken at submit and given back if the job fails. Each key "
                   "may have --jobs-per-key unfinished jobs holding --jobs-bytes-per-key of inline images (429 "
                   "beyond). Jobs wait in a bounded queue (--jobs-queue-length; 503 when full, or when the jobs "
                   "database is unavailable) and run on the inference slots when no synchronous request waits for "
                   "one. They survive restarts.",
    "operationId": "submitJob",
    "requestBody": {"required": True, "content": {
       "application/json": {"schema": ref("schemas", "JobRequest")},
       "multipart/form-data": {"schema": multipart(job_props, ["prompt", "image"])}}},
    "responses": {"200": {"description": "Queued", "headers": rid, "content": job_json("JobSubmitted")},
                  **{k: v for k, v in mask_error_refs.items() if k not in ("502", "504")}},
    "callbacks": {"jobFinished": {"{$request.body#/webhook_url}": {"post": {
        "summary": "The job ended (only when the body has webhook_url)",
        "requestBody": {"required": True, "content": job_json("JobResult")},
        "responses": {"200": {"description": "Any 2xx ends the deliveries; anything else is retried (3 tries)"}}}}}}},
   "options": options_op},
  "/v2/requests/{request_id}/status": {
   "get": {
    "summary": "A job's state (only the key that submitted it may read it)",
    "operationId": "jobStatus",
    "parameters": job_id_param,
    "responses": {"200": {"description": "QUEUED (with queue_position), PROCESSING or COMPLETED", "headers": rid,
                          "content": job_json("JobStatus")},
                  "422": job_failed, **job_get_errors}},
   "options": job_options},
  "/v2/requests/{request_id}": {
   "get": {
    "summary": "A job's result (only the key that submitted it may read it)",
    "operationId": "jobResult",
    "parameters": job_id_param,
    "responses": {"200": {"description": "COMPLETED: output (the image as base64, detections, instances) and "
                                         "metrics (times)", "headers": rid, "content": job_json("JobResult")},
                  "202": {"description": "Not finished yet (QUEUED or PROCESSING): the status; poll again",
                          "headers": {**rid, "Retry-After": ref("headers", "Retry-After")},
                          "content": job_json("JobStatus")},
                  "422": job_failed, **job_get_errors}},
   "options": job_options},
  "/healthz": {"get": {"summary": "The process is alive", "security": [{}], "responses": {
      "200": {"description": "ok", "headers": rid, "content": {"application/json": {"schema": {
          "type": "object", "required": ["status"], "additionalProperties": False,
          "properties": {"status": {"const": "ok"}}}}}}, **get_errors}}},
  "/readyz": {"get": {"summary": "The models are loaded (and the keys database reachable)", "security": [{}], "responses": {
      "200": {"description": "ready", "headers": rid, "content": {"application/json": {"schema": {
          "type": "object", "required": ["status", "pack"], "additionalProperties": False,
          "properties": {"status": {"const": "ready"}, "pack": {"type": "string"}}}}}},
      "503": error_resp("Models loading (or failed to load), or the keys database unreachable",
                        ["models are loading"], retry), **get_errors}}},
  "/metrics": {"get": {"summary": "Prometheus metrics", "security": [{}], "responses": {
      "200": {"description": "Prometheus text format", "headers": rid,
              "content": {"text/plain": {"schema": {"type": "string"}}}}, **get_errors}}},
  "/openapi.json": {"get": {"summary": "This document", "security": [{}], "responses": {
      "200": {"description": "OpenAPI 3.1", "headers": rid,
              "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}}},
      **get_errors}}},
  "/": {"get": {"summary": "The web page", "security": [{}], "responses": {
      "200": {"description": "HTML", "headers": rid, "content": {"text/html": {"schema": {"type": "string"}}}},
      **get_errors}}},
 }}

positional = [a for i, a in enumerate(sys.argv[1:], 1) if not a.startswith("--") and sys.argv[i - 1] != "--params"]
path = pathlib.Path(positional[0]) if positional else pathlib.Path(__file__).resolve().parents[1] / "web" / "openapi.json"
path.write_text(json.dumps(doc, indent=1) + "\n")
