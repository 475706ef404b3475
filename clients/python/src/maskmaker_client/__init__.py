"""Python client for `maskmaker serve`: image + text prompt -> inpainting mask, with per-instance results.

    from maskmaker_client import Client
    client = Client("http://127.0.0.1:8080")
    result = client.masks("photo.jpg", ["dog", "horse"], confidence_thresh=0.3, grow_mask=0)
    for inst in result.instances:
        print(inst.phrase, inst.score, inst.box, inst.area, inst.mask.shape)

For inpainting models: ask for a crop (`crop={"multiple_of": 64, "target_size": 1024}`), inpaint
`result.crop.image` with `result.crop.mask`, then `stitch(original, result.crop, inpainted)`.
"""
from . import rle
from .client import (AuthenticationError, BadRequestError, Box, Client, ConnectionFailedError, Crop, ImageInput,
                     Instance,
                     MaskmakerError, MasksResult, NoCreditsError, PayloadTooLargeError, PermissionDeniedError,
                     RateLimitError, ServerTimeoutError, ServiceUnavailableError, UpstreamError)
from .inpaint import stitch

__version__ = "0.1.0"

__all__ = ["AuthenticationError", "BadRequestError", "Box", "Client", "ConnectionFailedError", "Crop", "ImageInput",
           "Instance", "MaskmakerError", "MasksResult", "NoCreditsError", "PayloadTooLargeError",
           "PermissionDeniedError", "RateLimitError", "ServerTimeoutError", "ServiceUnavailableError",
           "UpstreamError", "rle", "stitch"]
