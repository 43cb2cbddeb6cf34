"""People's one-time requests to the operator: the ``pkg.seedcore.io/action`` annotation.

A person (or a CI job) asks for an imperative action by setting one annotation
whose value is a JSON object::

    kubectl annotate pdep router-canary --overwrite \\
      pkg.seedcore.io/action='{"action": "promote", "token": "ci-4711", "actor": "alice",
                               "reason": "dashboards look fine"}'

The token makes the request one-time: the operator records the tokens it has
handled in the resource's status and ignores a token it has seen, so an
annotation left in place (or re-applied by GitOps) is never acted on twice.
Use a fresh token for every request (a CI run id, a UUID).

This module only parses and checks the value; what an action means depends
on the resource (docs/rollout-state-machine.md for a PolicyDeployment; a
PolicySnapshot accepts promote and rollback). Pure, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from pkg_operator.api import ACTION_ANNOTATION

__all__ = [
    "ACTION_ANNOTATION",
    "DEPLOYMENT_ACTIONS",
    "MAX_VALUE_CHARS",
    "SNAPSHOT_ACTIONS",
    "ActionError",
    "ActionRequest",
    "parse_action",
]

DEPLOYMENT_ACTIONS: Final = frozenset(
    {"promote", "promote-full", "abort", "retry", "rollback", "resume"}
)
SNAPSHOT_ACTIONS: Final = frozenset({"promote", "rollback"})

# Tokens end up in idempotency keys joined with "/": keep them to a safe alphabet.
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MAX_ACTOR = 253
_MAX_REASON = 1024
#: The longest value read. A request is a small object (its longest field, the reason, is
#: 1,024 characters, 6,144 when every one is JSON-escaped); the API server stores values up
#: to 256 KiB, which Python's JSON decoder cannot be trusted with: a deeply nested one
#: raises RecursionError, which would fail the object's handler on every retry.
MAX_VALUE_CHARS = 16_384
_EXAMPLE = (
    '{"action": "promote", "token": "<unique, e.g. a CI run id>", "actor": "<who>", '
    '"reason": "<why>"}'
)


class ActionError(ValueError):
    """The annotation's value cannot be acted on; the message says how to write it."""


@dataclass(frozen=True)
class ActionRequest:
    """One parsed request. ``actor`` and ``reason`` are kept for the audit trail."""

    action: str
    token: str
    actor: str
    reason: str


def _text(data: dict[str, object], field: str, limit: int, default: str) -> str:
    value = data.get(field, default)
    if not isinstance(value, str):
        raise ActionError(f"{ACTION_ANNOTATION}: {field!r} must be a string, got {value!r}")
    value = value.strip()
    if len(value) > limit:
        raise ActionError(f"{ACTION_ANNOTATION}: {field!r} is longer than {limit} characters")
    return value


def parse_action(value: str, allowed: Collection[str] = DEPLOYMENT_ACTIONS) -> ActionRequest:
    """Parse the annotation's value; raise :class:`ActionError` saying what to fix.

    ``allowed`` is the set of actions the resource understands (for example
    :data:`SNAPSHOT_ACTIONS` on a PolicySnapshot). ``actor`` defaults to
    "unknown" and ``reason`` to "" when absent.
    """
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise ActionError(
            f"{ACTION_ANNOTATION} is {len(value)} characters long, more than the "
            f"{MAX_VALUE_CHARS} a request may have; write it as {_EXAMPLE}"
        )
    try:
        data = json.loads(value)
    except RecursionError as exc:
        raise ActionError(
            f"{ACTION_ANNOTATION} nests too deep to read; write it as {_EXAMPLE}"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ActionError(
            f"{ACTION_ANNOTATION} is not valid JSON ({exc}); write it as {_EXAMPLE}"
        ) from exc
    if not isinstance(data, dict):
        raise ActionError(f"{ACTION_ANNOTATION} must be a JSON object, such as {_EXAMPLE}")
    unknown = sorted(set(data) - {"action", "token", "actor", "reason"})
    if unknown:
        raise ActionError(
            f"{ACTION_ANNOTATION} has unknown fields {unknown}; "
            "only action, token, actor and reason are read"
        )
    action = data.get("action")
    choices = ", ".join(sorted(allowed))
    if not isinstance(action, str) or not action:
        raise ActionError(f"{ACTION_ANNOTATION} needs an 'action', one of: {choices}")
    if action not in allowed:
        raise ActionError(
            f"{ACTION_ANNOTATION}: unknown action {action!r} here; use one of: {choices}"
        )
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise ActionError(
            f"{ACTION_ANNOTATION} needs a 'token', a fresh unique string per request (a CI run "
            "id or a UUID), so that the action is carried out once"
        )
    if not _TOKEN.match(token):
        raise ActionError(
            f"{ACTION_ANNOTATION}: token {token!r} must be 1 to 128 characters of letters, "
            "digits, '.', '_', ':' or '-', starting with a letter or digit"
        )
    actor = _text(data, "actor", _MAX_ACTOR, "unknown") or "unknown"
    reason = _text(data, "reason", _MAX_REASON, "")
    return ActionRequest(action=action, token=token, actor=actor, reason=reason)
