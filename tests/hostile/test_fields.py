"""Family "fields": every field missing, null, of every wrong type, out of range; odd prompts; unknown fields.
JSON has no NaN or Infinity: bodies spelling them are not JSON (400 "not valid JSON")."""
import json

import pytest

from .common import COMPAT, NATIVE, Case, b64, check, health, sample_bytes

FAMILY = "fields"
IMAGE = b64(sample_bytes("hopper.jpg"))
BASE = {"prompt": "person", "image": IMAGE, "return_mask": True}

BOOLEANS = ["invert_mask", "return_mask", "base64"]
UNITS = ["confidence_thresh", "iou_thresh"]
# name -> (accepted range on the compatible endpoint, on the native one)
INTEGERS = {"grow_mask": ((0, 100), (-100, 100))}
NATIVE_INTEGERS = {"feather": (0, 100), "max_detections": (0, 1000)}

WRONG_TYPES = {
    "string": "0.5", "empty string": "", "true": True, "false": False, "integer": 1, "float": 0.5,
    "array": [1], "empty array": [], "object": {"value": 1}, "empty object": {},
}


def raw_with(field, literal, base=BASE):
    """The body text with `field` set to a literal that json.dumps would not write (NaN, 1e400, ...)."""
    text = json.dumps(base)
    return (text[:-1] + f', "{field}": {literal}' + "}").encode()


def cases():
    c = []

    def add(name, expect, body=None, raw=None, field=None, path=COMPAT):
        c.append(Case(FAMILY, name, expect, body=body, raw=raw, field=field, path=path))

    def kind_of(v):
        return "bool" if isinstance(v, bool) else type(v).__name__

    # Required fields: missing, null, wrong types.
    for path in (COMPAT, NATIVE):
        tag = "" if path == COMPAT else " (native)"
        for name in ("prompt", "image"):
            add(f"{name} missing{tag}", 400, {k: v for k, v in BASE.items() if k != name}, field=name, path=path)
            add(f"{name} null{tag}", 400, {**BASE, name: None}, field=name, path=path)
            for label, value in WRONG_TYPES.items():
                if isinstance(value, str):
                    continue  # a string is the right type
                add(f"{name} {label}{tag}", 400, {**BASE, name: value}, field=name, path=path)
        add(f"image empty string{tag}", 400, {**BASE, "image": ""}, field="image", path=path)
        add(f"image whitespace only{tag}", 400, {**BASE, "image": "  \n "}, field="image", path=path)

    # Optional booleans: null = not given (the default), anything but true/false is a 400 naming the field.
    for name in BOOLEANS:
        add(f"{name} null -> default", 200, {**BASE, name: None})
        for label, value in WRONG_TYPES.items():
            if isinstance(value, bool):
                continue
            add(f"{name} {label}", 400, {**BASE, name: value}, field=name)
        add(f"{name} string 'true'", 400, {**BASE, name: "true"}, field=name)
        add(f"{name} 1 (native)", 400, {**BASE, name: 1}, field=name, path=NATIVE)

    # Numbers in 0..1.
    for name in UNITS:
        add(f"{name} null -> default", 200, {**BASE, name: None})
        for label, value in WRONG_TYPES.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                continue
            add(f"{name} {label}", 400, {**BASE, name: value}, field=name)
        for value in (-0.0001, -1, 1.0001, 2, 100, 101, 1e308, -1e308, 2**53 + 1, 2**63, 2**64, 2**64 + 1, -(2**63),
                      10**30):
            add(f"{name} {value!r}", 400, {**BASE, name: value}, field=name)
        for value in (0, 0.0, 1, 1.0, 0.5, 1e-300, -0.0):
            add(f"{name} {value!r} (in range)", 200, {**BASE, name: value})
        add(f"{name} -1 (native)", 400, {**BASE, name: -1}, field=name, path=NATIVE)
        for literal in ("NaN", "Infinity", "-Infinity", "nan", "inf", "1e400", "-1e400", "0x1", ".5", "+0.5",
                        "01", "1.", "--1"):
            add(f"{name} literal {literal}", 400, raw=raw_with(name, literal))

    # Integers.
    for name, ((lo, hi), (nlo, nhi)) in INTEGERS.items():
        add(f"{name} null -> default", 200, {**BASE, name: None})
        for label, value in WRONG_TYPES.items():
            if isinstance(value, int) and not isinstance(value, bool):
                continue
            if label == "float":
                continue  # 0.5 is checked below as a non-integer number
            add(f"{name} {label}", 400, {**BASE, name: value}, field=name)
        for value in (lo - 1, hi + 1, -100, 1000, 10.5, 0.5, 1e308, -1e308, 2**31, 2**32 + 5, 2**63, 2**64,
                      -(2**63), -(2**63) - 1, 10**40):
            add(f"{name} {value!r}", 400, {**BASE, name: value}, field=name)
        for value in (lo, hi, 10, 10.0):
            add(f"{name} {value!r} (in range)", 200, {**BASE, name: value})
        add(f"{name} {nlo - 1} (native)", 400, {**BASE, name: nlo - 1}, field=name, path=NATIVE)
        add(f"{name} {nhi + 1} (native)", 400, {**BASE, name: nhi + 1}, field=name, path=NATIVE)
        add(f"{name} -5 (native: erosion)", 200, {**BASE, name: -5}, path=NATIVE)
        for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
            add(f"{name} literal {literal}", 400, raw=raw_with(name, literal))
    for name, (lo, hi) in NATIVE_INTEGERS.items():
        for value in (lo - 1, hi + 1, 0.5, "1", True, [1], 2**64):
            add(f"{name} {value!r} (native)", 400, {**BASE, name: value}, field=name, path=NATIVE)
    for name, value in (("output", "video"), ("output", 1), ("mask_format", "jpeg"), ("mask_format", []),
                        ("negative_prompt", 5), ("negative_prompt", [1, 2]), ("phrases", 3), ("phrases", [None]),
                        ("phrases", []), ("phrases", ["", " , "]), ("instance_masks", "yes")):
        add(f"{name} {value!r} (native)", 400, {**BASE, name: value}, field=name, path=NATIVE)

    # Prompts.
    for label, prompt in (("empty", ""), ("spaces", "   "), ("tabs and newlines", "\t\n\r "), ("only commas", ", , ,"),
                          ("comma", ","), ("non-breaking space only", "\u00a0")):
        # NBSP is not ASCII whitespace: it is a phrase of its own, which matches nothing (200, unmatched).
        add(f"prompt {label}", 200 if label.startswith("non-breaking") else 400, {**BASE, "prompt": prompt},
            field=None if label.startswith("non-breaking") else "prompt")
    add("prompt of 100 kB (one phrase)", 400, {**BASE, "prompt": "a" * 100_000}, field="prompt")
    add("prompt of 100 kB (many words, no commas)", 400, {**BASE, "prompt": "horse " * 17_000}, field="prompt")
    add("prompt of 100 kB (native)", 400, {**BASE, "prompt": "zebra" * 20_000}, field="prompt", path=NATIVE)
    add("prompt with 1000 phrases", 400, {**BASE, "prompt": ", ".join(f"thing{i}" for i in range(1000))},
        field="prompt")
    add("prompt with 500 duplicate phrases (merged to one)", 200, {**BASE, "prompt": ",".join(["person"] * 500)})
    add("prompt of 4096 bytes (the longest allowed)", 200, {**BASE, "prompt": "person, " + "z" * 4088})
    add("prompt of 4097 bytes", 400, {**BASE, "prompt": "person, " + "z" * 4089}, field="prompt")
    add("prompt with 64 phrases (the most allowed)", 200, {**BASE, "prompt": ", ".join(f"t{i}" for i in range(64))})
    add("prompt with 65 phrases", 400, {**BASE, "prompt": ", ".join(f"t{i}" for i in range(65))}, field="prompt")
    add("phrases list of 1000 (native)", 400, {**BASE, "phrases": [f"p{i}" for i in range(1000)]}, path=NATIVE,
        field="phrases")
    add("prompt with a NUL character", 200, {**BASE, "prompt": "per\u0000son"})
    add("prompt with control characters", 200, {**BASE, "prompt": "\u0001\u0002dog\u001b[31m, \u007fcat"})
    add("prompt with CR LF (header injection attempt)", 200, {**BASE, "prompt": "zzqx\r\nX-Injected: 1"})
    add("prompt with emoji and RTL text", 200, {**BASE, "prompt": "\U0001F40E, \u05e1\u05d5\u05e1, 马"})
    add("prompt with combining marks only", 200, {**BASE, "prompt": "\u0301\u0301\u0301"})
    add("prompt with a lone surrogate escape", 400, raw=json.dumps(BASE).replace('"person"', '"\\ud800x"').encode())
    add("prompt with a reversed surrogate pair", 400,
        raw=json.dumps(BASE).replace('"person"', '"\\udc00\\ud800"').encode())
    add("prompt with invalid UTF-8 bytes", 400, raw=json.dumps(BASE).encode().replace(b'"person"', b'"pers\xff\xfeon"'))
    add("prompt with an overlong UTF-8 encoding", 400, raw=json.dumps(BASE).encode().replace(b'"person"', b'"\xc0\xafx"'))
    add("prompt with a truncated UTF-8 sequence", 400, raw=json.dumps(BASE).encode().replace(b'"person"', b'"\xe2\x82"'))
    add("prompt with UTF-8-encoded surrogate", 400, raw=json.dumps(BASE).encode().replace(b'"person"', b'"\xed\xa0\x80"'))
    add("prompt with a raw control character (unescaped)", 400,
        raw=json.dumps(BASE).encode().replace(b'"person"', b'"per\x01son"'))
    add("prompt with a bad escape", 400, raw=json.dumps(BASE).replace('"person"', '"per\\qson"').encode())
    # Unknown fields are ignored.
    add("unknown field (string)", 200, {**BASE, "unknown": "x"})
    add("unknown fields of every type", 200, {**BASE, "a": 1, "b": None, "c": [1, {"d": []}], "e": {"f": True},
                                                 "g": 1e308, "h": "x" * 1000})
    add("50 000 unknown fields", 200, {**BASE, **{f"k{i}": i for i in range(50_000)}})
    add("unknown field with an empty key", 200, {**BASE, "": 1})
    add("field names in another case are unknown (Prompt)", 400, {"Prompt": "person", "image": IMAGE}, field="prompt")
    add("the hosted API's documented body, all fields", 200,
        {"prompt": "person", "image": IMAGE, "invert_mask": False, "confidence_thresh": 0.5, "iou_thresh": 0.2,
         "return_mask": False, "grow_mask": 10, "base64": False})
    add("base64 answer", 200, {**BASE, "base64": True})
    return c


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fields(strict, case):
    check(strict, case)


def test_fields_health(strict):
    health(strict, FAMILY)
