#!/usr/bin/env python3
"""Writes web/openapi.json (served at /openapi.json, compiled into the binary). Edit here, then run it."""
import json
err = {"$ref": "#/components/schemas/Error"}
def error_resp(desc, headers=None):
    r = {"description": desc, "content": {"application/json": {"schema": err}}}
    if headers: r["headers"] = headers
    return r
retry = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying"}}
common_errors = {
  "400": error_resp("Malformed JSON; a missing, mistyped or out-of-range field (the message names it); an image that does not decode, is of an unsupported format or over the pixel limit; an image URL that is not http(s) or resolves to a forbidden address"),
  "401": error_resp("Missing or unknown x-api-key (when keys are configured)"),
  "403": error_resp("The key is disabled, or not allowed this endpoint"),
  "406": error_resp("The key's credits are used up"),
  "413": error_resp("Request body or fetched image over the size limit"),
  "415": error_resp("Content-Type is not application/json or multipart/form-data"),
  "429": error_resp("The key's rate limit is exceeded", retry),
  "500": error_resp("Unexpected internal error (logged with the request id; the message does not leak internals)"),
  "502": error_resp("The image URL could not be fetched (DNS, connection, non-2xx answer)"),
  "503": error_resp("Models are loading or the queue is full", retry),
  "504": error_resp("Fetching the image URL, or waiting for a worker, exceeded its deadline"),
}
mask_headers = {
  "X-Detections": {"schema": {"type": "integer"}, "description": "Instances kept"},
  "X-Inference-Time-Ms": {"schema": {"type": "string"}, "description": "Decode + detect + segment + post-processing, ms"},
  "X-Unmatched-Phrases": {"schema": {"type": "string"}, "description": "Comma-separated phrases the detector cannot look for (only when there are some)"},
  "X-Request-Id": {"schema": {"type": "string"}},
  "x-credits-consumed": {"schema": {"type": "string"}, "description": "1, when keys are configured"},
  "x-remaining-credits": {"schema": {"type": "string"}, "description": "Credits left (or 'unlimited'), when keys are configured"},
}
base_props = {
  "prompt": {"type": "string", "minLength": 1, "description": "What to find: phrases separated by commas", "examples": ["white horse", "dog, bicycle"]},
  "image": {"type": "string", "description": "An http(s) URL, a data:image/...;base64, URI, or bare base64"},
  "invert_mask": {"type": ["boolean", "null"], "default": False},
  "confidence_thresh": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "default": 0.5},
  "iou_thresh": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "default": 0.2},
  "return_mask": {"type": ["boolean", "null"], "default": False},
  "grow_mask": {"type": ["integer", "null"], "minimum": 0, "maximum": 100, "default": 10},
  "base64": {"type": ["boolean", "null"], "default": False},
}
native_props = dict(base_props)
native_props.update({
  "grow_mask": {"type": ["integer", "null"], "minimum": -100, "maximum": 100, "default": 10, "description": "Negative values erode"},
  "phrases": {"type": ["array", "string", "null"], "items": {"type": "string"}, "description": "Instead of prompt: a list of phrases"},
  "negative_prompt": {"type": ["array", "string", "null"], "items": {"type": "string"}, "description": "Phrases whose instances are subtracted from the mask"},
  "feather": {"type": ["integer", "null"], "minimum": 0, "maximum": 100, "default": 0, "description": "Width in px of a soft, linear edge outside the mask"},
  "output": {"type": ["string", "null"], "enum": ["mask", "annotated", "cutout", "none", None], "default": "mask"},
  "mask_format": {"type": ["string", "null"], "enum": ["rle", "png", None], "default": "rle"},
  "instance_masks": {"type": ["boolean", "null"], "default": True},
  "max_detections": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000, "default": 100},
})
native_req = {"type": "object", "required": ["image"], "properties": native_props}
compat_req = {"type": "object", "required": ["prompt", "image"], "properties": base_props}
def multipart(props):
    p = {k: v for k, v in props.items() if k != "image"}
    p["image"] = {"type": "string", "format": "binary", "description": "The image file (or a URL / base64 text field)"}
    return {"type": "object", "required": ["image"], "properties": p}
rle = {"type": "object", "required": ["size", "counts"], "properties": {
  "size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2, "description": "[height, width]"},
  "counts": {"type": "string", "description": "COCO compressed RLE (column-major), as pycocotools writes it"}}}
mask_enc = {"oneOf": [{"$ref": "#/components/schemas/RLE"}, {"type": "string", "pattern": "^data:image/png;base64,"}]}
instance = {"type": "object", "required": ["phrase", "label", "score", "box", "area"], "properties": {
  "phrase": {"type": "string"}, "label": {"type": "string"}, "score": {"type": "number"},
  "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4, "description": "[x1, y1, x2, y2] in original pixels"},
  "area": {"type": "integer"}, "mask": mask_enc}}
native_resp = {"type": "object", "required": ["status", "width", "height", "phrases", "unmatched", "detections", "instances", "negative_instances", "mask", "timings_ms", "infer_time_ms"], "properties": {
  "status": {"const": "Success"}, "width": {"type": "integer"}, "height": {"type": "integer"},
  "phrases": {"type": "array", "items": {"type": "string"}}, "unmatched": {"type": "array", "items": {"type": "string"}},
  "detections": {"type": "integer"}, "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}},
  "negative_instances": {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}},
  "mask": mask_enc, "image_cache_hit": {"type": "boolean"},
  "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}},
  "infer_time_ms": {"type": "number"},
  "output": {"type": "string"}, "image": {"type": "string", "description": "Base64 of the output image (no data: prefix)"},
  "image_content_type": {"type": "string"}}}
compat_b64 = {"type": "object", "required": ["image", "status", "detections", "infer_time_ms"], "properties": {
  "image": {"type": "string", "description": "Bare base64, no data: prefix"}, "status": {"const": "Success"},
  "detections": {"type": "integer"}, "infer_time_ms": {"type": "number"},
  "unmatched": {"type": "array", "items": {"type": "string"}}}}
doc = {
 "openapi": "3.1.0",
 "info": {"title": "maskmaker", "version": "0.1.0", "license": {"name": "MIT", "identifier": "MIT"},
          "description": "Image + text prompt -> inpainting mask. /v1/inpaint-mask-maker is a drop-in replacement for the hosted Inpaint Mask Maker API; /v1/masks is the native API with per-instance results."},
 "components": {
   "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
   "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
               "RLE": rle, "Instance": instance, "CompatibleRequest": compat_req, "NativeRequest": native_req,
               "CompatibleBase64Response": compat_b64, "NativeResponse": native_resp}},
 "security": [{}, {"apiKey": []}],
 "paths": {
  "/v1/inpaint-mask-maker": {"post": {
    "summary": "The hosted API's endpoint: the mask (PNG) or the annotated image",
    "operationId": "inpaintMaskMaker",
    "requestBody": {"required": True, "content": {
       "application/json": {"schema": {"$ref": "#/components/schemas/CompatibleRequest"}},
       "multipart/form-data": {"schema": multipart(base_props)}}},
    "responses": {"200": {"description": "return_mask: the mask, 8-bit grayscale PNG (255 = inpaint); else the annotated image (JPEG for JPEG input, PNG otherwise); base64: JSON",
        "headers": mask_headers,
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/CompatibleBase64Response"}}}},
        **common_errors, "405": error_resp("Wrong method (with Allow)")}}},
  "/v1/masks": {"post": {
    "summary": "Native API: every instance with its box, score and mask, plus the union mask",
    "operationId": "masks",
    "requestBody": {"required": True, "content": {
       "application/json": {"schema": {"$ref": "#/components/schemas/NativeRequest"}},
       "multipart/form-data": {"schema": multipart(native_props)}}},
    "responses": {"200": {"description": "Per-instance results", "headers": mask_headers,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NativeResponse"}}}},
        **common_errors, "405": error_resp("Wrong method (with Allow)")}}},
  "/healthz": {"get": {"summary": "Process alive", "security": [{}], "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object", "properties": {"status": {"const": "ok"}}}}}}}}},
  "/readyz": {"get": {"summary": "Models loaded", "security": [{}], "responses": {
      "200": {"description": "ready", "content": {"application/json": {"schema": {"type": "object", "properties": {"status": {"const": "ready"}, "pack": {"type": "string"}}}}}},
      "503": error_resp("Models are loading (or failed to load)", retry)}}},
  "/metrics": {"get": {"summary": "Prometheus metrics", "security": [{}], "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
  "/openapi.json": {"get": {"summary": "This document", "security": [{}], "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
  "/": {"get": {"summary": "The web page", "security": [{}], "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
 }}
import pathlib
json.dump(doc, open(pathlib.Path(__file__).resolve().parents[1] / "web" / "openapi.json", "w"), indent=1)
