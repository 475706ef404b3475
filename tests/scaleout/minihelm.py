"""A tiny renderer for the subset of Helm's Go templates that deploy/helm/maskmaker uses, so that the chart can be
rendered and checked where `helm` is not installed.

Supported: text with {{ }} actions and the {{- / -}} whitespace trimming; comments {{/* */}}; define / include;
if / else / end; fields (.Values.x.y, .Release.Name, .Chart.Name, .Chart.Version, .Chart.AppVersion, .), string
and number literals, parentheses, pipelines, and the functions include, toYaml, nindent, indent, quote, default,
printf (%s %d %v), trunc, trimSuffix, not, and, or. Anything else raises, so the chart cannot drift out of the
subset unnoticed. Values behave as in Helm: numbers from values files are float64 there, so they print like Go's
%v of a float64 (1000000 -> 1e+06); the chart quotes large numbers for that reason.
"""
from __future__ import annotations

import copy
import re
from decimal import Decimal
from pathlib import Path

import yaml

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


class TemplateError(Exception):
    pass


# ------------------------------------------------------------------------------------------------ values

def go_number(x) -> str:
    """fmt.Sprint of a float64, as Go prints it: strconv's shortest 'g', which switches to the %e form when the
    decimal exponent is < -4 or >= 6 (1000000 -> 1e+06, 33554432 -> 3.3554432e+07, 8080 -> 8080)."""
    f = float(x)
    if f == 0:
        return "0"
    d = Decimal(repr(f)).normalize()
    sign, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits))
    e10 = len(ds) + exp - 1
    prefix = "-" if sign else ""
    if e10 < -4 or e10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{prefix}{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    return prefix + format(abs(d), "f")


def go_str(v) -> str:
    if v is None:
        return ""  # Helm turns "<no value>" into ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return go_number(v)
    if isinstance(v, (dict, list)):
        raise TemplateError(f"printing a {type(v).__name__} directly (use toYaml): {v!r}")
    return str(v)


def truthy(v) -> bool:
    return bool(v)


def to_yaml(v) -> str:
    if v is None:
        return "null"
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n")


def indent(n, s) -> str:
    pad = " " * int(n)
    return "\n".join(pad + line for line in go_str(s).split("\n"))


def printf(fmt, *args) -> str:
    it = iter(args)

    def sub(m):
        if m.group(0) == "%%":
            return "%"
        return go_str(next(it))

    return re.sub(r"%%|%[sdv]", sub, fmt)


FUNCTIONS = {
    "toYaml": to_yaml,
    "nindent": lambda n, s: "\n" + indent(n, s),
    "indent": indent,
    "quote": lambda *v: " ".join('"' + go_str(x).replace("\\", "\\\\").replace('"', '\\"') + '"' for x in v),
    "default": lambda d, v=None: v if truthy(v) else d,
    "printf": printf,
    "trunc": lambda n, s: go_str(s)[: int(n)],
    "trimSuffix": lambda suffix, s: go_str(s)[: -len(suffix)] if suffix and go_str(s).endswith(suffix) else go_str(s),
    "not": lambda v: not truthy(v),
    "and": lambda *v: next((x for x in v if not truthy(x)), v[-1]),
    "or": lambda *v: next((x for x in v if truthy(x)), v[-1]),
}


# ------------------------------------------------------------------------------------------------ parsing

TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)|(?P<sym>[|()])|'
                   r'(?P<field>(?:\$|\.)[A-Za-z0-9_.]*)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))')


def tokenize(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot parse {expr[pos:]!r} in {{{{ {expr} }}}}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return out


class Pipeline:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens, self.pos = tokens, 0
        self.commands = self.parse_pipeline()
        if self.pos != len(self.tokens):
            raise TemplateError(f"unexpected {self.tokens[self.pos]}")

    def parse_pipeline(self):
        commands = [self.parse_command()]
        while self.pos < len(self.tokens) and self.tokens[self.pos] == ("sym", "|"):
            self.pos += 1
            commands.append(self.parse_command())
        return commands

    def parse_command(self):
        operands = []
        while self.pos < len(self.tokens) and self.tokens[self.pos] not in (("sym", "|"), ("sym", ")")):
            kind, text = self.tokens[self.pos]
            self.pos += 1
            if (kind, text) == ("sym", "("):
                inner = self.parse_pipeline()
                if self.pos >= len(self.tokens) or self.tokens[self.pos] != ("sym", ")"):
                    raise TemplateError("missing )")
                self.pos += 1
                operands.append(("pipe", inner))
            else:
                if kind == "ident" and text not in FUNCTIONS and text != "include":
                    raise TemplateError(f"function {text!r} is not in minihelm's subset")
                operands.append((kind, text))
        if not operands:
            raise TemplateError("empty command")
        return operands


def parse(text: str):
    """Returns (nodes, defines). Nodes: ("text", s) | ("action", Pipeline) | ("if", Pipeline, then, else)."""
    tokens = []
    pos = 0
    for m in ACTION.finditer(text):
        tokens.append(["text", text[pos:m.start()]])
        tokens.append(["action", m.group(2).strip(), bool(m.group(1)), bool(m.group(3))])
        pos = m.end()
    tokens.append(["text", text[pos:]])
    for i, t in enumerate(tokens):
        if t[0] != "action":
            continue
        if t[2] and i > 0:
            tokens[i - 1][1] = tokens[i - 1][1].rstrip()
        if t[3] and i + 1 < len(tokens):
            tokens[i + 1][1] = tokens[i + 1][1].lstrip()
    defines: dict[str, list] = {}
    it = iter(tokens)

    def block(stop: tuple[str, ...]):
        nodes = []
        for t in it:
            if t[0] == "text":
                if t[1]:
                    nodes.append(("text", t[1]))
                continue
            body = t[1]
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    raise TemplateError(f"bad comment {body!r}")
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in stop:
                return nodes, word
            if word == "if":
                cond = Pipeline(tokenize(body[2:]))
                then, end = block(("else", "end"))
                other = []
                if end == "else":
                    other, end = block(("end",))
                nodes.append(("if", cond, then, other))
            elif word == "define":
                name = re.fullmatch(r'define\s+"([^"]+)"', body)
                if not name:
                    raise TemplateError(f"bad define {body!r}")
                inner, _ = block(("end",))
                defines[name.group(1)] = inner
            elif word in ("range", "with", "template", "block", "else", "end"):
                raise TemplateError(f"{{{{ {body} }}}}: not in minihelm's subset")
            else:
                nodes.append(("action", Pipeline(tokenize(body))))
        if stop:
            raise TemplateError(f"missing {{{{ end }}}} (expected one of {stop})")
        return nodes, None

    nodes, _ = block(())
    return nodes, defines


# ------------------------------------------------------------------------------------------------ rendering

class Renderer:
    def __init__(self, defines: dict[str, list]):
        self.defines = defines

    def field(self, path: str, dot, root):
        base = root if path.startswith("$") else dot
        parts = [p for p in path.lstrip("$").split(".") if p]
        v = base
        for p in parts:
            if isinstance(v, dict):
                v = v.get(p)
            else:
                return None
        return v

    def operand(self, op, dot, root):
        kind, text = op
        if kind == "str":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "field":
            return self.field(text, dot, root)
        if kind == "pipe":
            return self.pipeline(text, dot, root)
        raise TemplateError(f"a function name {text!r} used as a value")

    def command(self, cmd, dot, root, piped=None, has_piped=False):
        head = cmd[0]
        if head[0] == "ident":
            args = [self.operand(o, dot, root) for o in cmd[1:]]
            if has_piped:
                args.append(piped)
            if head[1] == "include":
                name, ctx = args
                if name not in self.defines:
                    raise TemplateError(f"include of undefined template {name!r}")
                return self.render(self.defines[name], ctx, root)
            return FUNCTIONS[head[1]](*args)
        if len(cmd) != 1 or has_piped:
            raise TemplateError(f"cannot call a value: {cmd}")
        return self.operand(head, dot, root)

    def pipeline(self, commands, dot, root):
        value = self.command(commands[0], dot, root)
        for c in commands[1:]:
            value = self.command(c, dot, root, value, True)
        return value

    def render(self, nodes, dot, root=None) -> str:
        root = dot if root is None else root
        out = []
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "action":
                out.append(go_str(self.pipeline(n[1].commands, dot, root)))
            else:
                _, cond, then, other = n
                out.append(self.render(then if truthy(self.pipeline(cond.commands, dot, root)) else other, dot, root))
        return "".join(out)


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def render_chart(chart_dir: Path, values: dict | None = None, release: str = "test") -> dict[str, str]:
    """Renders every template (not the _*.tpl partials, not NOTES.txt): {file name: text}."""
    chart_dir = Path(chart_dir)
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    vals = merge(yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}, values or {})
    ctx = {
        "Values": vals,
        "Release": {"Name": release, "Namespace": "default", "Service": "Helm", "IsInstall": True},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart.get("appVersion", "")},
    }
    defines: dict[str, list] = {}
    files = sorted((chart_dir / "templates").iterdir())
    parsed = {}
    for f in files:
        nodes, d = parse(f.read_text())
        defines.update(d)
        parsed[f.name] = nodes
    r = Renderer(defines)
    return {name: r.render(nodes, ctx) for name, nodes in parsed.items() if not name.startswith("_")}


def render_objects(chart_dir: Path, values: dict | None = None) -> list[dict]:
    """The Kubernetes objects the chart renders to (YAML documents of every template but NOTES.txt)."""
    objects = []
    for name, text in render_chart(chart_dir, values).items():
        if name == "NOTES.txt":
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                objects.append(doc)
    return objects
