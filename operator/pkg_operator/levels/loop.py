"""When the level reconciler runs: at start, every ``PKG_LEVEL_RESYNC_SECONDS``, and
after a NOTIFY ``pkg_promotions`` (any promotion or rollback row, however made), once
``NOTIFY_GRACE_SECONDS`` have let the operator's own promotion write its level, or
at once after a NOTIFY ``pkg_facts`` (an environment's facts changed). Each pass
also writes the facts levels (:mod:`pkg_operator.levels.facts`).

It is a task spawned by the startup handler, like the heartbeat folder, not a
kopf daemon or a per-object timer: the environments' levels belong to no single
object, and a pass must run even when a promotion was made in SQL alone. Only
the replica that works may write, and kopf does not tell a startup task whether
peering paused this replica, so the task acts while an *activity lease* holds:
kopf runs resource handlers only on the working replica, and the PolicySnapshot
and PolicyDeployment timers renew the lease (:meth:`LevelReconciler.renew`) each
time they fire. A paused replica's lease runs out after three resync intervals;
its task then listens and waits, writing nothing. ``PKG_STANDALONE=true`` (one
replica, no peering) is always active.

The NOTIFY comes on a dedicated PostgreSQL connection (asyncpg's
``add_listener``), reconnected with back-off; each (re)connection triggers a pass,
since a promotion may have happened while it was away. The periodic pass covers
a NOTIFY lost anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from typing import Any

import asyncpg
import kopf

from evaluator_sidecar.policy.model import ENVS
from evaluator_sidecar.signals import backoff_delay
from evaluator_sidecar.store.levels import PROMOTIONS_CHANNEL
from evaluator_sidecar.store.pool import resolve_dsn
from evaluator_sidecar.store.temporal_facts import FACTS_CHANNEL
from pkg_operator.context import OperatorContext
from pkg_operator.levels.facts import reconcile_facts
from pkg_operator.levels.reconcile import reconcile_environments
from pkg_operator.levels.unowned import remove_unowned

__all__ = ["LevelReconciler", "start"]

log = logging.getLogger(__name__)

_LEASE_INTERVALS = 3.0
#: A promotion made by the operator commits its row (the NOTIFY) and then writes the
#: level itself; a pass at once would race it and "repair" what is about to be
#: written. Promotions made elsewhere wait this long for their level.
NOTIFY_GRACE_SECONDS = 1.0
_LISTEN_CHECK_SECONDS = 5.0


class LevelReconciler:
    def __init__(self, ctx: OperatorContext) -> None:
        self.ctx = ctx
        self.interval = ctx.settings.level_resync_seconds
        self._wake = asyncio.Event()
        self._why = "start"
        self._lease_until = 0.0
        self._kopf_context: contextvars.Context | None = None

    @property
    def active(self) -> bool:
        return self.ctx.settings.standalone or time.monotonic() < self._lease_until

    def renew(self) -> None:
        """This replica works (a kopf resource handler ran): act for three more intervals."""
        was_active = self.active
        # kopf's context (its event queue), so that this task can post events.
        self._kopf_context = contextvars.copy_context()
        self._lease_until = time.monotonic() + _LEASE_INTERVALS * self.interval
        if not was_active:
            self.kick("became active")

    def kick(self, why: str) -> None:
        """Run a pass now (coalesced with one that is already due)."""
        self._why = why
        self._wake.set()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        asyncio.get_running_loop().call_later(NOTIFY_GRACE_SECONDS, self.kick, f"notify {payload}")

    def _on_facts_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        # Only this reconciler writes facts levels: nothing to wait for.
        self.kick(f"facts {payload}")

    def _post_event(self, body: Any, type_: str, reason: str, message: str) -> None:
        if self._kopf_context is None:
            log.info("no kopf context yet; event %s not posted: %s", reason, message)
            return
        self._kopf_context.run(kopf.event, body, type=type_, reason=reason, message=message)

    async def pass_once(self, trigger: str) -> None:
        await self._facts_pass(trigger)
        started = time.monotonic()
        repairs = await reconcile_environments(
            self.ctx, ENVS, trigger=trigger, post_event=self._post_event
        )
        removed = await remove_unowned(self.ctx, trigger=trigger, post_event=self._post_event)
        if repairs or removed:
            log.info(
                "level pass (%s) rewrote %d level(s) and removed %d unowned one(s) in %.3fs",
                trigger,
                len(repairs),
                len(removed),
                time.monotonic() - started,
            )

    async def _facts_pass(self, trigger: str) -> None:
        """The facts levels, on their own: a failure there must not hold up the desired states."""
        try:
            await reconcile_facts(self.ctx, ENVS, trigger=trigger)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - PostgreSQL or Redis away: the next pass retries
            log.warning(
                "facts level pass (%s) failed; retrying at the next pass: %s",
                trigger,
                str(exc) or type(exc).__name__,
            )

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen_forever(), name="pkg-levels-listener")
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
                why = self._why if self._wake.is_set() else "timer"
                self._wake.clear()
                self._why = "timer"
                if not self.active:
                    continue
                try:
                    await self.pass_once(why)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - PostgreSQL or Redis away: the next pass retries
                    log.warning(
                        "level pass (%s) failed; retrying in %.0fs: %s",
                        why,
                        self.interval,
                        str(exc) or type(exc).__name__,
                    )
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener

    async def _listen_forever(self) -> None:
        failures = 0
        dsn = resolve_dsn(self.ctx.settings.database_url)
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
                await conn.add_listener(PROMOTIONS_CHANNEL, self._on_notify)
                await conn.add_listener(FACTS_CHANNEL, self._on_facts_notify)
                failures = 0
                self.kick("listening")  # a promotion may have come while nobody listened
                while not conn.is_closed():
                    await asyncio.sleep(_LISTEN_CHECK_SECONDS)
                    await conn.fetchval("SELECT 1", timeout=_LISTEN_CHECK_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any loss of the connection: reconnect
                failures += 1
                delay = backoff_delay(failures, base=0.5, cap=30.0)
                log.warning(
                    "LISTEN %s lost (%s); reconnecting in %.1fs",
                    PROMOTIONS_CHANNEL,
                    str(exc) or type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "the level reconciler stopped: Redis is no longer repaired until the operator restarts",
            exc_info=task.exception(),
        )


def start(ctx: OperatorContext) -> tuple[LevelReconciler, asyncio.Task[None]]:
    reconciler = LevelReconciler(ctx)
    task = asyncio.create_task(reconciler.run(), name="pkg-levels")
    task.add_done_callback(_report_end)
    return reconciler, task
