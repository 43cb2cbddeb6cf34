"""``strings.render_template``: the part of Go's ``text/template`` that data-only templates use.

OPA (``v1/topdown/template.go``) decodes the variables to Go's JSON values
(numbers stay ``json.Number``, a string kind: they print as written), executes
the template and replaces ``<no value>`` with ``<undefined>``. This module
executes, with ``text/template``'s semantics (truth, scoping, map order, value
printing, trim markers, comments):

* actions ``{{pipeline}}``, ``{{$x := pipeline}}``, ``{{$x = pipeline}}``;
* ``if``/``else if``/``else``, ``range`` (``$v :=`` or ``$i, $v :=``; ``else``;
  ``break``/``continue``), ``with``/``else``, ``end``;
* a pipeline of one operand: a field chain (``.a.b``), ``$``, a variable with
  fields (``$x.a``), or a plain string, decimal integer or boolean literal.

Anything else (functions such as ``printf`` or ``len``, ``|`` pipes,
``define``/``template``/``block``) is refused: the call is undefined and the
reason is logged, rather than a result that might differ from OPA's.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.values import RegoBigNumber, RegoFloat, RegoSet

__all__ = ["render_template"]

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_SPACE = " \t\r\n"
_MISSING = object()  # Go's invalid reflect.Value


class _Num(str):
    """A JSON number as Go's ``json.Number``: a string that prints as written."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def _go_value(v: Any) -> Any:
    """A Rego value as OPA's ``ast.As`` decodes it (sets are not JSON: refused)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, RegoFloat):
        return _Num(v.text)
    if isinstance(v, RegoBigNumber):
        return _Num(v.text)
    if isinstance(v, (int, float, Decimal)):
        return _Num(str(v))
    if isinstance(v, list):
        return [_go_value(x) for x in v]
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {k: _go_value(x) for k, x in v.items()}
    raise HostBuiltinError("template variables must be JSON (no sets, string keys only)")


# -- parsing ----------------------------------------------------------------------------------
def _tokens(text: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", body) pieces, trim markers applied, comments dropped."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if m.group(1):
            chunk = chunk.rstrip(_SPACE)
        out.append(("text", chunk))
        out.append(("action", m.group(2).strip()))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip(_SPACE))
    out.append(("text", text[pos:]))
    if any(kind == "text" and "{{" in piece for kind, piece in out):
        raise HostBuiltinError("template: unclosed action")
    return [t for t in out if not (t[0] == "action" and t[1].startswith("/*"))]


_KEYWORD = re.compile(r"(if|else if|else|range|with|end|break|continue)\b\s*(.*)", re.S)


def _parse(tokens: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list[Any], int]:
    """Nodes up to one of the ``stop`` keywords (returned index points at it)."""
    nodes: list[Any] = []
    while i < len(tokens):
        kind, body = tokens[i]
        if kind == "text":
            nodes.append(("text", body))
            i += 1
            continue
        m = _KEYWORD.fullmatch(body)
        word = m.group(1) if m else ""
        if word in stop:
            return nodes, i
        if word in ("if", "with", "range"):
            node, i = _parse_block(tokens, i, word, m.group(2) if m else "")
            nodes.append(node)
            continue
        if word in ("break", "continue"):
            nodes.append((word,))
        elif word:
            raise HostBuiltinError(f"template: unexpected {{{{{word}}}}}")
        else:
            nodes.append(("action", body))
        i += 1
    if stop:
        raise HostBuiltinError("template: unexpected EOF")
    return nodes, i


def _parse_block(tokens: list[tuple[str, str]], i: int, word: str, arg: str) -> tuple[Any, int]:
    body, i = _parse(tokens, i + 1, ("else", "else if", "end"))
    m = _KEYWORD.fullmatch(tokens[i][1])
    assert m is not None
    alternative: list[Any] = []
    if m.group(1) == "else if":
        if word == "range":
            raise HostBuiltinError("template: else if after range")
        node, i = _parse_block(tokens, i, "if", m.group(2))
        return (word, arg, body, [node]), i
    if m.group(1) == "else":
        alternative, i = _parse(tokens, i + 1, ("end",))
    return (word, arg, body, alternative), i + 1


# -- executing --------------------------------------------------------------------------------
_DECL = re.compile(r"(\$\w*)\s*(?:,\s*(\$\w*)\s*)?(:=|=)\s*(.*)", re.S)
#: Decimal integer literals only: Go reads ``1.50`` as 1.5 and ``007`` as octal; those are refused.
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")


class _Exec:
    def __init__(self, root: Any) -> None:
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.out: list[str] = []

    def lookup(self, name: str) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise HostBuiltinError(f'template: undefined variable "{name}"')

    def run(self, nodes: list[Any], dot: Any) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                self.out.append(node[1])
            elif kind == "action":
                self.action(node[1], dot)
            elif kind == "break":
                raise _Break
            elif kind == "continue":
                raise _Continue
            else:
                self.block(node, dot)

    def action(self, body: str, dot: Any) -> None:
        decl = _DECL.fullmatch(body)
        if decl:
            value = self.operand(decl.group(4).strip(), dot)
            name = decl.group(1)
            if decl.group(3) == ":=":
                self.vars.append((name, value))
            else:
                self.assign(name, value)
            return
        self.out.append(_print(self.operand(body, dot)))

    def assign(self, name: str, value: Any) -> None:
        for index in range(len(self.vars) - 1, -1, -1):
            if self.vars[index][0] == name:
                self.vars[index] = (name, value)
                return
        raise HostBuiltinError(f'template: undefined variable "{name}"')

    def operand(self, text: str, dot: Any) -> Any:
        if text.startswith('"') or text.startswith("`"):
            return _string_literal(text)
        if text in ("true", "false"):
            return text == "true"
        if text == "nil":
            raise HostBuiltinError("template: nil is not a command")
        if _NUMBER.fullmatch(text):
            return _Num(text)
        if text.startswith("$"):
            name, _, fields = text.partition(".")
            return _fields(self.lookup(name), fields)
        if text.startswith("."):
            return _fields(dot, text[1:])
        raise HostBuiltinError(f"template: {text!r} needs a function, which this engine lacks")

    def block(self, node: Any, dot: Any) -> None:
        word, arg, body, alternative = node
        mark = len(self.vars)
        try:
            if word == "range":
                self.range(arg, body, alternative, dot)
                return
            decl = _DECL.fullmatch(arg)
            value = self.operand((decl.group(4) if decl else arg).strip(), dot)
            if decl:
                self.vars.append((decl.group(1), value))
            if _truth(value):
                self.run(body, value if word == "with" else dot)
            else:
                self.run(alternative, dot)
        finally:
            del self.vars[mark:]

    def range(self, arg: str, body: list[Any], alternative: list[Any], dot: Any) -> None:
        decl = _DECL.fullmatch(arg)
        value = self.operand((decl.group(4) if decl else arg).strip(), dot)
        if isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, list):
            items = list(enumerate(value))
        elif value is _MISSING or value is None:
            items = []
        else:
            raise HostBuiltinError(f"template: range can't iterate over {_print(value)}")
        if not items:
            self.run(alternative, dot)
            return
        mark = len(self.vars)
        for key, element in items:
            if decl:
                names = [decl.group(1), decl.group(2)]
                bound = [element] if names[1] is None else [key, element]
                self.vars.extend((n, v) for n, v in zip(names, bound, strict=False) if n)
            try:
                self.run(body, element)
            except _Break:
                break
            except _Continue:
                pass
            finally:
                del self.vars[mark:]


def _string_literal(text: str) -> str:
    if text.startswith("`") and text.endswith("`") and len(text) > 1:
        return text[1:-1]
    if len(text) > 1 and text.endswith('"') and "\\" not in text:
        return text[1:-1]
    raise HostBuiltinError("template: only plain string literals are supported")


def _fields(value: Any, chain: str) -> Any:
    for name in chain.split(".") if chain else []:
        if not re.fullmatch(r"\w+", name):
            raise HostBuiltinError(f"template: bad field {name!r}")
        if value is _MISSING:
            return _MISSING
        if not isinstance(value, dict):
            kind = "nil pointer" if value is None else "non-map"
            raise HostBuiltinError(f"template: can't evaluate field {name} in {kind}")
        value = value.get(name, _MISSING)
    return value


def _truth(value: Any) -> bool:
    if value is _MISSING or value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int):  # a range index
        return value != 0
    return len(value) > 0


def _print(value: Any, top: bool = True) -> str:
    """Go's ``fmt.Print`` of a JSON value (``<no value>`` for a missing one)."""
    if value is _MISSING or value is None:  # a nil interface at the top is no value to Go
        return "<no value>" if top else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_print(x, False) for x in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_print(value[k], False)}" for k in sorted(value)) + "]"
    return str(value)


def render_template(template: Any, variables: Any) -> str:
    """``strings.render_template``: ``template`` executed on ``variables``."""
    if not isinstance(template, str):
        raise HostBuiltinError("operand 1 must be a string")
    if not isinstance(variables, dict) or isinstance(variables, RegoSet):
        raise HostBuiltinError("operand 2 must be an object")
    root = _go_value(variables)
    nodes, _ = _parse(_tokens(template), 0, ())
    run = _Exec(root)
    try:
        run.run(nodes, root)
    except (_Break, _Continue):
        raise HostBuiltinError("template: break or continue outside range") from None
    return "".join(run.out).replace("<no value>", "<undefined>")
