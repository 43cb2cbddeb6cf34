"""The pkg.seedcore.io/action annotation: one JSON request, one token, clear errors."""

from __future__ import annotations

import json

import pytest

from pkg_operator.actions import (
    ACTION_ANNOTATION,
    DEPLOYMENT_ACTIONS,
    MAX_VALUE_CHARS,
    SNAPSHOT_ACTIONS,
    ActionError,
    ActionRequest,
    parse_action,
)


def annotation(**fields: object) -> str:
    return json.dumps(fields)


class TestAValidRequest:
    def test_all_fields_are_read(self) -> None:
        value = annotation(action="promote", token="ci-4711", actor="alice", reason="looks good")
        assert parse_action(value) == ActionRequest("promote", "ci-4711", "alice", "looks good")

    def test_actor_and_reason_are_optional(self) -> None:
        assert parse_action(annotation(action="abort", token="t-1")) == ActionRequest(
            "abort", "t-1", "unknown", ""
        )

    @pytest.mark.parametrize("action", sorted(DEPLOYMENT_ACTIONS))
    def test_every_deployment_action_is_understood(self, action: str) -> None:
        assert parse_action(annotation(action=action, token="x")).action == action

    def test_the_annotation_name(self) -> None:
        assert ACTION_ANNOTATION == "pkg.seedcore.io/action"


class TestRefusals:
    def test_malformed_json_says_how_to_write_it(self) -> None:
        with pytest.raises(ActionError, match="not valid JSON") as caught:
            parse_action("{action: promote}")
        assert '"token"' in str(caught.value)

    def test_a_json_value_that_is_not_an_object(self) -> None:
        with pytest.raises(ActionError, match="must be a JSON object"):
            parse_action('"promote"')

    def test_a_missing_action_lists_the_choices(self) -> None:
        with pytest.raises(ActionError, match="needs an 'action', one of: abort, promote"):
            parse_action(annotation(token="x"))

    def test_an_unknown_action_lists_the_choices(self) -> None:
        with pytest.raises(ActionError, match=r"unknown action 'deploy'.*promote-full"):
            parse_action(annotation(action="deploy", token="x"))

    def test_a_missing_token_explains_why_it_is_needed(self) -> None:
        with pytest.raises(ActionError, match="fresh unique string per request"):
            parse_action(annotation(action="promote"))

    @pytest.mark.parametrize("token", ["a/b", "has space", "-leading", "x" * 129, "a#b"])
    def test_tokens_keep_to_a_safe_alphabet(self, token: str) -> None:
        with pytest.raises(ActionError, match="1 to 128 characters"):
            parse_action(annotation(action="promote", token=token))

    def test_unknown_fields_are_refused_rather_than_ignored(self) -> None:
        with pytest.raises(ActionError, match=r"unknown fields \['percent'\]"):
            parse_action(annotation(action="promote", token="x", percent=50))

    def test_actor_must_be_text(self) -> None:
        with pytest.raises(ActionError, match="'actor' must be a string"):
            parse_action(annotation(action="promote", token="x", actor=42))

    def test_an_overlong_reason(self) -> None:
        with pytest.raises(ActionError, match="'reason' is longer than 1024"):
            parse_action(annotation(action="promote", token="x", reason="r" * 1025))

    # Found by the chaos scenario input/bad-manifests (tests/chaos/test_bad_input.py): an
    # annotation nested 100,000 deep made json.loads raise RecursionError, so the snapshot
    # handler and the rollout timer failed on every retry and the object's own status and
    # finalizer were never handled.
    @pytest.mark.parametrize("value", ["[" * 100_000, '{"a":' * 30_000, "x" * 20_000])
    def test_an_oversized_value_is_refused_before_it_is_decoded(self, value: str) -> None:
        with pytest.raises(ActionError, match=f"more than the {MAX_VALUE_CHARS} a request"):
            parse_action(value)

    @pytest.mark.parametrize("value", ["[" * 5_000, '{"a":' * 2_500 + "1" + "}" * 2_500])
    def test_a_value_nested_too_deep_to_decode_is_refused(self, value: str) -> None:
        assert len(value) <= MAX_VALUE_CHARS
        with pytest.raises(ActionError, match="nests too deep to read"):
            parse_action(value)

    def test_the_longest_valid_request_fits(self) -> None:
        value = annotation(action="promote", token="t" * 128, actor="é" * 253, reason="é" * 1024)
        assert len(value) <= MAX_VALUE_CHARS
        assert parse_action(value).reason == "é" * 1024


class TestSnapshotActions:
    def test_a_snapshot_accepts_promote_and_rollback_only(self) -> None:
        assert parse_action(annotation(action="rollback", token="x"), SNAPSHOT_ACTIONS).action == (
            "rollback"
        )
        with pytest.raises(ActionError, match="use one of: promote, rollback"):
            parse_action(annotation(action="promote-full", token="x"), SNAPSHOT_ACTIONS)

    def test_errors_are_value_errors(self) -> None:
        assert issubclass(ActionError, ValueError)
