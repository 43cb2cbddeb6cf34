-- 0009 PKG rollout safety: exact step health from cumulative device counters,
-- step baselines, and the shadow step's example diffs.
--
-- pkg_device_versions keeps each device's LATEST heartbeat window: a burst of
-- errors between two folds of the operator could be overwritten by a quiet
-- window and never judged. Sidecars now also report monotonically increasing
-- totals per process (with an id and start time of the process);
-- pkg_device_counters keeps them per device, carrying the totals of earlier
-- processes forward when a sidecar restarts (the current process's totals plus
-- the carried ones only ever grow). When a rollout step starts the operator
-- copies the totals of its target's devices into pkg_step_baselines; the step's
-- health is the totals now minus the baseline (a device without a baseline row
-- appeared after the step began and counts from zero).
--
-- pkg_shadow_diffs keeps example decisions that a shadow step's candidate made
-- differently from the active snapshot (input, both outputs), a bounded number
-- per deployment step, for people to read (`pkg diff` or SQL).

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE pkg_device_counters (
    -- Keyed like pkg_device_versions (0006): one device name may live in two environments.
    environment text NOT NULL,
    device_id text NOT NULL,
    process_id text NOT NULL,
    process_started timestamptz NOT NULL,
    -- Totals of the current process, as its latest heartbeat reported them.
    requests bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    errors bigint NOT NULL DEFAULT 0 CHECK (errors >= 0),
    activation_failures bigint NOT NULL DEFAULT 0 CHECK (activation_failures >= 0),
    shadow_samples bigint NOT NULL DEFAULT 0 CHECK (shadow_samples >= 0),
    shadow_diffs bigint NOT NULL DEFAULT 0 CHECK (shadow_diffs >= 0),
    -- Sums of the final totals of the device's earlier processes.
    carried_requests bigint NOT NULL DEFAULT 0,
    carried_errors bigint NOT NULL DEFAULT 0,
    carried_activation_failures bigint NOT NULL DEFAULT 0,
    carried_shadow_samples bigint NOT NULL DEFAULT 0,
    carried_shadow_diffs bigint NOT NULL DEFAULT 0,
    restarts bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment, device_id)
);

CREATE VIEW pkg_device_totals AS
SELECT environment,
       device_id,
       process_id,
       restarts,
       requests + carried_requests AS requests,
       errors + carried_errors AS errors,
       activation_failures + carried_activation_failures AS activation_failures,
       shadow_samples + carried_shadow_samples AS shadow_samples,
       shadow_diffs + carried_shadow_diffs AS shadow_diffs,
       updated_at
  FROM pkg_device_counters;

-- One row per step start of a deployment: the baseline was captured.
CREATE TABLE pkg_step_baseline_marks (
    deployment_uid text NOT NULL,
    step_started_at timestamptz NOT NULL,
    target text NOT NULL,
    captured_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_uid, step_started_at)
);

CREATE TABLE pkg_step_baselines (
    deployment_uid text NOT NULL,
    step_started_at timestamptz NOT NULL,
    device_id text NOT NULL,
    requests bigint NOT NULL,
    errors bigint NOT NULL,
    activation_failures bigint NOT NULL,
    shadow_samples bigint NOT NULL,
    shadow_diffs bigint NOT NULL,
    PRIMARY KEY (deployment_uid, step_started_at, device_id),
    FOREIGN KEY (deployment_uid, step_started_at)
        REFERENCES pkg_step_baseline_marks (deployment_uid, step_started_at) ON DELETE CASCADE
);

CREATE TABLE pkg_shadow_diffs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_uid text NOT NULL,
    deployment_name text NOT NULL,
    step_started_at timestamptz NOT NULL,
    device_id text NOT NULL,
    active_version text,
    candidate_version text NOT NULL,
    -- Which parts differ, comma-separated: subtasks, dag, rules.
    differs text NOT NULL,
    input jsonb NOT NULL,
    active_output jsonb NOT NULL,
    candidate_output jsonb NOT NULL,
    observed_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- One example is stored once however often heartbeats repeat it.
    fingerprint text NOT NULL,
    UNIQUE (deployment_uid, step_started_at, device_id, fingerprint)
);

CREATE INDEX pkg_shadow_diffs_by_candidate ON pkg_shadow_diffs (candidate_version, recorded_at);
