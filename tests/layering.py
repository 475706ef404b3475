#!/usr/bin/env python3
"""The layers, lowest first: a file in src/<layer>/ may include headers of its own layer, of layers below it and
the public headers (include/maskmaker/), never of a layer above. The tools (tools/) use the public headers only
(maskmaker.hpp, params.hpp, service.hpp, keys.hpp, server.hpp); only the benchmark and model-pack commands reach
lower (per-stage timing of each model, pack files and checksums), as TOOL_EXCEPTIONS says.
Run by ctest (CMakeLists.txt); exits 1 listing every include that goes the wrong way."""
import pathlib
import re
import sys

LAYERS = ["runtime", "image", "text", "detect", "segment", "pipeline", "service", "server"]
ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOL_EXCEPTIONS = {  # tool file -> lower layers it may include, and why
    "cmd_latency.cpp": {"image", "pipeline", "runtime"},  # bench latency: each model alone, per stage
    "cmd_models.cpp": {"pipeline", "runtime"},            # models fetch/verify: pack files and checksums
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)


def main() -> int:
    wrong = []
    for rank, layer in enumerate(LAYERS):
        for path in sorted((ROOT / "src" / layer).rglob("*")):
            if path.suffix not in (".cpp", ".hpp", ".h"):
                continue
            for target in INCLUDE.findall(path.read_text(errors="replace")):
                if target in LAYERS and LAYERS.index(target) > rank:
                    wrong.append(f"{path.relative_to(ROOT)} includes {target}/ (a layer above {layer}/)")
    for path in sorted((ROOT / "tools").glob("*.[ch]pp")):
        for target in INCLUDE.findall(path.read_text(errors="replace")):
            allowed = TOOL_EXCEPTIONS.get(path.name, set())
            if target in LAYERS and target not in allowed:
                wrong.append(f"{path.relative_to(ROOT)} includes {target}/ (tools use include/maskmaker/ only)")
    print("\n".join(wrong) if wrong else f"layering: {len(LAYERS)} layers and tools/ include only what lies below")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
