#!/usr/bin/env python3
"""compare_rows.py MANIFEST BASE_DIR NEW_DIR [--top N]

Per-row IoU of two folders of predicted masks (as `maskmaker bench accuracy --out DIR` writes them, or a
reference pipeline's), scored as ../shared/data/score.py scores them. Prints the rows that changed most,
then mIoU by size of object (mean instance area in the ground truth: small < 32², medium < 96², large) and by
class, for both folders: a change should help without hurting any of these groups.
Needs Debian's python3-numpy and python3-pil."""
import argparse
import json
import os

import numpy as np
from PIL import Image


def iou_of(gt, pred_path):
    if not os.path.exists(pred_path):
        p = np.zeros_like(gt)
    else:
        p = np.array(Image.open(pred_path).convert("L")) > 127
    if p.shape != gt.shape:
        return 0.0, 0
    u = (gt | p).sum()
    return (1.0 if u == 0 else float((gt & p).sum() / u)), int(p.sum())


def size_class(row):
    if row.get("area", 0) == 0:
        return "negative"
    per = row["area"] / max(1, row.get("n_instances", 1))
    return "small" if per < 32 * 32 else "medium" if per < 96 * 96 else "large"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("base")
    ap.add_argument("new")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    root = os.path.dirname(os.path.abspath(a.manifest))
    rows = []
    for line in open(a.manifest):
        if not line.strip():
            continue
        r = json.loads(line)
        gt = np.array(Image.open(os.path.join(root, r["mask"]))) > 127
        name = os.path.basename(r["mask"])
        ib, ab = iou_of(gt, os.path.join(a.base, name))
        inew, anew = iou_of(gt, os.path.join(a.new, name))
        rows.append(dict(r, base=ib, new=inew, size=size_class(r), area_base=ab, area_new=anew))

    changed = sorted((r for r in rows if abs(r["new"] - r["base"]) > 1e-4), key=lambda r: r["new"] - r["base"])
    print(f"{len(changed)} rows changed; worst {a.top} and best {a.top} (IoU base -> new, size, n_instances, gt area, pred areas)")
    show = changed[: a.top] + [None] + changed[-a.top:] if len(changed) > 2 * a.top else changed
    for r in show:
        if r is None:
            print("  ...")
            continue
        print(f"  {r['new'] - r['base']:+.3f}  {r['base']:.3f} -> {r['new']:.3f}  {r['size']:8s} n={r.get('n_instances', 0):<2d} "
              f"gt={r.get('area', 0):<7d} pred {r['area_base']}->{r['area_new']}  {os.path.basename(r['image'])} '{r['prompt']}'")

    def table(key, rows):
        groups = {}
        for r in rows:
            groups.setdefault(key(r), []).append(r)
        for g in sorted(groups):
            v = groups[g]
            b = np.mean([r["base"] for r in v])
            n = np.mean([r["new"] for r in v])
            flag = "  worse" if n < b - 1e-4 else "  better" if n > b + 1e-4 else ""
            print(f"  {g:20s} {len(v):4d}  {b:.4f} -> {n:.4f}{flag}")

    pos = [r for r in rows if r["size"] != "negative"]
    neg = [r for r in rows if r["size"] == "negative"]
    print(f"rows with objects: {len(pos)}  mIoU {np.mean([r['base'] for r in pos]):.4f} -> {np.mean([r['new'] for r in pos]):.4f}")
    if neg:
        print(f"negatives empty:   {len(neg)}  {np.mean([r['base'] for r in neg]):.4f} -> {np.mean([r['new'] for r in neg]):.4f}")
    print("by size:")
    table(lambda r: r["size"], rows)
    print("by class (rows with objects, as `bench accuracy` prints them):")
    table(lambda r: r["prompt"], pos)


if __name__ == "__main__":
    main()
