"""A PolicySnapshot's pure decisions: which action is pending, and when one is refused."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pkg_operator.actions import ActionError, ActionRequest
from pkg_operator.api import ACTION_ANNOTATION
from pkg_operator.snapshot.decide import (
    action_key,
    action_record,
    auto_promotable,
    pending_action,
    promotion_message,
    refusal,
)
from pkg_operator.snapshot.status import Outcome, ValidationSummary

NOW = dt.datetime(2026, 12, 4, 12, 0, 0, 250000, tzinfo=dt.UTC)


def _validated(*, failed: int = 0) -> ValidationSummary:
    return ValidationSummary(1, 2 - failed, failed, 2, NOW, "2/2 fixtures passed")


def _meta(**action: str) -> dict[str, object]:
    return {"annotations": {ACTION_ANNOTATION: json.dumps(action)}} if action else {}


def _request(action: str) -> ActionRequest:
    return ActionRequest(action=action, token="t-1", actor="ada", reason="because")


class TestPendingAction:
    def test_no_annotation_means_nothing_to_do(self) -> None:
        assert pending_action({}, {}) is None

    def test_a_new_token_is_pending(self) -> None:
        request = pending_action(_meta(action="promote", token="t-1", actor="ada"), {})
        assert request is not None
        assert (request.action, request.token, request.actor) == ("promote", "t-1", "ada")

    def test_a_token_already_carried_out_is_not_pending_again(self) -> None:
        meta = _meta(action="promote", token="t-1")
        assert pending_action(meta, {"lastAction": {"token": "t-1"}}) is None

    def test_a_deployment_action_on_a_snapshot_is_malformed(self) -> None:
        with pytest.raises(ActionError, match="unknown action 'abort'"):
            pending_action(_meta(action="abort", token="t-1"), {})


class TestRefusal:
    def test_only_a_ready_snapshot_can_be_promoted(self) -> None:
        for outcome in (
            Outcome(snapshot_id=1),
            Outcome(snapshot_id=1, validation=_validated(failed=1)),
        ):
            refused = refusal(outcome, _request("promote"))
            assert refused is not None
            assert refused.reason == "PromotionRefused"
            assert refused.outcome.startswith("refused: only a Ready snapshot")
        assert refusal(Outcome(snapshot_id=1, validation=_validated()), _request("promote")) is None

    def test_only_the_active_snapshot_can_be_rolled_back(self) -> None:
        ready = Outcome(snapshot_id=1, validation=_validated())
        refused = refusal(ready, _request("rollback"))
        assert refused is not None
        assert refused.reason == "RollbackRefused"
        assert "promote it" in refused.message
        active = Outcome(snapshot_id=1, validation=_validated(), active_in="prod")
        assert refusal(active, _request("rollback")) is None

    def test_an_action_a_snapshot_does_not_take_is_refused_by_name(self) -> None:
        refused = refusal(Outcome(), _request("abort"))
        assert refused is not None
        assert refused.reason == "InvalidAction"
        assert refused.outcome == f"refused: {refused.message}"
        assert "'abort'" in refused.message


class TestAutoPromotion:
    def test_only_a_ready_snapshot_never_active_before_is_auto_promoted(self) -> None:
        assert auto_promotable(Outcome(snapshot_id=1, validation=_validated()))
        assert not auto_promotable(Outcome(snapshot_id=1))
        assert not auto_promotable(Outcome(snapshot_id=1, validation=_validated(failed=1)))
        assert not auto_promotable(Outcome(validation=_validated(), active_in="prod"))
        assert not auto_promotable(Outcome(validation=_validated(), superseded_by="rules@2.0.0"))


def test_records_and_messages() -> None:
    assert action_key("uid-1", "t-1") == "uid-1:t-1"
    assert promotion_message("prod", None, 7) == "active in prod; sidecars signalled at epoch 7"
    assert promotion_message("prod", "rules@1.0.0", 8) == (
        "active in prod (replacing rules@1.0.0); sidecars signalled at epoch 8"
    )
    assert action_record("promote", "t-1", "ada", "done", NOW) == {
        "action": "promote", "token": "t-1", "actor": "ada", "outcome": "done",
        "at": "2026-12-04T12:00:00.250000Z",
    }  # fmt: skip
