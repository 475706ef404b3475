#!/usr/bin/env python3
"""Copies a model pack into one self-contained folder, for a container image or a volume.

    deploy/bake-pack.py models/default /opt/models/default

Every file the pack's pack.json points at (each "path", and a text encoder's "vocab" when it is a path) is copied
into the new folder and pack.json is rewritten to name it by its file name; checksums are kept, so maskmaker still
verifies the files when it loads them.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def bake(src: Path, dst: Path) -> list[str]:
    pack = json.loads((src / "pack.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    taken: dict[str, Path] = {}

    def place(value: str) -> str:
        path = Path(value) if Path(value).is_absolute() else (src / value)
        path = path.resolve()
        if not path.is_file():
            raise SystemExit(f"bake-pack: {src}/pack.json names {value}, which is not a file ({path})")
        name = path.name
        while name in taken and taken[name] != path:
            name = "x" + name
        if name not in taken:
            taken[name] = path
            shutil.copyfile(path, dst / name)
        return name

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("path", "vocab") and isinstance(value, str):
                    node[key] = place(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(pack)
    (dst / "pack.json").write_text(json.dumps(pack, indent=2) + "\n")
    return sorted(taken)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    files = bake(Path(argv[1]), Path(argv[2]))
    print(f"bake-pack: {argv[2]}: pack.json + {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
