"""The facts level and its message on ``pkg_updates``: wire form and refusals."""

from __future__ import annotations

import orjson
import pytest

from evaluator_sidecar.signals import (
    FactsLevel,
    FactsMessage,
    Heartbeat,
    MessageError,
    decode_message,
    encode_facts_message,
    facts_key,
)


def test_the_level_lives_under_its_environments_key() -> None:
    assert facts_key("prod") == "pkg:facts:prod"
    assert FactsLevel("staging", 2, 5).key == "pkg:facts:staging"


def test_a_facts_message_decodes_to_its_level() -> None:
    level = FactsLevel("prod", 12, 40, updated_at=1.5, reason="changed (timer)")
    message = decode_message(encode_facts_message(level))
    assert message == FactsMessage("pkg:facts:prod", level)
    assert FactsLevel.from_json(level.to_json()) == level


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"kind": "facts", "key": "pkg:facts:dev", "level": FactsLevel("prod", 1, 1).to_dict()},
            "does not match",
        ),
        (
            {"kind": "facts", "key": "pkg:facts:prod", "level": {"env": "prod", "epoch": 1}},
            "version",
        ),
        ({"kind": "facts", "key": "pkg:facts:prod"}, "'level' must be an object"),
        ({"kind": "other"}, "expected 'desired' or 'facts'"),
    ],
)
def test_a_malformed_facts_message_is_refused_saying_why(body: object, message: str) -> None:
    with pytest.raises(MessageError, match=message):
        decode_message(orjson.dumps(body))


def test_heartbeats_carry_the_facts_version_and_old_ones_read_as_zero() -> None:
    beat = Heartbeat(
        device_id="d1",
        device_type="sidecar",
        env="prod",
        target="router",
        region="eu",
        version="rules@1",
        snapshot_id=1,
        checksum=None,
        epoch=3,
        cohort="stable",
        facts_version=17,
    )
    assert Heartbeat.from_json(beat.to_json()).facts_version == 17
    old = beat.to_dict()
    del old["facts_version"]
    assert Heartbeat.from_json(orjson.dumps(old)).facts_version == 0
