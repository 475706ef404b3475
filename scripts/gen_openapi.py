#!/usr/bin/env python3
"""Writes web/openapi.json (served at /openapi.json, compiled into the binary). Edit here, then run it.
`gen_openapi.py OUT` writes OUT instead (the tests compare it with web/openapi.json).

Every schema is JSON Schema 2020-12 (OpenAPI 3.1); references are "#/components/...". Response schemas are closed
(additionalProperties: false) so that tests/native/test_openapi_live.py, which validates live answers against this
document, notices a field the server sends and the document does not describe. Request schemas stay open: the
server ignores unknown request fields.
"""
import json
import pathlib
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
prompt = {"type": "string", "minLength": 1, "maxLength": 4096,
          "description": "What to find: phrases separated by commas (at most 64 phrases and 4096 bytes of UTF-8); "
                         "trimmed, empty ones dropped, duplicates merged case-insensitively",
          "examples": ["white horse", "dog, bicycle"]}
image = {"type": "string", "minLength": 1,
         "description": "An http(s) URL (fetched by the server; private addresses refused unless --allow-private-urls), "
                        "a `data:image/...;base64,` URI, or bare base64 (standard or URL-safe, padding optional). "
                        "JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF; EXIF orientation applied, alpha dropped"}
base_props = {
  "prompt": prompt,
  "image": image,
  "invert_mask": {"type": ["boolean", "null"], "default": False, "description": "Swap mask and background"},
  "confidence_thresh": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "default": 0.5,
                        "description": "Keep detections scoring at least this"},
  "iou_thresh": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "default": 0.2,
                 "description": "Non-maximum suppression overlap threshold, per phrase"},
  "return_mask": {"type": ["boolean", "null"], "default": False,
                  "description": "true: answer the mask; false: the annotated image"},
  "grow_mask": {"type": ["integer", "null"], "minimum": 0, "maximum": 100, "default": 10,
                "description": "Dilate the mask by this many pixels of the original image (round kernel)"},
  "base64": {"type": ["boolean", "null"], "default": False,
             "description": "Answer JSON with the image as base64 instead of the raw bytes"},
}
phrase_list = {"type": "array", "items": {"type": "string"}, "maxItems": 64}
native_props = {
  "prompt": {**prompt, "description": prompt["description"] + ". Required unless `phrases` is given"},
  "phrases": {"anyOf": [phrase_list, {"type": "string", "maxLength": 4096}, {"type": "null"}],
              "description": "Instead of prompt: a list of phrases (or one comma-separated string); wins over prompt. "
                             "At most 64 phrases and 4096 bytes (joined with \", \")",
              "examples": [["dog", "horse"]]},
  "image": image,
  "negative_prompt": {"anyOf": [phrase_list, {"type": "string", "maxLength": 4096}, {"type": "null"}],
                      "description": "Phrases whose instances are subtracted from the union mask after growing "
                                     "(reported in negative_instances). A phrase that names the same detector class "
                                     "as a prompt phrase finds nothing with the closed-set packs: the prompt phrase "
                                     "takes the instances. At most 64 phrases and 4096 bytes",
                      "examples": ["person", ["person", "car"]]},
  "invert_mask": base_props["invert_mask"],
  "confidence_thresh": base_props["confidence_thresh"],
  "iou_thresh": base_props["iou_thresh"],
  "grow_mask": {"type": ["integer", "null"], "minimum": -100, "maximum": 100, "default": 10,
                "description": "Grow the union mask by this many pixels (round kernel); negative values erode it"},
  "feather": {"type": ["integer", "null"], "minimum": 0, "maximum": 100, "default": 0,
              "description": "Width in px of a soft edge outside the mask: a pixel at distance d = 1..feather "
                             "gets 255 * (1 - d / (feather + 1)); applied after grow and negatives, before invert"},
  "max_detections": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000, "default": 100,
                     "description": "Keep at most this many instances (highest scores first; negatives not counted)"},
  "output": {"enum": ["mask", "annotated", "cutout", "none", None], "default": "mask",
             "description": "The image in the answer's `image` field: mask (8-bit grayscale PNG, 255 = inpaint), "
                            "annotated (JPEG for a JPEG input, PNG otherwise), cutout (RGBA PNG, the mask as "
                            "alpha), none (no image). Case-insensitive"},
  "mask_format": {"enum": ["rle", "png", None], "default": "rle",
                  "description": "Encoding of the union and instance masks: COCO compressed RLE, or a PNG data URI. "
                                 "RLE is binary (pixels > 127); a feathered mask keeps its soft edge only as PNG. "
                                 "Case-insensitive"},
  "instance_masks": {"type": ["boolean", "null"], "default": True,
                     "description": "false: leave out each instance's mask (boxes, scores and areas only)"},
  "return_mask": {"type": ["boolean", "null"], "description": "Accepted (type-checked) and ignored: see output"},
  "base64": {"type": ["boolean", "null"], "description": "Accepted (type-checked) and ignored: the answer is JSON"},
}
native_req = {"type": "object", "required": ["image"], "properties": native_props,
              "anyOf": [{"required": ["prompt"]}, {"required": ["phrases"]}],
              "description": "The compatible fields (return_mask and base64 are accepted and ignored) plus the "
                             "extensions. null means absent; unknown fields are ignored"}
compat_req = {"type": "object", "required": ["prompt", "image"], "properties": base_props,
              "description": "The hosted API's fields. null means absent; unknown fields are ignored"}


def multipart(props: dict, required: list[str]) -> dict:
    p = {k: v for k, v in props.items() if k != "image"}
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
  "label": {"type": "string", "description": "What the detector called it (a class name for closed-set packs)"},
  "score": {"type": "number", "minimum": 0, "maximum": 1},
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
                "description": "Phrases the detector cannot look for (closed-set packs)"},
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
  "image_content_type": {"enum": ["image/png", "image/jpeg"], "description": "The output image's type"}},
               "dependentRequired": {"output": ["image", "image_content_type"], "image": ["output", "image_content_type"]}}
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

doc = {
 "openapi": "3.1.0",
 "info": {"title": "maskmaker", "version": "0.1.0", "license": {"name": "MIT", "identifier": "MIT"},
          "description": "Image + text prompt -> inpainting mask. `/v1/inpaint-mask-maker` is a drop-in replacement "
                         "for the hosted Inpaint Mask Maker API; `/v1/masks` is the native API with per-instance "
                         "results. Every error is JSON `{\"error\": message}`; an unknown path is a 404 "
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
               "RLE": rle, "Instance": instance, "CompatibleRequest": compat_req, "NativeRequest": native_req,
               "CompatibleBase64Response": compat_b64, "NativeResponse": native_resp}},
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

path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1] / "web" / "openapi.json"
path.write_text(json.dumps(doc, indent=1) + "\n")
