-- 0002 PKG operations: rollouts, temporal facts, validation, promotions and
-- device telemetry.
--
-- History tables reference pkg_snapshots with ON DELETE RESTRICT: a snapshot
-- that was deployed, validated or promoted can be archived, never deleted, so
-- its history survives. Telemetry (pkg_device_versions) uses SET NULL: a
-- device row describes the device, and keeps the version text it reported.

-- squawk-ignore-file prefer-bigint-over-int
-- (32-bit integers here hold list positions, priorities, percentages and step
-- indexes: bounded by what a person writes in a resource, never by row counts.
-- Every id and counter is bigint.)

-- Never queue behind a long lock, never run unbounded: both apply to this
-- file's transaction only.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE pkg_deployments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id bigint NOT NULL REFERENCES pkg_snapshots (id) ON DELETE RESTRICT,
    -- The PolicyDeployment custom resource behind the row (NULL for rows
    -- written by hand, as in the seed).
    deployment_name text,
    deployment_uid text,
    target text NOT NULL,
    region text NOT NULL DEFAULT 'global',
    percent integer NOT NULL DEFAULT 0,
    is_active boolean NOT NULL DEFAULT true,
    -- Index of the canary step that set `percent` (NULL outside a rollout).
    step integer,
    activated_by text,
    -- The key of the last request that changed the row; every key ever used is
    -- kept (unique) in pkg_audit_log.idempotency_key.
    last_idempotency_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pkg_deployments_percent_check CHECK (percent BETWEEN 0 AND 100),
    CONSTRAINT pkg_deployments_target_check CHECK (target <> ''),
    CONSTRAINT pkg_deployments_region_check CHECK (region <> ''),
    CONSTRAINT pkg_deployments_step_check CHECK (step IS NULL OR step >= 0)
);

-- One row per (deployment, target, region, snapshot): a rollout step updates
-- it in place. coalesce() makes hand-written rows without a uid collide too.
CREATE UNIQUE INDEX pkg_deployments_identity
    ON pkg_deployments ((coalesce(deployment_uid, '')), target, region, snapshot_id);
CREATE INDEX pkg_deployments_target_region ON pkg_deployments (target, region) WHERE is_active;
CREATE INDEX pkg_deployments_snapshot ON pkg_deployments (snapshot_id);

COMMENT ON TABLE pkg_deployments IS 'Canary deployments and targeted rollouts: one row per deployment, target, region and snapshot.';

CREATE TABLE pkg_facts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL: a global fact (create_temporal_fact); otherwise part of a
    -- snapshot's own fact store, deleted with the snapshot's content.
    snapshot_id bigint REFERENCES pkg_snapshots (id) ON DELETE CASCADE,
    subject text NOT NULL,
    predicate text NOT NULL,
    object jsonb NOT NULL,
    -- A missing bound is open: valid when valid_from <= now < valid_to.
    valid_from timestamptz,
    valid_to timestamptz,
    -- Order within the snapshot's fact list, so it reads back as written.
    position integer NOT NULL DEFAULT 0,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pkg_facts_window_check
        CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_to > valid_from),
    CONSTRAINT pkg_facts_subject_check CHECK (subject <> ''),
    CONSTRAINT pkg_facts_predicate_check CHECK (predicate <> '')
);

CREATE INDEX pkg_facts_subject_predicate ON pkg_facts (subject, predicate);
CREATE INDEX pkg_facts_predicate ON pkg_facts (predicate);
CREATE INDEX pkg_facts_snapshot ON pkg_facts (snapshot_id, position);
CREATE INDEX pkg_facts_valid_to ON pkg_facts (valid_to) WHERE valid_to IS NOT NULL;

COMMENT ON TABLE pkg_facts IS 'Temporal facts (subject, predicate, object) valid in [valid_from, valid_to).';

CREATE TABLE pkg_validation_fixtures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id bigint NOT NULL REFERENCES pkg_snapshots (id) ON DELETE CASCADE,
    name text NOT NULL,
    input jsonb NOT NULL DEFAULT '{}'::jsonb,
    expect jsonb NOT NULL DEFAULT '{}'::jsonb,
    position integer NOT NULL DEFAULT 0,
    CONSTRAINT pkg_validation_fixtures_snapshot_name_key UNIQUE (snapshot_id, name),
    CONSTRAINT pkg_validation_fixtures_name_check CHECK (name <> ''),
    CONSTRAINT pkg_validation_fixtures_input_check CHECK (jsonb_typeof(input) = 'object'),
    CONSTRAINT pkg_validation_fixtures_expect_check CHECK (jsonb_typeof(expect) = 'object')
);

CREATE TABLE pkg_validation_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id bigint NOT NULL REFERENCES pkg_snapshots (id) ON DELETE RESTRICT,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- NULL while the run is in progress.
    success boolean,
    report jsonb,
    actor text,
    CONSTRAINT pkg_validation_runs_finished_check
        CHECK ((finished_at IS NULL) = (success IS NULL)),
    CONSTRAINT pkg_validation_runs_order_check
        CHECK (finished_at IS NULL OR finished_at >= started_at)
);

-- "The latest run of a snapshot" is what promotion checks.
CREATE INDEX pkg_validation_runs_snapshot_latest
    ON pkg_validation_runs (snapshot_id, started_at DESC, id DESC);

CREATE TABLE pkg_promotions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot_id bigint NOT NULL REFERENCES pkg_snapshots (id) ON DELETE RESTRICT,
    env pkg_env NOT NULL,
    from_version text,
    to_version text NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    reason text,
    metrics jsonb NOT NULL DEFAULT '{}'::jsonb,
    success boolean NOT NULL DEFAULT true,
    -- A restarted operator retries with the same key and gets the first row back.
    idempotency_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pkg_promotions_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT pkg_promotions_action_check CHECK (action IN ('promote', 'rollback')),
    CONSTRAINT pkg_promotions_actor_check CHECK (actor <> ''),
    CONSTRAINT pkg_promotions_metrics_check CHECK (jsonb_typeof(metrics) = 'object')
);

-- History reads newest first by id: ids follow the order promotions happened in
-- (pkg_promote_snapshot serializes each environment).
CREATE INDEX pkg_promotions_snapshot ON pkg_promotions (snapshot_id, id);
CREATE INDEX pkg_promotions_env ON pkg_promotions (env, id);

CREATE TABLE pkg_device_versions (
    device_id text PRIMARY KEY,
    device_type text NOT NULL,
    region text NOT NULL DEFAULT 'global',
    -- The rollout target the device belongs to ('router', 'edge:door');
    -- heartbeats without one use device_type.
    target text NOT NULL,
    snapshot_id bigint REFERENCES pkg_snapshots (id) ON DELETE SET NULL,
    version text,
    -- As the device last reported them; NULL until it reports one. A heartbeat
    -- without a value keeps the previous one.
    evaluations bigint,
    errors bigint,
    p99_latency_ms double precision,
    activation_failures bigint,
    last_seen timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pkg_device_versions_device_id_check CHECK (device_id <> ''),
    CONSTRAINT pkg_device_versions_counters_check
        CHECK (evaluations >= 0 AND errors >= 0 AND activation_failures >= 0),
    CONSTRAINT pkg_device_versions_p99_check CHECK (p99_latency_ms IS NULL OR p99_latency_ms >= 0)
);

CREATE INDEX pkg_device_versions_target_region ON pkg_device_versions (target, region, last_seen);
CREATE INDEX pkg_device_versions_snapshot ON pkg_device_versions (snapshot_id);

COMMENT ON TABLE pkg_device_versions IS 'Latest heartbeat per device: what it runs and how it fares.';
