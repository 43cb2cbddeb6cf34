-- 0006 PKG device environments and coverage that agrees with the operator.
--
-- pkg_device_versions was keyed by device id alone and had no environment, so
-- two environments that use the same target, region and device names were
-- counted together (and overwrote each other's rows). It gains the column
-- `environment` and is keyed by (environment, device_id).
--
-- pkg_deployment_coverage counted devices of any heartbeat age and ignored the
-- canary percent and cohorts. It is rewritten to count what the operator counts
-- in a PolicyDeployment's status.coverage (pkg_operator.rollout.coverage):
-- only live devices (last heartbeat within the deployment's TTL: the new column
-- pkg_deployments.heartbeat_ttl_seconds, which the operator fills from
-- spec.coverage.heartbeatTTLSeconds; 30 seconds when NULL, that field's
-- default), of the deployment's
-- environment, target and region (exactly: a sidecar follows the level of its
-- own region), running what their cohort should run: the deployment's snapshot
-- inside the canary cohort, the environment's active snapshot outside it.
-- The cohort is evaluator_sidecar.signals.cohorts.bucket, computed in SQL.

-- squawk-ignore-file adding-not-nullable-field, constraint-missing-not-valid, adding-serial-primary-key-field, ban-drop-constraint, require-concurrent-index-creation, require-concurrent-index-deletion
-- (pkg_device_versions holds one row per device, telemetry rewritten by every
-- heartbeat: the brief ACCESS EXCLUSIVE lock to re-key it is what the heartbeat
-- folder waits for anyway, and CONCURRENTLY cannot run inside the migration's
-- transaction. The dropped primary key is replaced at once by a wider one.)
-- squawk-ignore-file prefer-bigint-over-int
-- (heartbeat_ttl_seconds is a number of seconds a person writes in a resource,
-- bounded like the other integers of pkg_deployments.)
-- squawk-ignore-file ban-drop-view, ban-drop-function
-- (the view's and function's columns change, which CREATE OR REPLACE cannot do;
-- the only readers are this project's, changed with it, and the new columns
-- keep every old column's name.)

-- Never queue behind a long lock, never run unbounded: both apply to this
-- file's transaction only.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

ALTER TABLE pkg_device_versions ADD COLUMN environment text;

-- A device's environment is its snapshot's (snapshot versions are unique across
-- environments). A device that reported no stored snapshot cannot be placed:
-- it is kept as 'unknown', which no deployment counts, until its next
-- heartbeat (which names its environment) writes a row of its own.
UPDATE pkg_device_versions dv
   SET environment = s.env::text
  FROM pkg_snapshots s
 WHERE s.id = dv.snapshot_id;

UPDATE pkg_device_versions dv
   SET environment = s.env::text
  FROM pkg_snapshots s
 WHERE dv.environment IS NULL
   AND s.version = dv.version;

UPDATE pkg_device_versions SET environment = 'unknown' WHERE environment IS NULL;

ALTER TABLE pkg_device_versions ALTER COLUMN environment SET NOT NULL;
ALTER TABLE pkg_device_versions
    ADD CONSTRAINT pkg_device_versions_environment_check CHECK (environment <> '');

ALTER TABLE pkg_device_versions DROP CONSTRAINT pkg_device_versions_pkey;
ALTER TABLE pkg_device_versions
    ADD CONSTRAINT pkg_device_versions_pkey PRIMARY KEY (environment, device_id);

DROP INDEX pkg_device_versions_target_region;
CREATE INDEX pkg_device_versions_env_target_region
    ON pkg_device_versions (environment, target, region, last_seen);

COMMENT ON COLUMN pkg_device_versions.environment IS
    'The environment the device reports (pkg_env text); ''unknown'' for rows that could not be placed.';

ALTER TABLE pkg_deployments ADD COLUMN heartbeat_ttl_seconds integer;
ALTER TABLE pkg_deployments
    ADD CONSTRAINT pkg_deployments_heartbeat_ttl_check
        CHECK (heartbeat_ttl_seconds IS NULL OR heartbeat_ttl_seconds > 0);

COMMENT ON COLUMN pkg_deployments.heartbeat_ttl_seconds IS
    'How recent a heartbeat must be for a device to count as live (spec.coverage.heartbeatTTLSeconds); NULL: 30.';

-- The device's canary bucket in [0, 100) for one deployment: sha256 of the
-- deployment uid, a NUL byte and the device id (UTF-8), its first 8 bytes as a
-- big-endian unsigned integer, the top 53 bits of it over 2^53, times 100.
-- Exactly evaluator_sidecar.signals.cohorts.bucket (float8 is an IEEE double).
CREATE FUNCTION pkg_cohort_bucket(p_deployment text, p_device text)
RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT ((('x' || substr(encode(sha256(convert_to(p_deployment, 'UTF8')
                                              || '\x00'::bytea
                                              || convert_to(p_device, 'UTF8')), 'hex'),
                                1, 16))::bit(64) >> 11)::bigint)::double precision
               / 9007199254740992::double precision * 100::double precision
    $$;

-- Whether the device is in the deployment's canary cohort at p_percent
-- (evaluator_sidecar.signals.cohorts.in_canary: 0 selects none, 100 all).
CREATE FUNCTION pkg_in_canary(p_deployment text, p_device text, p_percent double precision)
RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT p_percent > 0 AND pkg_cohort_bucket(p_deployment, p_device) < p_percent
    $$;

DROP VIEW pkg_deployment_coverage;
DROP FUNCTION pkg_deployment_coverage_within(interval);

-- Coverage of each active deployment, as the operator counts it. A device is
-- live when its last heartbeat is within p_ttl, or (p_ttl NULL, the default)
-- within the deployment's own heartbeat_ttl_seconds, 30 when NULL. Columns:
--   devices_total                live devices of the deployment's environment, target, region
--   devices_on_snapshot          of them, those running the deployment's snapshot
--   devices_expected_on_snapshot of them, those in the canary cohort at `percent`
--   devices_on_intended          of them, those running what their cohort should run
--   devices_stale                devices of the same place silent for 1 to 10 TTLs (the
--                                operator looks no further back)
-- Rows written by hand without a deployment_uid salt the cohort with the row id.
CREATE FUNCTION pkg_deployment_coverage_within(p_ttl interval DEFAULT NULL)
RETURNS TABLE (deployment_id bigint, deployment_name text, deployment_uid text,
               environment text, target text, region text, snapshot_id bigint,
               snapshot_version text, stable_version text, percent integer, step integer,
               devices_on_snapshot bigint, devices_expected_on_snapshot bigint,
               devices_on_intended bigint, devices_total bigint, devices_stale bigint,
               last_seen timestamptz)
    LANGUAGE sql STABLE
    AS $$
        WITH deployments AS (
            SELECT d.*, coalesce(p_ttl, make_interval(secs => coalesce(d.heartbeat_ttl_seconds,
                                                                       30))) AS ttl
              FROM pkg_deployments d
             WHERE d.is_active
        ),
        placed AS (
            SELECT d.id, d.deployment_name, d.deployment_uid, s.env::text AS environment,
                   d.target, d.region, d.snapshot_id, s.version, st.version AS stable_version,
                   d.percent, d.step, dv.device_id, dv.version AS device_version,
                   dv.last_seen,
                   dv.last_seen >= now() - d.ttl AS live,
                   dv.last_seen >= now() - 10 * d.ttl AS recent,
                   pkg_in_canary(coalesce(d.deployment_uid, d.id::text), dv.device_id,
                                 d.percent) AS in_cohort
              FROM deployments d
              JOIN pkg_snapshots s ON s.id = d.snapshot_id
              LEFT JOIN pkg_snapshots st ON st.env = s.env AND st.is_active
              LEFT JOIN pkg_device_versions dv
                ON dv.environment = s.env::text
               AND dv.target = d.target
               AND dv.region = d.region
        )
        SELECT id, deployment_name, deployment_uid, environment, target, region, snapshot_id,
               version, stable_version, percent, step,
               count(device_id) FILTER (WHERE live AND device_version = version),
               count(device_id) FILTER (WHERE live AND in_cohort),
               count(device_id) FILTER (
                   WHERE live AND device_version = CASE WHEN in_cohort THEN version
                                                        ELSE stable_version END),
               count(device_id) FILTER (WHERE live),
               count(device_id) FILTER (WHERE NOT live AND recent),
               max(last_seen) FILTER (WHERE live)
          FROM placed
         GROUP BY id, deployment_name, deployment_uid, environment, target, region,
                  snapshot_id, version, stable_version, percent, step
    $$;

CREATE VIEW pkg_deployment_coverage AS
SELECT deployment_id, deployment_name, deployment_uid, environment, target, region,
       snapshot_id, snapshot_version, stable_version, percent, step, devices_on_snapshot,
       devices_expected_on_snapshot, devices_on_intended, devices_total, devices_stale,
       last_seen
  FROM pkg_deployment_coverage_within();

COMMENT ON VIEW pkg_deployment_coverage IS 'Per active deployment, live devices (heartbeat within its heartbeat_ttl_seconds, 30 s by default) of its environment, target and region, and how many run what their canary cohort should; agrees with the PolicyDeployment''s status.coverage. pkg_deployment_coverage_within(ttl) takes one TTL for all.';
