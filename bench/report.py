#!/usr/bin/env python3
"""Renders docs/performance.md's figures table from out/bench/*.json (written by scripts/bench.sh)."""
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "out/bench")
doc = ROOT / "docs/performance.md"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


lat = json.loads((out_dir / "latency.json").read_text())
lines = [f"Machine: {cpu_model()}, {os.cpu_count()} cores; pack '{lat['pack']}'; {lat['runs']} runs; "
         f"image {Path(lat['images'][0]).name}; prompt '{lat['prompt']}'; API defaults (confidence 0.5, iou 0.2, grow 10).",
         "", f"Ready after {lat['ready_ms']:.0f} ms; resident memory {lat['rss_loaded_mib']:.0f} MiB loaded, "
         f"{lat['rss_after_mib']:.0f} MiB after the runs.", "",
         "| stage | cold p50 ms | cold p95 ms | warm p50 ms | warm p95 ms |", "|---|---|---|---|---|"]
cold, warm = lat["cold (new image)"], lat["warm (same image, another prompt)"]
for stage in ["decode", "detect", "encode", "segment", "post", "output", "total"]:
    lines.append(f"| {stage} | {cold[stage]['p50']:.1f} | {cold[stage]['p95']:.1f} | {warm[stage]['p50']:.1f} | "
                 f"{warm[stage]['p95']:.1f} |")
for title, series in (("cold", cold), ("warm", warm)):
    if series.get("boxes"):
        lines.append(f"{'' if title == 'warm' else chr(10)}{title.capitalize()} runs segment {series['boxes']:.0f} box(es): "
                     f"{series['segment_per_box_ms']:.1f} ms per box.")
if "raw_models" in lat:
    lines += ["", "| model alone | p50 ms | p95 ms |", "|---|---|---|"]
    for name, v in lat["raw_models"].items():
        lines.append(f"| {name} | {v['p50']:.1f} | {v['p95']:.1f} |")
    lines += ["", f"End-to-end cold p50 ÷ sum of the raw model p50s: **{lat['overhead_ratio']:.2f}**."]
dev_file = out_dir / "devset.json"
if dev_file.exists():
    dev = json.loads(dev_file.read_text())
    t = dev.get("timing", {})
    if "new image" in t:
        lines += ["", f"Dev set (`bench accuracy`, {dev['rows']} rows on 60 photos, conf {dev['confidence_thresh']:.2f}, "
                  f"iou {dev['iou_thresh']:.2f}): mIoU {dev['miou_positive']:.3f}, negatives empty "
                  f"{100 * dev['negatives_empty']:.0f} %, {dev['seconds']:.0f} s in all. Pipeline time per row, a photo's "
                  f"first row (new image): p50 {t['new image']['p50_ms']:.0f} ms, p95 {t['new image']['p95_ms']:.0f} ms; "
                  f"its later rows (another prompt): p50 {t['seen image']['p50_ms']:.0f} ms, "
                  f"p95 {t['seen image']['p95_ms']:.0f} ms."]
    for extra in dev.get("manifests", [])[1:]:
        name = Path(extra["manifest"]).name
        te = extra.get("timing", {}).get("new image")
        lines += ["", f"`{name}` ({extra['rows']} rows, same run): "
                  + (f"mIoU {extra['miou_positive']:.3f}" if extra.get("positive_rows") else "no rows with a mask")
                  + (f", negatives empty {100 * extra['negatives_empty']:.0f} %" if extra.get("negative_rows") else "")
                  + (f"; a photo's first row p50 {te['p50_ms']:.0f} ms" if te else "") + "."]
load_file = out_dir / "load.json"
if load_file.exists():
    load = json.loads(load_file.read_text())
    lines += ["", f"HTTP load (bench/load.py, {'same image' if load['same_image'] else 'a new image each request'}, "
              f"prompt '{load['prompt']}', return_mask):", "",
              "| concurrency | requests | throughput req/s | p50 ms | p95 ms | max ms | statuses |", "|---|---|---|---|---|---|---|"]
    for r in load["levels"]:
        lines.append(f"| {r['concurrency']} | {r['requests']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['max_ms']} | {r['statuses']} |")
table = "\n".join(lines)
text = doc.read_text()
start, end = "<!-- figures:start -->", "<!-- figures:end -->"
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
doc.write_text(head + start + "\n" + table + "\n" + end + tail)
print(f"updated {doc}")
