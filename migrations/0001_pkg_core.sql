-- 0001 PKG core catalog: versioned snapshots and their content (subtask types,
-- native rules with conditions and emissions, compiled artifacts).
--
-- Forward-only. The runner (evaluator_sidecar.db.migrations) wraps this file in
-- one transaction and records its sha256: never edit it once applied anywhere;
-- put changes in a new numbered file.
--
-- Identity columns are bigint GENERATED ALWAYS (the seed said SERIAL/INT): ids
-- never run out and cannot be written by accident.
--
-- ON DELETE policy, used throughout: a snapshot's *content* (this file's child
-- tables) is deleted with it (CASCADE); its *history* (validation runs,
-- promotions, deployments, audit rows, in later files) is RESTRICT, so a
-- snapshot that was ever used can only be archived (archived_at), never lost.

-- squawk-ignore-file prefer-bigint-over-int
-- (32-bit integers here hold list positions, priorities, percentages and step
-- indexes: bounded by what a person writes in a resource, never by row counts.
-- Every id and counter is bigint.)

-- Never queue behind a long lock, never run unbounded: both apply to this
-- file's transaction only.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TYPE pkg_env AS ENUM ('prod', 'staging', 'dev');
CREATE TYPE pkg_engine AS ENUM ('wasm', 'native');
CREATE TYPE pkg_condition_type AS ENUM ('TAG', 'SIGNAL', 'VALUE', 'FACT');
CREATE TYPE pkg_operator AS ENUM ('=', '!=', '>=', '<=', '>', '<', 'IN', 'EXISTS', 'MATCHES');
CREATE TYPE pkg_relation AS ENUM ('EMITS', 'ORDERS', 'GATE');
CREATE TYPE pkg_artifact_type AS ENUM ('rego_bundle', 'wasm_pack');

CREATE TABLE pkg_snapshots (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version text NOT NULL,
    env pkg_env NOT NULL,
    engine pkg_engine NOT NULL,
    -- The content checksum (see /tmp/semantics.md): sha256 of the canonical
    -- JSON of the native content, or of the WASM artifact's bytes.
    checksum text NOT NULL,
    -- sha256 of everything stored for this snapshot (normalized rules, types,
    -- facts, fixtures, data, entrypoint, artifact hash): the idempotency key's
    -- partner. Storing the same uid/version again with an equal content_sha256
    -- is a no-op; with a different one it is a conflict.
    content_sha256 text NOT NULL,
    is_active boolean NOT NULL DEFAULT false,
    -- The PolicySnapshot custom resource that produced this row (metadata.uid,
    -- namespace, name); NULL for snapshots stored by other means.
    uid text,
    resource_namespace text,
    resource_name text,
    entrypoint text,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    notes text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    -- Soft delete: an archived snapshot keeps its rows, history and audit trail.
    archived_at timestamptz,
    CONSTRAINT pkg_snapshots_version_key UNIQUE (version),
    CONSTRAINT pkg_snapshots_uid_key UNIQUE (uid),
    CONSTRAINT pkg_snapshots_version_check CHECK (version <> ''),
    CONSTRAINT pkg_snapshots_checksum_check CHECK (checksum ~ '^[0-9a-f]{64}$'),
    CONSTRAINT pkg_snapshots_content_sha256_check CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    CONSTRAINT pkg_snapshots_data_check CHECK (jsonb_typeof(data) = 'object'),
    CONSTRAINT pkg_snapshots_metadata_check CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT pkg_snapshots_active_not_archived CHECK (NOT (is_active AND archived_at IS NOT NULL))
);

-- The seed's invariant: at most one active snapshot per environment.
CREATE UNIQUE INDEX pkg_snapshots_one_active_per_env ON pkg_snapshots (env) WHERE is_active;
CREATE INDEX pkg_snapshots_env_created ON pkg_snapshots (env, created_at DESC);

COMMENT ON TABLE pkg_snapshots IS 'Versioned policy snapshots (governance root); immutable once stored.';
COMMENT ON COLUMN pkg_snapshots.uid IS 'metadata.uid of the PolicySnapshot custom resource, when it came from one.';
COMMENT ON COLUMN pkg_snapshots.archived_at IS 'Soft delete: set by archive; default reads skip archived snapshots.';

CREATE TABLE pkg_subtask_types (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    snapshot_id bigint NOT NULL REFERENCES pkg_snapshots (id) ON DELETE CASCADE,
    name text NOT NULL,
    default_params jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- false for a type an emission names without the snapshot declaring it in
    -- subtaskTypes: the row exists so the emission can reference it, but the
    -- snapshot read back lists only the declared ones.
    declared boolean NOT NULL DEFAULT true,
    -- Order in the snapshot's subtaskTypes list, so it reads back as written.
    position integer NOT NULL DEFAULT 0,
    CONSTRAINT pkg_subtask_types_snapshot_name_key UNIQUE (snapshot_id, name),
    -- Target of the emissions' composite foreign key (same-snapshot guarantee).
    CONSTRAINT pkg_subtask_types_id_snapshot_key UNIQUE (id, snapshot_id),
    CONSTRAINT pkg_subtask_types_default_params_check CHECK (jsonb_typeof(default_params) = 'object')
);

CREATE TABLE pkg_policy_rules (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    snapshot_id bigint NOT NULL REFERENCES pkg_snapshots (id) ON DELETE CASCADE,
    -- The rule's external id in the evaluator's rule form ("rule-001").
    rule_id text NOT NULL,
    rule_name text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    rule_source text,
    disabled boolean NOT NULL DEFAULT false,
    -- Order in which the rule was written: the snapshot reads back as written.
    position integer NOT NULL DEFAULT 0,
    CONSTRAINT pkg_policy_rules_snapshot_rule_key UNIQUE (snapshot_id, rule_id),
    CONSTRAINT pkg_policy_rules_id_snapshot_key UNIQUE (id, snapshot_id),
    CONSTRAINT pkg_policy_rules_rule_id_check CHECK (rule_id <> ''),
    CONSTRAINT pkg_policy_rules_rule_name_check CHECK (rule_name <> '')
);

CREATE TABLE pkg_rule_conditions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id uuid NOT NULL REFERENCES pkg_policy_rules (id) ON DELETE CASCADE,
    condition_type pkg_condition_type NOT NULL,
    condition_key text NOT NULL,
    operator pkg_operator NOT NULL,
    -- Text on purpose: numbers as their text, lists as JSON text; the engines
    -- accept the typed and the text form alike.
    value text,
    position integer NOT NULL DEFAULT 0
);

CREATE INDEX pkg_rule_conditions_rule_position ON pkg_rule_conditions (rule_id, position);

CREATE TABLE pkg_rule_emissions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id uuid NOT NULL,
    -- Denormalized so that two composite foreign keys can force the rule and
    -- the subtask type into the same snapshot. pkg_check_integrity() still
    -- looks for cross-snapshot emissions: data restored around the keys (or
    -- written with triggers disabled) must not go unnoticed.
    snapshot_id bigint NOT NULL,
    subtask_type_id uuid NOT NULL,
    subtask_name text NOT NULL,
    relationship_type pkg_relation NOT NULL DEFAULT 'EMITS',
    params jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- An emission's own default_params, when the rule form gave one; NULL means
    -- "those of its subtask type".
    default_params jsonb,
    position integer NOT NULL DEFAULT 0,
    CONSTRAINT pkg_rule_emissions_rule_fkey FOREIGN KEY (rule_id, snapshot_id)
        REFERENCES pkg_policy_rules (id, snapshot_id) ON DELETE CASCADE,
    CONSTRAINT pkg_rule_emissions_subtask_type_fkey FOREIGN KEY (subtask_type_id, snapshot_id)
        REFERENCES pkg_subtask_types (id, snapshot_id) ON DELETE CASCADE,
    CONSTRAINT pkg_rule_emissions_params_check CHECK (jsonb_typeof(params) = 'object'),
    CONSTRAINT pkg_rule_emissions_default_params_check
        CHECK (default_params IS NULL OR jsonb_typeof(default_params) = 'object')
);

CREATE INDEX pkg_rule_emissions_rule_position ON pkg_rule_emissions (rule_id, position);
CREATE INDEX pkg_rule_emissions_subtask_type ON pkg_rule_emissions (subtask_type_id, snapshot_id);

CREATE TABLE pkg_snapshot_artifacts (
    snapshot_id bigint NOT NULL REFERENCES pkg_snapshots (id) ON DELETE CASCADE,
    artifact_type pkg_artifact_type NOT NULL,
    artifact_bytes bytea NOT NULL,
    sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pkg_snapshot_artifacts_pkey PRIMARY KEY (snapshot_id, artifact_type),
    CONSTRAINT pkg_snapshot_artifacts_sha256_check CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    -- The stored hash must be the bytes' hash: a corrupted upload never lands.
    CONSTRAINT pkg_snapshot_artifacts_sha256_matches
        CHECK (sha256 = encode(sha256(artifact_bytes), 'hex'))
);
