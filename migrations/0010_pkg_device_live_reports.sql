-- 0010 PKG device live reports: what a rollout tick read from every live heartbeat
-- key in Redis, kept with the device's latest heartbeat instead.
--
-- Each rollout tick (every 2 s per PolicyDeployment) needed each device's last
-- activation error, whether it reports itself past its maximum staleness, and the
-- version it holds prepared (two-phase activation). Those lived only in the
-- heartbeat keys, so every tick SCANned and parsed every heartbeat key of the
-- environment: at 10,000 devices that was most of the operator's CPU
-- (BENCHMARKS.md, "Coverage at scale"). The operator's heartbeat folder now
-- writes them with the rest of the latest heartbeat, in the same batched
-- statement, and a tick reads them with the device rows it reads anyway.
-- NULL: not reported (rows written before this migration, or by older callers).

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

ALTER TABLE pkg_device_versions
    ADD COLUMN last_error text,
    ADD COLUMN policy_stale boolean,
    ADD COLUMN prepared_version text;

COMMENT ON COLUMN pkg_device_versions.last_error IS
    'The device''s last activation error as its latest heartbeat reported it (NULL: none).';
COMMENT ON COLUMN pkg_device_versions.policy_stale IS
    'The latest heartbeat said the device is past its maximum staleness (it cannot confirm what it should run).';
COMMENT ON COLUMN pkg_device_versions.prepared_version IS
    'The version the device held prepared (two-phase activation) at its latest heartbeat.';
