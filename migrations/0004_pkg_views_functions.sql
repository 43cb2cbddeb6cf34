-- 0004 PKG views and functions: the active artifact, rules flattened for
-- audits, deployment coverage, integrity checks, and the promotion, rollback
-- and archive paths.
--
-- Errors a caller can cause carry SQLSTATEs of their own (class PK), which
-- evaluator_sidecar.db.errors maps to typed exceptions:
--   PKG01 snapshot not found            PKG05 nothing to roll back to
--   PKG02 snapshot archived             PKG06 idempotency key reused for another request
--   PKG03 latest validation not passed  PKG07 snapshot in use (active or deployed)
--   PKG04 snapshot of another env       PKG09 audit history is append-only (0003)
-- Every RAISE carries a HINT that says what to do.

-- Never queue behind a long lock, never run unbounded: both apply to this
-- file's transaction only.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE VIEW pkg_active_artifact AS
SELECT s.env,
       s.id AS snapshot_id,
       s.version,
       s.engine,
       s.checksum,
       a.artifact_type,
       octet_length(a.artifact_bytes) AS size_bytes,
       a.sha256,
       a.created_at
  FROM pkg_snapshots s
  JOIN pkg_snapshot_artifacts a ON a.snapshot_id = s.id
 WHERE s.is_active;

COMMENT ON VIEW pkg_active_artifact IS 'The compiled artifact of the active snapshot of each environment (bytes left out).';

-- One row per rule and emission (rules without emissions appear once with
-- NULL emission columns). subtask_type_snapshot_id differing from snapshot_id
-- is exactly what pkg_check_integrity() calls a cross-snapshot emission.
CREATE VIEW pkg_rules_expanded AS
SELECT s.id AS snapshot_id,
       s.version,
       s.env,
       s.is_active,
       r.id AS rule_uuid,
       r.rule_id,
       r.rule_name,
       r.priority,
       r.disabled,
       r.position AS rule_position,
       (SELECT count(*) FROM pkg_rule_conditions c WHERE c.rule_id = r.id) AS condition_count,
       e.id AS emission_id,
       e.position AS emission_position,
       e.relationship_type,
       st.name AS subtask_type,
       e.subtask_name,
       e.params,
       coalesce(e.default_params, st.default_params) AS default_params,
       st.snapshot_id AS subtask_type_snapshot_id
  FROM pkg_policy_rules r
  JOIN pkg_snapshots s ON s.id = r.snapshot_id
  LEFT JOIN pkg_rule_emissions e ON e.rule_id = r.id
  LEFT JOIN pkg_subtask_types st ON st.id = e.subtask_type_id;

COMMENT ON VIEW pkg_rules_expanded IS 'Rules with their emissions flattened, for audits.';

-- Coverage of each active deployment: devices of its target (in its region;
-- region 'global' spans all regions) and how many of them run its snapshot.
-- p_ttl counts only devices seen within that interval; NULL counts all.
CREATE FUNCTION pkg_deployment_coverage_within(p_ttl interval DEFAULT NULL)
RETURNS TABLE (deployment_id bigint, deployment_name text, deployment_uid text, target text,
               region text, snapshot_id bigint, snapshot_version text, percent integer,
               step integer, devices_on_snapshot bigint, devices_total bigint,
               last_seen timestamptz)
    LANGUAGE sql STABLE
    AS $$
        SELECT d.id, d.deployment_name, d.deployment_uid, d.target, d.region, d.snapshot_id,
               s.version, d.percent, d.step,
               count(dv.device_id) FILTER (WHERE dv.snapshot_id = d.snapshot_id),
               count(dv.device_id),
               max(dv.last_seen)
          FROM pkg_deployments d
          JOIN pkg_snapshots s ON s.id = d.snapshot_id
          LEFT JOIN pkg_device_versions dv
            ON dv.target = d.target
           AND (d.region = 'global' OR dv.region = d.region)
           AND (p_ttl IS NULL OR dv.last_seen >= now() - p_ttl)
         WHERE d.is_active
         GROUP BY d.id, s.version
    $$;

CREATE VIEW pkg_deployment_coverage AS
SELECT deployment_id, deployment_name, deployment_uid, target, region, snapshot_id,
       snapshot_version, percent, step, devices_on_snapshot, devices_total, last_seen
  FROM pkg_deployment_coverage_within(NULL);

COMMENT ON VIEW pkg_deployment_coverage IS 'Devices on the intended snapshot vs devices in total, per active deployment; pkg_deployment_coverage_within(ttl) counts only recently seen devices.';

CREATE FUNCTION pkg_active_snapshot_id(p_env pkg_env) RETURNS bigint
    LANGUAGE sql STABLE
    AS $$
        SELECT id FROM pkg_snapshots WHERE env = p_env AND is_active
    $$;

-- Consistency checks the keys cannot express (or that data restored around
-- them could break). One row per problem; no rows means consistent.
CREATE FUNCTION pkg_check_integrity()
RETURNS TABLE (check_name text, snapshot_id bigint, object_id text, detail text)
    LANGUAGE sql STABLE
    AS $$
        SELECT 'emission_cross_snapshot', r.snapshot_id, e.id::text,
               format('rule %s of snapshot %s emits subtask type %s of snapshot %s',
                      r.rule_id, r.snapshot_id, st.name, st.snapshot_id)
          FROM pkg_rule_emissions e
          JOIN pkg_policy_rules r ON r.id = e.rule_id
          JOIN pkg_subtask_types st ON st.id = e.subtask_type_id
         WHERE r.snapshot_id <> st.snapshot_id
        UNION ALL
        SELECT 'emission_snapshot_mismatch', e.snapshot_id, e.id::text,
               format('emission %s says snapshot %s but its rule %s belongs to snapshot %s',
                      e.id, e.snapshot_id, r.rule_id, r.snapshot_id)
          FROM pkg_rule_emissions e
          JOIN pkg_policy_rules r ON r.id = e.rule_id
         WHERE e.snapshot_id <> r.snapshot_id
        UNION ALL
        SELECT 'wasm_without_artifact', s.id, s.version,
               format('wasm snapshot %s has no wasm_pack artifact', s.version)
          FROM pkg_snapshots s
         WHERE s.engine = 'wasm'
           AND NOT EXISTS (SELECT 1 FROM pkg_snapshot_artifacts a
                            WHERE a.snapshot_id = s.id AND a.artifact_type = 'wasm_pack')
        UNION ALL
        SELECT 'artifact_sha256_mismatch', a.snapshot_id, a.artifact_type::text,
               format('artifact %s of snapshot %s hashes to %s, stored sha256 is %s',
                      a.artifact_type, a.snapshot_id, encode(sha256(a.artifact_bytes), 'hex'),
                      a.sha256)
          FROM pkg_snapshot_artifacts a
         WHERE a.sha256 <> encode(sha256(a.artifact_bytes), 'hex')
        UNION ALL
        SELECT 'wasm_checksum_mismatch', s.id, s.version,
               format('wasm snapshot %s has checksum %s but its artifact sha256 is %s',
                      s.version, s.checksum, a.sha256)
          FROM pkg_snapshots s
          JOIN pkg_snapshot_artifacts a ON a.snapshot_id = s.id AND a.artifact_type = 'wasm_pack'
         WHERE s.engine = 'wasm' AND s.checksum <> a.sha256
        UNION ALL
        SELECT 'multiple_active', NULL::bigint, s.env::text,
               format('environment %s has %s active snapshots', s.env, count(*))
          FROM pkg_snapshots s
         WHERE s.is_active
         GROUP BY s.env
        HAVING count(*) > 1
        UNION ALL
        SELECT 'active_deployment_of_archived_snapshot', d.snapshot_id, d.id::text,
               format('deployment %s (%s/%s) is active but snapshot %s is archived',
                      d.id, d.target, d.region, d.snapshot_id)
          FROM pkg_deployments d
          JOIN pkg_snapshots s ON s.id = d.snapshot_id
         WHERE d.is_active AND s.archived_at IS NOT NULL
    $$;

-- Activates p_snapshot_id in p_env: deactivates the env's current snapshot,
-- activates the new one, records the promotion (from/to version) and an audit
-- row, all in the caller's transaction; returns the promotion id. Refuses an
-- archived snapshot, one of another env, and one whose latest validation run
-- did not succeed. A repeated p_idempotency_key returns the first promotion.
CREATE FUNCTION pkg_promote_snapshot(
    p_snapshot_id bigint, p_env pkg_env, p_actor text, p_reason text DEFAULT NULL,
    p_action text DEFAULT 'promote', p_metrics jsonb DEFAULT '{}'::jsonb,
    p_idempotency_key text DEFAULT NULL
) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
    DECLARE
        v_snap pkg_snapshots%ROWTYPE;
        v_from pkg_snapshots%ROWTYPE;
        v_had_active boolean;
        v_run pkg_validation_runs%ROWTYPE;
        v_existing pkg_promotions%ROWTYPE;
        v_promotion_id bigint;
    BEGIN
        IF p_action IS NULL OR p_action NOT IN ('promote', 'rollback') THEN
            RAISE EXCEPTION 'action % is not a promotion action', p_action
                USING ERRCODE = '22023', HINT = 'Use ''promote'' or ''rollback''.';
        END IF;
        IF p_actor IS NULL OR p_actor = '' THEN
            RAISE EXCEPTION 'a promotion needs an actor'
                USING ERRCODE = '22023', HINT = 'Say who promotes (a user or the operator''s name).';
        END IF;
        -- One promotion per environment at a time.
        PERFORM pg_advisory_xact_lock(hashtext('pkg_promote_snapshot'), hashtext(p_env::text));

        IF p_idempotency_key IS NOT NULL THEN
            SELECT * INTO v_existing FROM pkg_promotions WHERE idempotency_key = p_idempotency_key;
            IF FOUND THEN
                IF v_existing.snapshot_id <> p_snapshot_id OR v_existing.env <> p_env
                   OR v_existing.action <> p_action THEN
                    RAISE EXCEPTION 'idempotency key % was used for promotion % (% of snapshot % in %)',
                        p_idempotency_key, v_existing.id, v_existing.action,
                        v_existing.snapshot_id, v_existing.env
                        USING ERRCODE = 'PKG06',
                              HINT = 'Use a new idempotency key for a different request.';
                END IF;
                RETURN v_existing.id;
            END IF;
        END IF;

        SELECT * INTO v_snap FROM pkg_snapshots WHERE id = p_snapshot_id FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'snapshot % does not exist', p_snapshot_id
                USING ERRCODE = 'PKG01', HINT = 'Store the snapshot first, or check the id.';
        END IF;
        IF v_snap.archived_at IS NOT NULL THEN
            RAISE EXCEPTION 'snapshot % (%) was archived at % and cannot be promoted',
                p_snapshot_id, v_snap.version, v_snap.archived_at
                USING ERRCODE = 'PKG02',
                      HINT = 'Restore it first (restore_snapshot), or promote another version.';
        END IF;
        IF v_snap.env <> p_env THEN
            RAISE EXCEPTION 'snapshot % (%) belongs to environment %, not %',
                p_snapshot_id, v_snap.version, v_snap.env, p_env
                USING ERRCODE = 'PKG04',
                      HINT = 'Promote it in its own environment, or store it for this one under a new version.';
        END IF;

        SELECT * INTO v_run FROM pkg_validation_runs r
         WHERE r.snapshot_id = p_snapshot_id
         ORDER BY r.started_at DESC, r.id DESC LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'snapshot % (%) has never been validated', p_snapshot_id, v_snap.version
                USING ERRCODE = 'PKG03',
                      HINT = 'Run its fixtures (create_validation_run, finish_validation_run) and promote it once a run succeeds.';
        ELSIF v_run.success IS NULL THEN
            RAISE EXCEPTION 'validation run % of snapshot % (%) has not finished',
                v_run.id, p_snapshot_id, v_snap.version
                USING ERRCODE = 'PKG03', HINT = 'Wait for the run to finish, then promote.';
        ELSIF NOT v_run.success THEN
            RAISE EXCEPTION 'the latest validation run (%) of snapshot % (%) failed',
                v_run.id, p_snapshot_id, v_snap.version
                USING ERRCODE = 'PKG03',
                      HINT = 'Read the run''s report, fix the snapshot under a new version, or re-run the validation.';
        END IF;

        SELECT * INTO v_from FROM pkg_snapshots WHERE env = p_env AND is_active FOR UPDATE;
        v_had_active := FOUND;
        -- Deactivate first: the one-active-per-env index is checked row by row.
        IF v_had_active AND v_from.id <> p_snapshot_id THEN
            UPDATE pkg_snapshots SET is_active = false WHERE id = v_from.id;
        END IF;
        IF NOT v_snap.is_active THEN
            UPDATE pkg_snapshots SET is_active = true, activated_at = now() WHERE id = p_snapshot_id;
        END IF;

        -- clock_timestamp(): now() is the transaction's start, which may precede the
        -- lock wait, and promotions of one env must be ordered as they happened.
        INSERT INTO pkg_promotions (snapshot_id, env, from_version, to_version, actor, action,
                                    reason, metrics, success, idempotency_key, created_at)
        VALUES (p_snapshot_id, p_env, CASE WHEN v_had_active THEN v_from.version END,
                v_snap.version, p_actor, p_action, p_reason, coalesce(p_metrics, '{}'::jsonb),
                true, p_idempotency_key, clock_timestamp())
        RETURNING id INTO v_promotion_id;

        -- Last, so the audit head's lock is held as briefly as possible.
        PERFORM pkg_audit_append(
            CASE p_action WHEN 'promote' THEN 'snapshot.promoted' ELSE 'snapshot.rolled_back' END,
            p_actor, 'snapshot', p_snapshot_id::text,
            jsonb_build_object('promotion_id', v_promotion_id, 'env', p_env,
                               'from_version', CASE WHEN v_had_active THEN v_from.version END,
                               'to_version', v_snap.version, 'reason', p_reason,
                               'metrics', coalesce(p_metrics, '{}'::jsonb)),
            p_snapshot_id, NULL);
        RETURN v_promotion_id;
    END
    $$;

-- Rolls p_env back: to p_to_snapshot_id when given, else to the version the
-- active snapshot replaced when it was last promoted (action 'promote', so a
-- second rollback goes further back instead of undoing the first). Records
-- the promotion row with action 'rollback'; returns its id.
CREATE FUNCTION pkg_rollback_snapshot(
    p_env pkg_env, p_actor text, p_reason text DEFAULT NULL,
    p_to_snapshot_id bigint DEFAULT NULL, p_metrics jsonb DEFAULT '{}'::jsonb,
    p_idempotency_key text DEFAULT NULL
) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
    DECLARE
        v_current pkg_snapshots%ROWTYPE;
        v_previous_version text;
        v_target bigint := p_to_snapshot_id;
        v_existing bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('pkg_promote_snapshot'), hashtext(p_env::text));
        -- A retried rollback must not pick a target one step further back.
        IF p_idempotency_key IS NOT NULL THEN
            SELECT snapshot_id INTO v_existing FROM pkg_promotions
             WHERE idempotency_key = p_idempotency_key;
            IF FOUND THEN
                v_target := coalesce(v_target, v_existing);
            END IF;
        END IF;
        IF v_target IS NULL THEN
            SELECT * INTO v_current FROM pkg_snapshots WHERE env = p_env AND is_active;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'environment % has no active snapshot to roll back from', p_env
                    USING ERRCODE = 'PKG05', HINT = 'Promote a snapshot instead.';
            END IF;
            SELECT p.from_version INTO v_previous_version FROM pkg_promotions p
             WHERE p.env = p_env AND p.snapshot_id = v_current.id AND p.action = 'promote'
               AND p.success AND p.from_version IS NOT NULL AND p.from_version <> v_current.version
             ORDER BY p.id DESC LIMIT 1;
            IF v_previous_version IS NULL THEN
                RAISE EXCEPTION 'snapshot % (%) replaced no earlier version in %: nothing to roll back to',
                    v_current.id, v_current.version, p_env
                    USING ERRCODE = 'PKG05',
                          HINT = 'Name the snapshot to roll back to (to_snapshot_id).';
            END IF;
            SELECT id INTO v_target FROM pkg_snapshots WHERE version = v_previous_version;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'the previous version % of % no longer exists', v_previous_version, p_env
                    USING ERRCODE = 'PKG05',
                          HINT = 'Name the snapshot to roll back to (to_snapshot_id).';
            END IF;
        END IF;
        RETURN pkg_promote_snapshot(v_target, p_env, p_actor, p_reason, 'rollback', p_metrics,
                                    p_idempotency_key);
    END
    $$;

-- Soft delete. Returns false when the snapshot was already archived. Refuses
-- the active snapshot of its environment and a snapshot with active
-- deployments: sidecars may still need to load it.
CREATE FUNCTION pkg_archive_snapshot(p_snapshot_id bigint, p_actor text, p_reason text DEFAULT NULL)
RETURNS boolean
    LANGUAGE plpgsql
    AS $$
    DECLARE
        v_snap pkg_snapshots%ROWTYPE;
        v_deployments text;
    BEGIN
        SELECT * INTO v_snap FROM pkg_snapshots WHERE id = p_snapshot_id FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'snapshot % does not exist', p_snapshot_id
                USING ERRCODE = 'PKG01', HINT = 'Check the id.';
        END IF;
        IF v_snap.is_active THEN
            RAISE EXCEPTION 'snapshot % (%) is the active snapshot of % and cannot be archived',
                p_snapshot_id, v_snap.version, v_snap.env
                USING ERRCODE = 'PKG07',
                      HINT = 'Promote another snapshot (or roll back) first, then archive this one.';
        END IF;
        SELECT string_agg(format('%s/%s', d.target, d.region), ', ' ORDER BY d.target, d.region)
          INTO v_deployments
          FROM pkg_deployments d WHERE d.snapshot_id = p_snapshot_id AND d.is_active;
        IF v_deployments IS NOT NULL THEN
            RAISE EXCEPTION 'snapshot % (%) is still deployed to %', p_snapshot_id, v_snap.version,
                v_deployments
                USING ERRCODE = 'PKG07',
                      HINT = 'Finish or abort those rollouts (mark the deployments inactive) first.';
        END IF;
        IF v_snap.archived_at IS NOT NULL THEN
            RETURN false;
        END IF;
        UPDATE pkg_snapshots SET archived_at = now() WHERE id = p_snapshot_id;
        PERFORM pkg_audit_append('snapshot.archived', p_actor, 'snapshot', p_snapshot_id::text,
                                 jsonb_build_object('version', v_snap.version, 'reason', p_reason),
                                 p_snapshot_id, NULL);
        RETURN true;
    END
    $$;

-- Undoes an archive. Returns false when the snapshot was not archived.
CREATE FUNCTION pkg_restore_snapshot(p_snapshot_id bigint, p_actor text, p_reason text DEFAULT NULL)
RETURNS boolean
    LANGUAGE plpgsql
    AS $$
    DECLARE
        v_snap pkg_snapshots%ROWTYPE;
    BEGIN
        SELECT * INTO v_snap FROM pkg_snapshots WHERE id = p_snapshot_id FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'snapshot % does not exist', p_snapshot_id
                USING ERRCODE = 'PKG01', HINT = 'Check the id.';
        END IF;
        IF v_snap.archived_at IS NULL THEN
            RETURN false;
        END IF;
        UPDATE pkg_snapshots SET archived_at = NULL WHERE id = p_snapshot_id;
        PERFORM pkg_audit_append('snapshot.restored', p_actor, 'snapshot', p_snapshot_id::text,
                                 jsonb_build_object('version', v_snap.version, 'reason', p_reason),
                                 p_snapshot_id, NULL);
        RETURN true;
    END
    $$;
