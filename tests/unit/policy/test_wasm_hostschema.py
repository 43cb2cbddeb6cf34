"""json.verify_schema / json.match_schema check as OPA's gojsonschema does (OPA v1.22.2's texts)."""

from __future__ import annotations

from typing import Any

import pytest

from evaluator_sidecar.policy.engines.wasm import hostschema
from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.hostschemafmt import is_format
from evaluator_sidecar.policy.engines.wasm.values import RegoFloat, RegoSet

ID_SCHEMA = {"properties": {"id": {"type": "integer"}}, "required": ["id"]}


class TestVerify:
    @pytest.mark.parametrize("schema", [{"type": "boolean"}, '{"type": "boolean"}', "true", "{}"])
    def test_valid_schemas(self, schema: Any) -> None:
        assert hostschema.verify_schema(schema) == [True, None]

    @pytest.mark.parametrize(
        ("schema", "why"),
        [
            (
                {"type": "unknown_type"},
                "has a primitive type that is NOT VALID -- given: /unknown_type/ Expected valid "
                "values are:[array boolean integer number null object string]",
            ),
            ({"type": ["string", "string"]}, "string type is duplicated"),
            ({"minLength": -1}, "minLength must be greater than or equal to 0"),
            ({"minLength": 1.5}, "minLength must be of an integer"),
            ({"minLength": 3, "maxLength": 2}, "minLength cannot be greater than maxLength"),
            ({"multipleOf": 0}, "multipleOf must be strictly greater than 0"),
            ({"minimum": "x"}, "minimum must be of a Number"),
            ({"exclusiveMinimum": True}, "exclusiveMinimum cannot be used without minimum"),
            ({"required": ["a", "a"]}, "required items must be unique"),
            ({"enum": [1, 1.0]}, "enum items must be unique"),
            ({"pattern": "(?<=x)"}, "pattern must be a valid regex"),
            ({"items": 5}, "Invalid type. Expected: Valid Schema/Array Of Schemas, given: items"),
            ({"$ref": "http://example.com/s.json"}, None),
            ("{", "invalid JSON string"),
            ([], "schema is invalid"),
            (True, "wrong type, expected string or object"),
        ],
    )
    def test_invalid_schemas_say_why_in_gojsonschema_words(
        self, schema: Any, why: str | None
    ) -> None:
        valid, message = hostschema.verify_schema(schema)
        assert valid is False
        assert message.startswith("jsonschema: ")
        if why is not None:
            assert message == f"jsonschema: {why}"


class TestMatch:
    def test_a_matching_document_in_either_form(self) -> None:
        assert hostschema.match_schema({"id": 5}, ID_SCHEMA) == [True, []]
        assert hostschema.match_schema('{"id": 5}', ID_SCHEMA) == [True, []]
        assert hostschema.match_schema({"id": RegoFloat("5.0")}, ID_SCHEMA) == [True, []]

    def test_errors_carry_field_type_and_description(self) -> None:
        assert hostschema.match_schema({"id": "foo"}, ID_SCHEMA) == [
            False,
            [
                {
                    "desc": "Invalid type. Expected: integer, given: string",
                    "error": "id: Invalid type. Expected: integer, given: string",
                    "field": "id",
                    "type": "invalid_type",
                }
            ],
        ]
        _, errors = hostschema.match_schema({}, ID_SCHEMA)
        assert errors == [
            {
                "desc": "id is required",
                "error": "(Root): id is required",
                "field": "(Root)",
                "type": "required",
            }
        ]

    @pytest.mark.parametrize(
        ("document", "schema", "kinds"),
        [
            ([1, 1], {"uniqueItems": True}, ["unique"]),
            ([1, "a"], {"items": {"type": "integer"}}, ["invalid_type"]),
            ({"x": 1}, {"additionalProperties": False}, ["additional_property_not_allowed"]),
            ({"a": 1}, {"dependencies": {"a": ["b"]}}, ["missing_dependency"]),
            ('"abc"', {"maxLength": 2, "pattern": "^b"}, ["string_lte", "pattern"]),
            ("7", {"multipleOf": 2, "maximum": 5}, ["multiple_of", "number_lte"]),
            ("3", {"anyOf": [{"type": "string"}, {"minimum": 5}]}, ["number_any_of", "number_gte"]),
            ("3", {"oneOf": [{"type": "integer"}, {"minimum": 1}]}, ["number_one_of"]),
            ('"x"', {"enum": ["a", 1]}, ["enum"]),
            ('"x"', {"format": "ipv4"}, ["format"]),
            (
                {"a": 1},
                {"if": {"required": ["a"]}, "then": {"required": ["b"]}},
                ["condition_then", "required"],
            ),
            ([], {"contains": {"type": "integer"}}, ["contains"]),
            ("1", "false", ["false"]),
        ],
    )
    def test_each_keyword_reports_its_error_type(
        self, document: Any, schema: Any, kinds: list[str]
    ) -> None:
        valid, errors = hostschema.match_schema(document, schema)
        assert valid is False
        assert [e["type"] for e in errors] == kinds

    def test_messages_format_numbers_and_allowed_values_as_go(self) -> None:
        _, errors = hostschema.match_schema("0.5", {"minimum": 1.5, "multipleOf": 0.2})
        assert [e["desc"] for e in errors] == [
            "Must be a multiple of 0.2",
            "Must be greater than or equal to 1.5",
        ]
        _, errors = hostschema.match_schema('"x"', {"enum": [1.0, "a", {"k": [True]}]})
        assert errors[0]["desc"] == '(Root) must be one of the following: 1, "a", {"k":[true]}'

    def test_refs_within_the_schema_are_followed(self) -> None:
        schema = {"definitions": {"pos": {"minimum": 0}}, "items": {"$ref": "#/definitions/pos"}}
        _, errors = hostschema.match_schema([1, -1], schema)
        assert [(e["field"], e["type"]) for e in errors] == [("1", "number_gte")]

    def test_sets_are_arrays_and_other_operands_are_undefined(self) -> None:
        assert hostschema.match_schema(RegoSet([1, 2]), {"type": "array"}) == [True, []]
        with pytest.raises(HostBuiltinError):
            hostschema.match_schema(5, {})
        with pytest.raises(HostBuiltinError):
            hostschema.match_schema({}, {"type": "bogus"})
        looping = {
            "definitions": {"d": {"anyOf": [{"$ref": "#/definitions/d"}]}},
            "$ref": "#/definitions/d",
        }
        with pytest.raises(HostBuiltinError):
            hostschema.match_schema({}, looping)


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("ipv4", "10.0.0.1", "::1"),
        ("ipv6", "::ffff:1.2.3.4", "10.0.0.1"),
        ("date", "2024-02-29", "2023-02-29"),
        ("time", "12:30:00.5Z", "24:00:00"),
        ("date-time", "2024-01-31T10:00:00+01:00", "2024-01-31 10:00:00"),
        ("uuid", "F47AC10B-58CC-4372-A567-0E02B2C3D479", "f47ac10b58cc"),
        ("hostname", "a-b.example", "-a.example"),
        ("uri", "http://e/p", "/relative"),
        ("regex", "a+", "(?<=x)"),
        ("json-pointer", "/a~1b", "a"),
        ("email", "Name <a@b.c>", "a@@b"),
    ],
)
def test_formats(fmt: str, good: str, bad: str) -> None:
    assert is_format(fmt, good) is True
    assert is_format(fmt, bad) is False
    assert is_format(fmt, 5) is True
    assert is_format("no-such-format", bad) is True
