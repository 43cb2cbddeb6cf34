"""JSON and YAML host builtins: ``json.marshal_with_options``, ``json.patch``, ``yaml.*``.

Ported from OPA's Go: ``v1/topdown/encoding.go`` (marshal with options, the YAML
builtins), ``v1/topdown/json.go`` and ``internal/edittree`` (JSON Patch, RFC 6902
extended to sets and to paths given as arrays of keys), ``internal/yaml`` (YAML
through go-yaml v3: only the first document is used, every one must parse; YAML
1.2 core scalars, timestamps stay strings). Operands OPA rejects raise
:class:`HostBuiltinError` (the call is undefined).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import yaml

from evaluator_sidecar.policy.engines.wasm.gostrconv import format_float
from evaluator_sidecar.policy.engines.wasm.hostjwt import go_json_marshal, json_unmarshal
from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.values import RegoFloat, RegoSet

__all__ = [
    "go_indent",
    "json_patch",
    "marshal_with_options",
    "yaml_is_valid",
    "yaml_marshal",
    "yaml_unmarshal",
]


# -- json.marshal_with_options (encoding.go) ---------------------------------------------------
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[^"]', re.S)


def go_indent(compact: str, *, prefix: str, indent: str) -> str:
    """Go's ``json.Indent`` of compact JSON (empty ``[]``/``{}`` stay on one line)."""
    out: list[str] = []
    depth = 0
    need_indent = False
    for token in _TOKEN.findall(compact):
        closing = token in ("]", "}")
        if need_indent and not closing:
            depth += 1
            out.append("\n" + prefix + indent * depth)
        if closing and not need_indent:
            depth -= 1
            out.append("\n" + prefix + indent * depth)
        need_indent = token in ("[", "{")
        if token == ",":
            out.append(",\n" + prefix + indent * depth)
        elif token == ":":
            out.append(": ")
        else:
            out.append(token)
    return "".join(out)


def marshal_with_options(value: Any, options: Any) -> str:
    """``json.marshal_with_options(x, {"pretty", "prefix", "indent"})``."""
    if not isinstance(options, dict):
        raise HostBuiltinError("operand 2 must be an object")
    indent, prefix = "\t", ""
    implicit = False
    pretty: bool | None = None
    for key, opt in options.items():
        if key in ("prefix", "indent"):
            if not isinstance(opt, str):
                raise HostBuiltinError(f"operand 2: {key} must be a string")
            if key == "prefix":
                prefix = opt
            else:
                indent = opt
            implicit = True
        elif key == "pretty":
            if not isinstance(opt, bool):
                raise HostBuiltinError("operand 2: pretty must be a boolean")
            pretty = opt
        else:
            raise HostBuiltinError(f"operand 2 contained unknown key {key}")
    compact = go_json_marshal(value)
    if not (implicit if pretty is None else pretty):
        return compact
    # MarshalIndent does not prefix the first line; OPA adds it.
    return prefix + go_indent(compact, prefix=prefix, indent=indent)


# -- json.patch (json.go applyPatches, internal/edittree) --------------------------------------
def _equal(a: Any, b: Any) -> bool:
    from evaluator_sidecar.policy.engines.wasm.result import opa_compare  # noqa: PLC0415 - cycle

    return opa_compare(a, b) == 0


_DELETED = object()


def _parse_path(path: Any) -> list[Any]:
    if isinstance(path, str):
        if path == "":
            return []
        return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    if isinstance(path, list):
        return list(path)
    raise HostBuiltinError("a patch path must be a string or an array of path segments")


_GO_INT = re.compile(r"[+-]?[0-9]+")


def _index(length: int, key: Any) -> int:
    """edittree's ``toIndex``: a number, a decimal string (no leading zeros), or ``-``."""
    if isinstance(key, bool):
        raise HostBuiltinError("invalid type for indexing")
    if isinstance(key, int):
        return key
    if isinstance(key, str):
        if key == "-":
            return length
        if not _GO_INT.fullmatch(key):
            raise HostBuiltinError("invalid string for indexing")
        if key != "0" and key.startswith("0"):
            raise HostBuiltinError("leading zeros are not allowed in JSON paths")
        return int(key)
    raise HostBuiltinError("invalid type for indexing")


def _set_items(s: RegoSet) -> list[Any]:
    return list(s)


def _child(node: Any, key: Any) -> Any:
    """The value under ``key`` in a composite ``node`` (edittree's Unfold, one step)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if _equal(k, key):
                return v
        raise HostBuiltinError(f"path {key!r} does not exist in object")
    if isinstance(node, RegoSet):
        for item in node:
            if _equal(item, key):
                return item
        raise HostBuiltinError(f"path {key!r} does not exist in set")
    if isinstance(node, list):
        idx = _index(len(node), key)
        if not 0 <= idx < len(node):
            raise HostBuiltinError(f"path {idx} does not exist in array")
        return node[idx]
    raise HostBuiltinError("expected a composite value on the patch path")


def _replace_child(node: Any, key: Any, new: Any) -> Any:
    """``node`` with its child at ``key`` (which exists) replaced by ``new``."""
    if isinstance(node, dict):
        return {k: (new if _equal(k, key) else v) for k, v in node.items()}
    if isinstance(node, RegoSet):
        return RegoSet([new if _equal(i, key) else i for i in node])
    idx = _index(len(node), key)
    return [*node[:idx], new, *node[idx + 1 :]]


def _insert(node: Any, key: Any, value: Any) -> Any:
    if isinstance(node, dict):
        kept = {k: v for k, v in node.items() if not _equal(k, key)}
        kept[key] = value
        return kept
    if isinstance(node, RegoSet):
        if not _equal(key, value):
            raise HostBuiltinError("set key does not equal the value to be inserted")
        return RegoSet([*(i for i in node if not _equal(i, key)), value])
    if isinstance(node, list):
        idx = _index(len(node), key)
        if not 0 <= idx <= len(node):
            raise HostBuiltinError("index for array insertion out of bounds")
        return [*node[:idx], value, *node[idx:]]
    raise HostBuiltinError("expected a composite value to insert into")


def _delete(node: Any, key: Any) -> Any:
    if isinstance(node, dict):
        if not any(_equal(k, key) for k in node):
            raise HostBuiltinError(f"cannot delete {key!r}: not in the object")
        return {k: v for k, v in node.items() if not _equal(k, key)}
    if isinstance(node, RegoSet):
        if not any(_equal(i, key) for i in node):
            raise HostBuiltinError(f"cannot delete {key!r}: not in the set")
        return RegoSet([i for i in node if not _equal(i, key)])
    if isinstance(node, list):
        idx = _index(len(node), key)
        if not 0 <= idx < len(node):
            raise HostBuiltinError("index for array delete out of bounds")
        return [*node[:idx], *node[idx + 1 :]]
    raise HostBuiltinError("expected a composite value to delete from")


def _at(doc: Any, path: list[Any]) -> Any:
    if doc is _DELETED:
        raise HostBuiltinError("the document was removed")
    for key in path:
        doc = _child(doc, key)
    return doc


def _edit(doc: Any, path: list[Any], op: Any) -> Any:
    """``doc`` with ``op(parent, last key)`` applied at ``path`` (non-empty)."""
    if doc is _DELETED:
        raise HostBuiltinError("deleted node encountered")
    if len(path) == 1:
        return op(doc, path[0])
    child = _child(doc, path[0])
    return _replace_child(doc, path[0], _edit(child, path[1:], op))


def _insert_at(doc: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    return _edit(doc, path, lambda node, key: _insert(node, key, value))


def _delete_at(doc: Any, path: list[Any]) -> Any:
    if not path:
        if doc is _DELETED:
            raise HostBuiltinError("deleted node encountered during delete operation")
        return _DELETED
    return _edit(doc, path, _delete)


def _required(op: dict[Any, Any], name: str) -> Any:
    if name not in op:
        raise HostBuiltinError(f"missing required attribute '{name}'")
    return op[name]


def _apply(doc: Any, op: Any) -> Any:
    if not isinstance(op, dict):
        raise HostBuiltinError("must be an array of JSON-Patch objects")
    _required(op, "path")
    name = _required(op, "op")
    if not isinstance(name, str):
        raise HostBuiltinError("attribute 'op' must be a string")
    path = _parse_path(op["path"])
    if name == "add":
        return _insert_at(doc, path, _required(op, "value"))
    if name == "remove":
        return _delete_at(doc, path)
    if name == "replace":
        doc = _delete_at(doc, path)
        return _insert_at(doc, path, _required(op, "value"))
    if name in ("move", "copy"):
        source = _parse_path(_required(op, "from"))
        chunk = _at(doc, source)
        if name == "move":
            doc = _delete_at(doc, source)
        return _insert_at(doc, path, chunk)
    if name == "test":
        chunk = _at(doc, path)
        if not _equal(chunk, _required(op, "value")):
            raise HostBuiltinError("test operation failed: the values differ")
        return doc
    raise HostBuiltinError(f"unrecognized op: '{name}'")


def json_patch(doc: Any, patches: Any) -> Any:
    """``json.patch(doc, patches)``: the patches applied in order; any failure is undefined."""
    if not isinstance(patches, list):
        raise HostBuiltinError("operand 2 must be an array")
    for op in patches:
        doc = _apply(doc, op)
    if doc is _DELETED:
        raise HostBuiltinError("the patches removed the whole document")
    return doc


# -- yaml.* (internal/yaml on go-yaml v3) --------------------------------------------------------
class _Loader(yaml.CSafeLoader):
    """YAML 1.2 core schema as go-yaml v3 reads it: no ``yes``/``on`` booleans, no timestamps.

    On libyaml's parser (PyYAML's C loader): the pure-Python one takes ~1 ms a document.
    """


_REPLACED = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in _REPLACED]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

# Go's strconv.ParseInt(s, 0, 64) after v3 drops underscores: 0b, 0o, 0x and 0-led octal.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^[-+]?(?:0[bB][01_]+|0[oO]?[0-7_]+|0[xX][0-9a-fA-F_]+|[0-9][0-9_]*)$"),
    list("-+0123456789"),
)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


def _int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-").lower()
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        digits = "0o" + digits[1:]
    return sign * int(digits, 0)


_Loader.add_constructor("tag:yaml.org,2002:int", _int)
# 1.1's words for true/false that v3 reads as strings but writes quoted, for older readers.
_OLD_BOOLS = frozenset(
    [
        "y",
        "Y",
        "yes",
        "Yes",
        "YES",
        "n",
        "N",
        "no",
        "No",
        "NO",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
        "true",
        "True",
        "TRUE",
        "false",
        "False",
        "FALSE",
    ]
)


def _float(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    value = yaml.SafeLoader.construct_yaml_float(loader, node)  # type: ignore[arg-type]
    if not math.isfinite(value):
        raise HostBuiltinError(f"{text!r} has no JSON form")
    return value


_Loader.add_constructor("tag:yaml.org,2002:float", _float)


def _yaml_first(text: str) -> Any:
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise HostBuiltinError(f"yaml: {exc}") from exc
    return docs[0] if docs else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return RegoFloat(repr(value)) if value != int(value) else _int_float(value)
    if isinstance(value, bytes):
        raise HostBuiltinError("binary YAML values have no JSON form")
    return value


def _int_float(value: float) -> Any:
    # JSON text of a float64 that is whole is written without a fraction by Go ("1e+06" aside).
    text = repr(value)
    return int(value) if "e" not in text else RegoFloat(text)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (int, float)):
        return str(key)
    raise HostBuiltinError("YAML mapping keys must be scalars to convert to JSON")


def yaml_unmarshal(text: Any) -> Any:
    """``yaml.unmarshal(s)``: the first YAML document of ``s`` as a value."""
    if not isinstance(text, str):
        raise HostBuiltinError("operand 1 must be a string")
    return _jsonable(_yaml_first(text))


def yaml_is_valid(text: Any) -> bool:
    """``yaml.is_valid(s)``: whether every YAML document in ``s`` parses (False for non-strings)."""
    if not isinstance(text, str):
        return False
    try:
        _jsonable(_yaml_first(text))
    except HostBuiltinError:
        return False
    return True


class _Dumper(yaml.SafeDumper):
    """go-yaml v3's encoder with indent 2: sequences in mappings are indented."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    """go-yaml v3's choice: double quotes where a reader would see another type, | for lines."""
    if "\n" in text:
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    resolved = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if text in _OLD_BOOLS or resolved != "tag:yaml.org,2002:str":
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", text)


def _represent_float(dumper: yaml.SafeDumper, value: float) -> yaml.ScalarNode:
    # Go writes 1000.0 as "1000": tag it as the reader will see it, so no !!float is added.
    text = format_float(value, "g", -1)
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return dumper.represent_scalar(tag, text)


_RESOLVER = yaml.resolver.Resolver()
_RESOLVER.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
_Dumper.add_representer(float, _represent_float)
_Dumper.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
_Dumper.add_representer(str, _represent_str)


def _go_yaml_key_less(a: str, b: str) -> bool:
    """go-yaml v3's order of string keys: letters by code point, digit runs by value."""
    digits = False
    for i in range(min(len(a), len(b))):
        if a[i] == b[i]:
            digits = a[i].isdecimal()
            continue
        al, bl = a[i].isalpha(), b[i].isalpha()
        if al and bl:
            return a[i] < b[i]
        if al or bl:
            return al if digits else bl
        an = bn = 0
        if a[i] == "0" or b[i] == "0":
            j = i - 1
            while j >= 0 and a[j].isdecimal():
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and a[ai].isdecimal():
            an, ai = an * 10 + ord(a[ai]) - 48, ai + 1
        bi = i
        while bi < len(b) and b[bi].isdecimal():
            bn, bi = bn * 10 + ord(b[bi]) - 48, bi + 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return a[i] < b[i]
    return len(a) < len(b)


def _key_cmp(a: str, b: str) -> int:
    return -1 if _go_yaml_key_less(a, b) else (1 if _go_yaml_key_less(b, a) else 0)


_KEY_ORDER = functools.cmp_to_key(_key_cmp)


def yaml_marshal(value: Any) -> str:
    """``yaml.marshal(x)``: ``x`` as YAML (via its JSON form: sets become sorted arrays)."""
    plain = json_unmarshal(go_json_marshal(value).encode("utf-8", "surrogatepass"))
    text = yaml.dump(
        _plain(plain),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        indent=2,
        width=2**31,
    )
    # PyYAML ends a document that is one plain scalar with "...": go-yaml does not.
    return text.removesuffix("...\n") if text.endswith("\n...\n") else text


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(value[k]) for k in sorted(value, key=_KEY_ORDER)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, RegoFloat):
        return float(value)
    return value
