"""The Redis ACL rules of the sidecar's least-privilege user, the one source of them.

A sidecar may read the desired states (``pkg:desired:*``) and facts
(``pkg:facts:*``), subscribe to ``pkg_updates``, and write its heartbeats (the
keys ``pkg:hb:*`` and the stream ``pkg:heartbeats``); nothing else. It cannot
``SET`` a desired state (read-only key pattern), ``PUBLISH`` (no such command
granted), run scripts, or touch any other key. The README and the chart's
``redisAcl.sidecarRules`` value carry the same text; a unit test holds them equal.

Refused on purpose: raising the epoch floor (a script writing ``pkg:epoch``). The
operator draws epochs from PostgreSQL, so a sidecar under this user skips it.
"""

from __future__ import annotations

__all__ = ["SIDECAR_ACL_RULES", "sidecar_acl_line"]

SIDECAR_ACL_RULES = (
    "on resetkeys resetchannels %R~pkg:desired:* %R~pkg:facts:* ~pkg:hb:* ~pkg:heartbeats "
    "&pkg_updates -@all +get +mget +set +xadd +subscribe +unsubscribe +ping +select "
    "+client|setname"
)


def sidecar_acl_line(user: str, password: str) -> str:
    """``user NAME >PASSWORD RULES``: a line for an ACL file, or after ``ACL SETUSER``."""
    return f"user {user} {SIDECAR_ACL_RULES} >{password}"
