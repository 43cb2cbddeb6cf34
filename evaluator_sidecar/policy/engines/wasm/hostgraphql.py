"""``graphql.*`` host builtins: OPA's Go (``v1/topdown/graphql.go``) on graphql-core.

OPA parses with gqlparser and returns its AST as gqlparser's Go structs
marshal (field names ``Operations``, ``SelectionSet``, ``Alias`` …; ``Position``,
nulls, empty lists and empty objects pruned, empty strings and ``false`` kept).
This module parses with graphql-core and writes the same shape. A query
document may hold only operations and fragments, a schema document only type
system definitions, as gqlparser's ``ParseQuery`` and ``ParseSchema`` require.
Schemas are built with the GraphQL prelude and validated, queries validated
with the specification's rules. Comments are not kept (gqlparser keeps them
as ``Comment`` nodes).
"""

from __future__ import annotations

import json
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLSchema,
    build_ast_schema,
    parse,
    validate,
)
from graphql import language as gl
from graphql.type import validate_schema

from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError

__all__ = [
    "is_valid",
    "parse_and_verify",
    "parse_query",
    "parse_schema",
    "parse_with_schema",
    "schema_is_valid",
]

_VALUE_KIND = {
    "variable": 0,
    "int_value": 1,
    "float_value": 2,
    "string_value": 3,
    "boolean_value": 5,
    "null_value": 6,
    "enum_value": 7,
    "list_value": 8,
    "object_value": 9,
}
_EXECUTABLE = (gl.OperationDefinitionNode, gl.FragmentDefinitionNode)


def _parse(text: str) -> gl.DocumentNode:
    try:
        # gqlparser reads an empty document (only whitespace and comments) as no definitions.
        if all(t.kind == gl.TokenKind.EOF for t in _tokens(text)):
            return gl.DocumentNode(definitions=())
        doc = parse(
            text,
            no_location=True,
            experimental_fragment_arguments=True,
            allow_empty_selection_sets=False,
        )
    except GraphQLError as exc:
        raise HostBuiltinError(f"GraphQL parse error: {exc.message}") from None
    if _has_empty_selection_set(doc):
        raise HostBuiltinError("GraphQL parse error: expected at least one selection")
    return doc


def _tokens(text: str) -> list[gl.Token]:
    lexer = gl.Lexer(gl.Source(text))
    return [lexer.advance()]


def _has_empty_selection_set(node: Any) -> bool:
    found = False

    class _Visitor(gl.Visitor):
        def enter_selection_set(self, n: gl.SelectionSetNode, *_args: Any) -> Any:
            nonlocal found
            if not n.selections:
                found = True
                return gl.BREAK
            return None

    gl.visit(node, _Visitor())
    return found


def _query_doc(text: str) -> gl.DocumentNode:
    doc = _parse(text)
    if not all(isinstance(d, _EXECUTABLE) for d in doc.definitions):
        raise HostBuiltinError("GraphQL parse error: unexpected type system definition in a query")
    return doc


def _schema_doc(text: str) -> gl.DocumentNode:
    doc = _parse(text)
    if any(isinstance(d, _EXECUTABLE) for d in doc.definitions):
        raise HostBuiltinError("GraphQL parse error: unexpected operation in a schema")
    return doc


# -- gqlparser's AST shape ------------------------------------------------------------------
def _prune(value: Any) -> Any:
    """OPA's ``pruneIrrelevantGraphQLASTNodes``: drop nulls and empty lists and objects."""
    if isinstance(value, dict):
        out = {}
        for k, raw in value.items():
            if k == "Position" or raw is None:
                continue
            v = _prune(raw)
            if isinstance(v, (list, dict)) and not v:
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        items = []
        for raw in value:
            if raw is None:
                continue
            v = _prune(raw)
            if isinstance(v, (list, dict)) and not v:
                continue
            items.append(v)
        return items
    return value


def _name(node: Any) -> str:
    return node.value if node is not None else ""


def _type(node: Any) -> Any:
    if node is None:
        return None
    if isinstance(node, gl.NonNullTypeNode):
        inner = _type(node.type)
        inner["NonNull"] = True
        return inner
    if isinstance(node, gl.ListTypeNode):
        return {"NamedType": "", "Elem": _type(node.type), "NonNull": False}
    return {"NamedType": node.name.value, "NonNull": False}


def _value(node: Any) -> Any:
    if node is None:
        return None
    kind = node.kind
    out: dict[str, Any] = {"Raw": "", "Kind": _VALUE_KIND.get(kind, 0)}
    if kind == "variable":
        out["Raw"] = node.name.value
    elif kind == "string_value":
        out["Raw"] = node.value
        if node.block:
            out["Kind"] = 4
    elif kind == "boolean_value":
        out["Raw"] = "true" if node.value else "false"
    elif kind == "null_value":
        out["Raw"] = "null"
    elif kind in ("int_value", "float_value", "enum_value"):
        out["Raw"] = node.value
    elif kind == "list_value":
        out["Children"] = [{"Name": "", "Value": _value(v)} for v in node.values]
    elif kind == "object_value":
        out["Children"] = [{"Name": f.name.value, "Value": _value(f.value)} for f in node.fields]
    out["ExpectedTypeHasDefault"] = False
    return out


def _arguments(nodes: Any) -> list[Any]:
    return [{"Name": a.name.value, "Value": _value(a.value)} for a in nodes or ()]


def _directives(nodes: Any) -> list[Any]:
    return [
        {"Name": d.name.value, "Arguments": _arguments(d.arguments), "Location": ""}
        for d in nodes or ()
    ]


def _selections(node: Any) -> list[Any]:
    if node is None:
        return []
    out: list[Any] = []
    for s in node.selections:
        if isinstance(s, gl.FieldNode):
            name = s.name.value
            out.append(
                {
                    "Alias": _name(s.alias) or name,
                    "Name": name,
                    "Arguments": _arguments(s.arguments),
                    "Directives": _directives(s.directives),
                    "SelectionSet": _selections(s.selection_set),
                }
            )
        elif isinstance(s, gl.FragmentSpreadNode):
            out.append({"Name": s.name.value, "Directives": _directives(s.directives)})
        else:
            out.append(
                {
                    "TypeCondition": s.type_condition.name.value if s.type_condition else "",
                    "Directives": _directives(s.directives),
                    "SelectionSet": _selections(s.selection_set),
                }
            )
    return out


def _variables(nodes: Any) -> list[Any]:
    return [
        {
            "Variable": v.variable.name.value,
            "Type": _type(v.type),
            "DefaultValue": _value(v.default_value),
            "Directives": _directives(v.directives),
            "Used": False,
        }
        for v in nodes or ()
    ]


def query_ast(doc: gl.DocumentNode) -> dict[str, Any]:
    operations, fragments = [], []
    for d in doc.definitions:
        if isinstance(d, gl.OperationDefinitionNode):
            operations.append(
                {
                    "Operation": d.operation.value,
                    "Name": _name(d.name),
                    "VariableDefinitions": _variables(d.variable_definitions),
                    "Directives": _directives(d.directives),
                    "SelectionSet": _selections(d.selection_set),
                }
            )
        elif isinstance(d, gl.FragmentDefinitionNode):
            fragments.append(
                {
                    "Name": d.name.value,
                    "VariableDefinition": _variables(d.variable_definitions),
                    "TypeCondition": d.type_condition.name.value,
                    "Directives": _directives(d.directives),
                    "SelectionSet": _selections(d.selection_set),
                }
            )
    result = _prune({"Operations": operations, "Fragments": fragments})
    assert isinstance(result, dict)
    return result


def _description(node: Any) -> str:
    return node.description.value if getattr(node, "description", None) is not None else ""


def _input_value(a: Any) -> dict[str, Any]:
    return {
        "Description": _description(a),
        "Name": a.name.value,
        "DefaultValue": _value(a.default_value),
        "Type": _type(a.type),
        "Directives": _directives(a.directives),
    }


def _field_def(f: Any) -> dict[str, Any]:
    if isinstance(f, gl.InputValueDefinitionNode):
        out = _input_value(f)
        out["Arguments"] = []
        return out
    return {
        "Description": _description(f),
        "Name": f.name.value,
        "Arguments": [_input_value(a) for a in f.arguments or ()],
        "Type": _type(f.type),
        "Directives": _directives(f.directives),
    }


_KINDS = {
    "scalar": "SCALAR",
    "object": "OBJECT",
    "interface": "INTERFACE",
    "union": "UNION",
    "enum": "ENUM",
    "input_object": "INPUT_OBJECT",
}


def _definition(d: Any) -> dict[str, Any]:
    kind = d.kind.replace("_type_definition", "").replace("_type_extension", "")
    return {
        "Kind": _KINDS[kind],
        "Description": _description(d),
        "Name": d.name.value,
        "Directives": _directives(d.directives),
        "Interfaces": [i.name.value for i in getattr(d, "interfaces", None) or ()],
        "Fields": [_field_def(f) for f in getattr(d, "fields", None) or ()],
        "Types": [t.name.value for t in getattr(d, "types", None) or ()],
        "EnumValues": [
            {
                "Description": _description(v),
                "Name": v.name.value,
                "Directives": _directives(v.directives),
            }
            for v in getattr(d, "values", None) or ()
        ],
        "BuiltIn": False,
    }


def _schema_definition(d: Any) -> dict[str, Any]:
    return {
        "Description": _description(d),
        "Directives": _directives(d.directives),
        "OperationTypes": [
            {"Operation": o.operation.value, "Type": o.type.name.value}
            for o in d.operation_types or ()
        ],
    }


def schema_ast(doc: gl.DocumentNode) -> dict[str, Any]:
    out: dict[str, list[Any]] = {
        "Schema": [],
        "SchemaExtension": [],
        "Directives": [],
        "Definitions": [],
        "Extensions": [],
    }
    for d in doc.definitions:
        if isinstance(d, gl.SchemaDefinitionNode):
            out["Schema"].append(_schema_definition(d))
        elif isinstance(d, gl.SchemaExtensionNode):
            out["SchemaExtension"].append(_schema_definition(d))
        elif isinstance(d, gl.DirectiveDefinitionNode):
            out["Directives"].append(
                {
                    "Description": _description(d),
                    "Name": d.name.value,
                    "Arguments": [_input_value(a) for a in d.arguments or ()],
                    "Locations": [loc.value for loc in d.locations],
                    "IsRepeatable": bool(d.repeatable),
                }
            )
        elif isinstance(d, gl.TypeExtensionNode):
            out["Extensions"].append(_definition(d))
        else:
            out["Definitions"].append(_definition(d))
    result = _prune(out)
    assert isinstance(result, dict)
    return result


# -- documents from operands -----------------------------------------------------------------
def _doc_from(value: Any, *, schema: bool) -> gl.DocumentNode:
    if isinstance(value, str):
        return _schema_doc(value) if schema else _query_doc(value)
    if isinstance(value, dict):
        # OPA unmarshals an AST object back into gqlparser's structs; printing it as GraphQL
        # text and parsing that is the same document.
        return _parse(_print_ast(value, schema=schema))
    raise HostBuiltinError("operand must be a string or an object")


_EXTENSION_TO_DEFINITION = {
    gl.ObjectTypeExtensionNode: gl.ObjectTypeDefinitionNode,
    gl.InterfaceTypeExtensionNode: gl.InterfaceTypeDefinitionNode,
    gl.UnionTypeExtensionNode: gl.UnionTypeDefinitionNode,
    gl.EnumTypeExtensionNode: gl.EnumTypeDefinitionNode,
    gl.InputObjectTypeExtensionNode: gl.InputObjectTypeDefinitionNode,
    gl.ScalarTypeExtensionNode: gl.ScalarTypeDefinitionNode,
}


def _extensions_as_definitions(doc: gl.DocumentNode) -> gl.DocumentNode:
    """gqlparser lets ``extend type X`` define ``X`` when nothing else does; so does this."""
    defined = {
        d.name.value
        for d in doc.definitions
        if isinstance(d, gl.TypeDefinitionNode) and not isinstance(d, gl.TypeExtensionNode)
    }
    definitions = []
    for d in doc.definitions:
        cls: Any = _EXTENSION_TO_DEFINITION.get(type(d))
        if cls is not None and d.name.value not in defined:  # type: ignore[attr-defined]
            defined.add(d.name.value)  # type: ignore[attr-defined]
            fields = {k: getattr(d, k, None) for k in cls.keys if k not in ("loc", "description")}
            definitions.append(cls(**fields))
        else:
            definitions.append(d)
    return gl.DocumentNode(definitions=tuple(definitions))


#: graphql-core checks this; gqlparser (and so OPA) accepts a schema without a query type.
_NO_QUERY_ROOT = "Query root type must be provided."


def _build_schema(doc: gl.DocumentNode) -> GraphQLSchema:
    try:
        schema = build_ast_schema(_extensions_as_definitions(doc))
    except (GraphQLError, TypeError) as exc:
        raise HostBuiltinError(f"invalid schema: {exc}") from None
    errors = [e for e in validate_schema(schema) if e.message != _NO_QUERY_ROOT]
    if errors:
        raise HostBuiltinError(f"invalid schema: {errors[0].message}")
    # Recorded as valid, so that validate() does not refuse it for the missing query root.
    schema._validation_errors = []
    return schema


def _validate(schema: GraphQLSchema, doc: gl.DocumentNode) -> None:
    errors = validate(schema, doc)
    if errors:
        raise HostBuiltinError(errors[0].message)


def parse_query(text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        raise HostBuiltinError("operand 1 must be a string")
    return query_ast(_query_doc(text))


def parse_schema(text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        raise HostBuiltinError("operand 1 must be a string")
    return schema_ast(_schema_doc(text))


def schema_is_valid(schema: Any) -> bool:
    try:
        _build_schema(_doc_from(schema, schema=True))
    except HostBuiltinError:
        return False
    return True


def is_valid(query: Any, schema: Any) -> bool:
    try:
        doc = _doc_from(query, schema=False)
        _validate(_build_schema(_doc_from(schema, schema=True)), doc)
    except HostBuiltinError:
        return False
    return True


def parse_with_schema(query: Any, schema: Any) -> list[Any]:
    """``graphql.parse``: ``[query AST, schema AST]`` of a query valid against the schema."""
    doc = _doc_from(query, schema=False)
    schema_doc = _doc_from(schema, schema=True)
    _validate(_build_schema(schema_doc), doc)
    return [query_ast(doc), schema_ast(schema_doc)]


def parse_and_verify(query: Any, schema: Any) -> list[Any]:
    """``graphql.parse_and_verify``: ``[true, query AST, schema AST]`` or ``[false, {}, {}]``."""
    try:
        return [True, *parse_with_schema(query, schema)]
    except HostBuiltinError:
        return [False, {}, {}]


# -- AST objects back to GraphQL text ---------------------------------------------------------
def _print_value(v: Any) -> str:
    kind = v.get("Kind", 0)
    raw = v.get("Raw", "")
    children = v.get("Children") or []
    if kind == 0:
        return "$" + str(raw)
    if kind in (3, 4):
        return json.dumps(raw)
    if kind == 8:
        return "[" + ", ".join(_print_value(c["Value"]) for c in children) + "]"
    if kind == 9:
        return "{" + ", ".join(f"{c['Name']}: {_print_value(c['Value'])}" for c in children) + "}"
    return str(raw)


def _print_type(t: Any) -> str:
    text = t.get("NamedType") or f"[{_print_type(t.get('Elem') or {})}]"
    return text + ("!" if t.get("NonNull") else "")


def _print_args(args: Any) -> str:
    if not args:
        return ""
    return "(" + ", ".join(f"{a['Name']}: {_print_value(a['Value'])}" for a in args) + ")"


def _print_directives(ds: Any) -> str:
    return "".join(f" @{d['Name']}{_print_args(d.get('Arguments'))}" for d in ds or ())


def _print_selections(ss: Any) -> str:
    if not ss:
        return ""
    parts = []
    for s in ss:
        if ("SelectionSet" in s and "Name" not in s) or ("TypeCondition" in s and "Alias" not in s):
            cond = f" on {s['TypeCondition']}" if s.get("TypeCondition") else ""
            sel = _print_selections(s.get("SelectionSet"))
            parts.append(f"...{cond}{_print_directives(s.get('Directives'))} {sel}")
        elif "Alias" in s:
            alias = f"{s['Alias']}: " if s.get("Alias") and s["Alias"] != s["Name"] else ""
            args = _print_args(s.get("Arguments"))
            directives = _print_directives(s.get("Directives"))
            parts.append(
                f"{alias}{s['Name']}{args}{directives} {_print_selections(s.get('SelectionSet'))}"
            )
        else:
            parts.append(f"...{s['Name']}{_print_directives(s.get('Directives'))}")
    return "{ " + " ".join(parts) + " }"


def _print_input_values(values: Any) -> str:
    if not values:
        return ""
    items = []
    for a in values:
        default = f" = {_print_value(a['DefaultValue'])}" if a.get("DefaultValue") else ""
        items.append(f"{a['Name']}: {_print_type(a['Type'])}{default}")
    return "(" + ", ".join(items) + ")"


def _print_query(doc: Any) -> str:
    parts = []
    for op in doc.get("Operations") or ():
        variables = ""
        if op.get("VariableDefinitions"):
            items = []
            for v in op["VariableDefinitions"]:
                default = f" = {_print_value(v['DefaultValue'])}" if v.get("DefaultValue") else ""
                items.append(f"${v['Variable']}: {_print_type(v['Type'])}{default}")
            variables = "(" + ", ".join(items) + ")"
        parts.append(
            f"{op.get('Operation') or 'query'} {op.get('Name', '')}{variables}"
            f"{_print_directives(op.get('Directives'))} {_print_selections(op.get('SelectionSet'))}"
        )
    for fr in doc.get("Fragments") or ():
        parts.append(
            f"fragment {fr['Name']} on {fr['TypeCondition']}"
            f"{_print_directives(fr.get('Directives'))} {_print_selections(fr.get('SelectionSet'))}"
        )
    return "\n".join(parts)


def _print_definition(d: Any, prefix: str = "") -> str:
    kind = d.get("Kind")
    head = {
        "SCALAR": "scalar",
        "OBJECT": "type",
        "INTERFACE": "interface",
        "UNION": "union",
        "ENUM": "enum",
        "INPUT_OBJECT": "input",
    }[kind]
    text = f"{prefix}{head} {d['Name']}"
    if d.get("Interfaces"):
        text += " implements " + " & ".join(d["Interfaces"])
    text += _print_directives(d.get("Directives"))
    if kind == "UNION" and d.get("Types"):
        text += " = " + " | ".join(d["Types"])
    if kind == "ENUM" and d.get("EnumValues"):
        text += " { " + " ".join(v["Name"] for v in d["EnumValues"]) + " }"
    if kind in ("OBJECT", "INTERFACE", "INPUT_OBJECT") and d.get("Fields"):
        fields = []
        for f in d["Fields"]:
            default = f" = {_print_value(f['DefaultValue'])}" if f.get("DefaultValue") else ""
            fields.append(
                f"{f['Name']}{_print_input_values(f.get('Arguments'))}: "
                f"{_print_type(f['Type'])}{default}"
            )
        text += " { " + " ".join(fields) + " }"
    return text


def _print_schema(doc: Any) -> str:
    parts = []
    for s in doc.get("Schema") or ():
        ops = " ".join(f"{o['Operation']}: {o['Type']}" for o in s.get("OperationTypes") or ())
        parts.append(f"schema{_print_directives(s.get('Directives'))} {{ {ops} }}")
    for d in doc.get("Directives") or ():
        repeatable = " repeatable" if d.get("IsRepeatable") else ""
        parts.append(
            f"directive @{d['Name']}{_print_input_values(d.get('Arguments'))}{repeatable} on "
            + " | ".join(d.get("Locations") or ())
        )
    parts += [_print_definition(d) for d in doc.get("Definitions") or ()]
    parts += [_print_definition(d, "extend ") for d in doc.get("Extensions") or ()]
    return "\n".join(parts)


def _print_ast(value: dict[str, Any], *, schema: bool) -> str:
    try:
        return _print_schema(value) if schema else _print_query(value)
    except (KeyError, TypeError, AttributeError) as exc:
        raise HostBuiltinError(f"not a GraphQL AST object: {exc}") from None
