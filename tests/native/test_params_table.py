"""One parameter table (include/maskmaker/params.hpp) drives the parsing, the CLI flags and the OpenAPI document:
`maskmaker params` prints it, and this checks that the served /openapi.json and `maskmaker run --help` say what
the table says (names, types, ranges, defaults, descriptions), and that the server applies its ranges."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

import native_support as ns

SCHEMAS = {"compatible": "CompatibleRequest", "native": "NativeRequest", "jobs": "JobRequest"}
# `maskmaker run` declares these three itself (a required --prompt,-p; --output with annotated as its default).
RUN_OWN_FLAGS = {"prompt", "return_mask", "output"}


@pytest.fixture(scope="module")
def table() -> dict:
    out = subprocess.run([str(ns.BIN), "params"], check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def run_help() -> str:
    return subprocess.run([str(ns.BIN), "run", "--help"], capture_output=True, text=True, timeout=60).stdout


def test_table_lists_every_request_parameter(table):
    names = [row["name"] for row in table["parameters"]]
    assert len(names) == len(set(names))
    for expected in ("prompt", "image", "confidence_thresh", "iou_thresh", "grow_mask", "invert_mask", "return_mask",
                     "base64", "negative_prompt", "feather", "max_detections", "output", "mask_format", "crop",
                     "webhook_url"):
        assert expected in names


@pytest.mark.parametrize("api", ["compatible", "native", "jobs"])
def test_served_document_says_what_the_table_says(srv, table, api):
    props = srv.get("/openapi.json").json()["components"]["schemas"][SCHEMAS[api]]["properties"]
    rows = [row for row in table["parameters"] if api in row["apis"]]
    assert rows
    for row in rows:
        name = row["name"]
        assert name in props, f"{name} is in the table for {api} but not in the document"
        schema = props[name]
        assert schema["description"].startswith(row["help"]), name
        if row["type"] in ("number", "integer"):
            low = row["compatible_minimum"] if api != "native" else row["minimum"]
            assert (schema["minimum"], schema["maximum"]) == (low, row["maximum"]), name
            assert row["type"] in schema["type"], name
        if "default" in row:
            assert schema["default"] == row["default"], name
        if row["type"] == "choice":
            assert [c for c in schema["enum"] if c is not None] == row["choices"], name
    table_names = {row["name"] for row in rows}
    assert not set(props) - table_names, f"documented for {api} but not in the table: {set(props) - table_names}"


def test_run_help_says_what_the_table_says(table, run_help):
    flat = re.sub(r"\s+", " ", run_help)
    for row in table["parameters"]:
        if "cli" not in row["apis"] or row["type"] == "object" or row["name"] in RUN_OWN_FLAGS:
            continue
        flag = row["cli_flag"]
        assert flag == "--" + row["name"].replace("_", "-")
        assert flag in run_help, f"{flag} missing from maskmaker run --help"
        assert row["help"] in flat, f"{flag}: its help is not the table's"
        if row["type"] in ("number", "integer"):
            # CLI11 shows the range check and the default: "--grow-mask INT:INT in [-100 - 100]=10"
            shown = re.search(re.escape(flag) + r" \S+ in \[(\S+) - (\S+)\]=(\S+)", flat)
            assert shown, flag
            assert [float(v) for v in shown.groups()] == [row["minimum"], row["maximum"], row["default"]], flag


@pytest.mark.parametrize("flag,value", [("--confidence-thresh", "1.5"), ("--grow-mask", "101"),
                                        ("--max-detections", "-1"), ("--output", "jpeg")])
def test_run_refuses_what_the_table_refuses(flag, value, tmp_path):
    r = subprocess.run([str(ns.BIN), "run", "-p", "dog", flag, value, "--out", str(tmp_path), "x.jpg"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr


@pytest.mark.parametrize("api", ["compatible", "native"])
def test_server_refuses_past_the_table_range(srv, table, photo_png, api):
    path = ns.COMPAT if api == "compatible" else ns.NATIVE
    base = {"prompt": "dog", "image": ns.b64(photo_png)}
    for row in table["parameters"]:
        if api not in row["apis"] or row["type"] not in ("number", "integer"):
            continue
        low = row["compatible_minimum"] if api == "compatible" else row["minimum"]
        for bad in (low - 1, row["maximum"] + 1):
            r = srv.post({**base, row["name"]: bad}, path=path)
            assert r.status_code == 400, (row["name"], bad, r.text)
            kind = "a number" if row["type"] == "number" else "an integer"
            assert r.json()["error"] == f"{row['name']} must be {kind} between {low} and {row['maximum']}"
