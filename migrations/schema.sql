CREATE TYPE public.pkg_artifact_type AS ENUM (
    'rego_bundle',
    'wasm_pack'
);

CREATE TYPE public.pkg_condition_type AS ENUM (
    'TAG',
    'SIGNAL',
    'VALUE',
    'FACT'
);

CREATE TYPE public.pkg_engine AS ENUM (
    'wasm',
    'native'
);

CREATE TYPE public.pkg_env AS ENUM (
    'prod',
    'staging',
    'dev'
);

CREATE TYPE public.pkg_operator AS ENUM (
    '=',
    '!=',
    '>=',
    '<=',
    '>',
    '<',
    'IN',
    'EXISTS',
    'MATCHES'
);

CREATE TYPE public.pkg_relation AS ENUM (
    'EMITS',
    'ORDERS',
    'GATE'
);

CREATE FUNCTION public.pkg_active_snapshot_id(p_env public.pkg_env) RETURNS bigint
    LANGUAGE sql STABLE
    AS $$
        SELECT id FROM pkg_snapshots WHERE env = p_env AND is_active
    $$;

CREATE FUNCTION public.pkg_archive_snapshot(p_snapshot_id bigint, p_actor text, p_reason text DEFAULT NULL::text) RETURNS boolean
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

CREATE FUNCTION public.pkg_audit_append(p_action text, p_actor text, p_entity_type text, p_entity_id text, p_details jsonb DEFAULT '{}'::jsonb, p_snapshot_id bigint DEFAULT NULL::bigint, p_idempotency_key text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE sql
    AS $$
        -- id, created_at, prev_hash and hash come from the chain trigger.
        INSERT INTO pkg_audit_log (action, actor, entity_type, entity_id, details, snapshot_id,
                                   idempotency_key)
        VALUES (p_action, p_actor, p_entity_type, p_entity_id, coalesce(p_details, '{}'::jsonb),
                p_snapshot_id, p_idempotency_key)
        RETURNING id
    $$;

CREATE FUNCTION public.pkg_audit_hash(prev_hash text, id bigint, created_at timestamp with time zone, action text, actor text, entity_type text, entity_id text, snapshot_id bigint, details jsonb, idempotency_key text) RETURNS text
    LANGUAGE sql STABLE
    AS $$
        SELECT encode(sha256(convert_to(
            pkg_audit_netstring('pkg-audit-v1')
            || pkg_audit_netstring(prev_hash)
            || pkg_audit_netstring(id::text)
            || pkg_audit_netstring(((extract(epoch FROM created_at) * 1000000)::bigint)::text)
            || pkg_audit_netstring(action)
            || pkg_audit_netstring(actor)
            || pkg_audit_netstring(entity_type)
            || pkg_audit_netstring(entity_id)
            || pkg_audit_netstring(snapshot_id::text)
            || pkg_audit_netstring(details::text)
            || pkg_audit_netstring(idempotency_key),
            'UTF8')), 'hex')
    $$;

CREATE FUNCTION public.pkg_audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        -- The chain trigger moves the head from inside an INSERT (depth 2).
        IF TG_TABLE_NAME = 'pkg_audit_head' AND TG_OP = 'UPDATE' AND pg_trigger_depth() > 1 THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'PKG09',
                  HINT = 'Record a correction as a new audit row (append_audit) instead of changing history.';
    END
    $$;

CREATE FUNCTION public.pkg_audit_log_chain() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    DECLARE
        v_last_id bigint;
        v_last_hash text;
    BEGIN
        SELECT last_id, last_hash INTO v_last_id, v_last_hash
          FROM pkg_audit_head WHERE singleton FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pkg_audit_head has no row: the audit chain cannot be extended'
                USING ERRCODE = 'PKG09',
                      HINT = 'Restore it from the last row of pkg_audit_log (its id and hash) and run pkg_verify_audit_chain().';
        END IF;
        NEW.id := v_last_id + 1;
        NEW.prev_hash := v_last_hash;
        NEW.created_at := clock_timestamp();
        NEW.details := coalesce(NEW.details, '{}'::jsonb);
        NEW.hash := pkg_audit_hash(NEW.prev_hash, NEW.id, NEW.created_at, NEW.action, NEW.actor,
                                   NEW.entity_type, NEW.entity_id, NEW.snapshot_id, NEW.details,
                                   NEW.idempotency_key);
        UPDATE pkg_audit_head SET last_id = NEW.id, last_hash = NEW.hash WHERE singleton;
        RETURN NEW;
    END
    $$;

CREATE FUNCTION public.pkg_audit_netstring(value text) RETURNS text
    LANGUAGE sql STABLE
    AS $$
        SELECT CASE WHEN value IS NULL THEN '~'
                    ELSE octet_length(convert_to(value, 'UTF8'))::text || ':' || value || ','
               END
    $$;

CREATE FUNCTION public.pkg_bump_facts_version(p_env public.pkg_env) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- The row lock orders concurrent writers: versions follow commit order.
    INSERT INTO pkg_facts_versions AS v (env, version, changed_at)
    VALUES (p_env, nextval('pkg_facts_version_seq'), now())
    ON CONFLICT (env) DO UPDATE
        SET version = nextval('pkg_facts_version_seq'), changed_at = now();
    PERFORM pg_notify('pkg_facts', p_env::text);
END;
$$;

CREATE FUNCTION public.pkg_check_integrity() RETURNS TABLE(check_name text, snapshot_id bigint, object_id text, detail text)
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

CREATE FUNCTION public.pkg_cohort_bucket(p_deployment text, p_device text) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT ((('x' || substr(encode(sha256(convert_to(p_deployment, 'UTF8')
                                              || '\x00'::bytea
                                              || convert_to(p_device, 'UTF8')), 'hex'),
                                1, 16))::bit(64) >> 11)::bigint)::double precision
               / 9007199254740992::double precision * 100::double precision
    $$;

CREATE FUNCTION public.pkg_deployment_coverage_within(p_ttl interval DEFAULT NULL::interval) RETURNS TABLE(deployment_id bigint, deployment_name text, deployment_uid text, environment text, target text, region text, snapshot_id bigint, snapshot_version text, stable_version text, percent integer, step integer, devices_on_snapshot bigint, devices_expected_on_snapshot bigint, devices_on_intended bigint, devices_total bigint, devices_stale bigint, last_seen timestamp with time zone)
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

CREATE FUNCTION public.pkg_facts_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_envs pkg_env[] := '{}';
    v_env pkg_env;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.snapshot_id IS NULL THEN
        v_envs := v_envs || CASE WHEN OLD.env IS NULL
                                 THEN enum_range(NULL::pkg_env) ELSE ARRAY[OLD.env] END;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.snapshot_id IS NULL THEN
        v_envs := v_envs || CASE WHEN NEW.env IS NULL
                                 THEN enum_range(NULL::pkg_env) ELSE ARRAY[NEW.env] END;
    END IF;
    FOR v_env IN SELECT DISTINCT e FROM unnest(v_envs) AS e LOOP
        PERFORM pkg_bump_facts_version(v_env);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE FUNCTION public.pkg_facts_version(p_env public.pkg_env) RETURNS bigint
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce((SELECT version FROM pkg_facts_versions WHERE env = p_env), 0)
$$;

CREATE FUNCTION public.pkg_grant_sidecar_reader() RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pkg_sidecar_reader') THEN
        RAISE WARNING 'role pkg_sidecar_reader does not exist: create it first '
            '(CREATE ROLE pkg_sidecar_reader NOLOGIN;)';
        RETURN false;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO pkg_sidecar_reader', current_schema());
    GRANT SELECT ON pkg_snapshots, pkg_snapshot_artifacts, pkg_policy_rules,
        pkg_rule_conditions, pkg_rule_emissions, pkg_subtask_types, pkg_facts,
        pkg_validation_fixtures, pkg_facts_versions TO pkg_sidecar_reader;
    RETURN true;
END
$$;

CREATE FUNCTION public.pkg_in_canary(p_deployment text, p_device text, p_percent double precision) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT p_percent > 0 AND pkg_cohort_bucket(p_deployment, p_device) < p_percent
    $$;

CREATE FUNCTION public.pkg_next_desired_epoch(p_floor bigint DEFAULT 0) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_epoch bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pkg_desired_epoch_seq'));
    v_epoch := nextval('pkg_desired_epoch_seq');
    IF v_epoch <= p_floor THEN
        v_epoch := p_floor + 1;
        PERFORM setval('pkg_desired_epoch_seq', v_epoch);
    END IF;
    RETURN v_epoch;
END;
$$;

CREATE FUNCTION public.pkg_notify_promotion() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('pkg_promotions', NEW.env::text);
    RETURN NULL;
END;
$$;

CREATE FUNCTION public.pkg_promote_snapshot(p_snapshot_id bigint, p_env public.pkg_env, p_actor text, p_reason text DEFAULT NULL::text, p_action text DEFAULT 'promote'::text, p_metrics jsonb DEFAULT '{}'::jsonb, p_idempotency_key text DEFAULT NULL::text) RETURNS bigint
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

CREATE FUNCTION public.pkg_restore_snapshot(p_snapshot_id bigint, p_actor text, p_reason text DEFAULT NULL::text) RETURNS boolean
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

CREATE FUNCTION public.pkg_rollback_snapshot(p_env public.pkg_env, p_actor text, p_reason text DEFAULT NULL::text, p_to_snapshot_id bigint DEFAULT NULL::bigint, p_metrics jsonb DEFAULT '{}'::jsonb, p_idempotency_key text DEFAULT NULL::text) RETURNS bigint
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

CREATE FUNCTION public.pkg_snapshot_facts_frozen() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_snapshot bigint;
BEGIN
    FOREACH v_snapshot IN ARRAY ARRAY[
        CASE WHEN TG_OP <> 'DELETE' THEN NEW.snapshot_id END,
        CASE WHEN TG_OP <> 'INSERT' THEN OLD.snapshot_id END
    ] LOOP
        IF v_snapshot IS NOT NULL
           AND EXISTS (SELECT 1 FROM pkg_snapshots s
                        WHERE s.id = v_snapshot AND s.xmin <> pg_current_xact_id()::xid) THEN
            RAISE EXCEPTION 'snapshot % is immutable: its facts are part of its content', v_snapshot
                USING ERRCODE = 'check_violation',
                      HINT = 'store environment facts (snapshot_id NULL, env set) with '
                             'create_temporal_fact, or store a new snapshot version';
        END IF;
    END LOOP;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION public.pkg_verify_audit_chain() RETURNS TABLE(ok boolean, rows_checked bigint, broken_id bigint, problem text, expected text, stored text)
    LANGUAGE plpgsql STABLE
    AS $$
    DECLARE
        v_head pkg_audit_head%ROWTYPE;
        v_row pkg_audit_log%ROWTYPE;
        v_prev text := repeat('0', 64);
        v_next_id bigint := 1;
        v_count bigint := 0;
        v_hash text;
    BEGIN
        SELECT * INTO v_head FROM pkg_audit_head WHERE singleton;
        IF NOT FOUND THEN
            RETURN QUERY SELECT false, 0::bigint, NULL::bigint, 'head_mismatch'::text,
                                NULL::text, NULL::text;
            RETURN;
        END IF;
        FOR v_row IN SELECT * FROM pkg_audit_log l WHERE l.id <= v_head.last_id ORDER BY l.id LOOP
            IF v_row.id <> v_next_id THEN
                RETURN QUERY SELECT false, v_count, v_row.id, 'missing_rows'::text, v_prev,
                                    v_row.prev_hash;
                RETURN;
            END IF;
            IF v_row.prev_hash <> v_prev THEN
                RETURN QUERY SELECT false, v_count, v_row.id, 'prev_hash_mismatch'::text, v_prev,
                                    v_row.prev_hash;
                RETURN;
            END IF;
            v_hash := pkg_audit_hash(v_row.prev_hash, v_row.id, v_row.created_at, v_row.action,
                                     v_row.actor, v_row.entity_type, v_row.entity_id,
                                     v_row.snapshot_id, v_row.details, v_row.idempotency_key);
            IF v_hash <> v_row.hash THEN
                RETURN QUERY SELECT false, v_count, v_row.id, 'hash_mismatch'::text, v_hash,
                                    v_row.hash;
                RETURN;
            END IF;
            v_prev := v_row.hash;
            v_next_id := v_next_id + 1;
            v_count := v_count + 1;
        END LOOP;
        IF v_next_id - 1 <> v_head.last_id OR v_prev <> v_head.last_hash THEN
            RETURN QUERY SELECT false, v_count, v_head.last_id, 'head_mismatch'::text,
                                v_head.last_hash, v_prev;
            RETURN;
        END IF;
        RETURN QUERY SELECT true, v_count, NULL::bigint, NULL::text, NULL::text, NULL::text;
    END
    $$;

CREATE TABLE public.pkg_snapshot_artifacts (
    snapshot_id bigint NOT NULL,
    artifact_type public.pkg_artifact_type NOT NULL,
    artifact_bytes bytea NOT NULL,
    sha256 text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT pkg_snapshot_artifacts_sha256_check CHECK ((sha256 ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT pkg_snapshot_artifacts_sha256_matches CHECK ((sha256 = encode(sha256(artifact_bytes), 'hex'::text)))
);

CREATE TABLE public.pkg_snapshots (
    id bigint NOT NULL,
    version text NOT NULL,
    env public.pkg_env NOT NULL,
    engine public.pkg_engine NOT NULL,
    checksum text NOT NULL,
    content_sha256 text NOT NULL,
    is_active boolean DEFAULT false NOT NULL,
    uid text,
    resource_namespace text,
    resource_name text,
    entrypoint text,
    data jsonb DEFAULT '{}'::jsonb NOT NULL,
    notes text,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    activated_at timestamp with time zone,
    archived_at timestamp with time zone,
    CONSTRAINT pkg_snapshots_active_not_archived CHECK ((NOT (is_active AND (archived_at IS NOT NULL)))),
    CONSTRAINT pkg_snapshots_checksum_check CHECK ((checksum ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT pkg_snapshots_content_sha256_check CHECK ((content_sha256 ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT pkg_snapshots_data_check CHECK ((jsonb_typeof(data) = 'object'::text)),
    CONSTRAINT pkg_snapshots_metadata_check CHECK ((jsonb_typeof(metadata) = 'object'::text)),
    CONSTRAINT pkg_snapshots_version_check CHECK ((version <> ''::text))
);

COMMENT ON TABLE public.pkg_snapshots IS 'Versioned policy snapshots (governance root); immutable once stored.';

COMMENT ON COLUMN public.pkg_snapshots.uid IS 'metadata.uid of the PolicySnapshot custom resource, when it came from one.';

COMMENT ON COLUMN public.pkg_snapshots.archived_at IS 'Soft delete: set by archive; default reads skip archived snapshots.';

CREATE VIEW public.pkg_active_artifact AS
 SELECT s.env,
    s.id AS snapshot_id,
    s.version,
    s.engine,
    s.checksum,
    a.artifact_type,
    octet_length(a.artifact_bytes) AS size_bytes,
    a.sha256,
    a.created_at
   FROM (public.pkg_snapshots s
     JOIN public.pkg_snapshot_artifacts a ON ((a.snapshot_id = s.id)))
  WHERE s.is_active;

COMMENT ON VIEW public.pkg_active_artifact IS 'The compiled artifact of the active snapshot of each environment (bytes left out).';

CREATE TABLE public.pkg_audit_head (
    singleton boolean DEFAULT true NOT NULL,
    last_id bigint NOT NULL,
    last_hash text NOT NULL,
    CONSTRAINT pkg_audit_head_last_hash_check CHECK ((last_hash ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT pkg_audit_head_singleton_check CHECK (singleton)
);

CREATE TABLE public.pkg_audit_log (
    id bigint NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    action text NOT NULL,
    actor text NOT NULL,
    entity_type text NOT NULL,
    entity_id text NOT NULL,
    snapshot_id bigint,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    idempotency_key text,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    CONSTRAINT pkg_audit_log_action_check CHECK ((action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'::text)),
    CONSTRAINT pkg_audit_log_actor_check CHECK ((actor <> ''::text)),
    CONSTRAINT pkg_audit_log_details_check CHECK ((jsonb_typeof(details) = 'object'::text)),
    CONSTRAINT pkg_audit_log_entity_type_check CHECK ((entity_type <> ''::text)),
    CONSTRAINT pkg_audit_log_hash_check CHECK ((hash ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT pkg_audit_log_prev_hash_check CHECK ((prev_hash ~ '^[0-9a-f]{64}$'::text))
);

COMMENT ON TABLE public.pkg_audit_log IS 'Append-only hash chain of governance events; verify with pkg_verify_audit_chain().';

CREATE VIEW public.pkg_deployment_coverage AS
 SELECT pkg_deployment_coverage_within.deployment_id,
    pkg_deployment_coverage_within.deployment_name,
    pkg_deployment_coverage_within.deployment_uid,
    pkg_deployment_coverage_within.environment,
    pkg_deployment_coverage_within.target,
    pkg_deployment_coverage_within.region,
    pkg_deployment_coverage_within.snapshot_id,
    pkg_deployment_coverage_within.snapshot_version,
    pkg_deployment_coverage_within.stable_version,
    pkg_deployment_coverage_within.percent,
    pkg_deployment_coverage_within.step,
    pkg_deployment_coverage_within.devices_on_snapshot,
    pkg_deployment_coverage_within.devices_expected_on_snapshot,
    pkg_deployment_coverage_within.devices_on_intended,
    pkg_deployment_coverage_within.devices_total,
    pkg_deployment_coverage_within.devices_stale,
    pkg_deployment_coverage_within.last_seen
   FROM public.pkg_deployment_coverage_within() pkg_deployment_coverage_within(deployment_id, deployment_name, deployment_uid, environment, target, region, snapshot_id, snapshot_version, stable_version, percent, step, devices_on_snapshot, devices_expected_on_snapshot, devices_on_intended, devices_total, devices_stale, last_seen);

COMMENT ON VIEW public.pkg_deployment_coverage IS 'Per active deployment, live devices (heartbeat within its heartbeat_ttl_seconds, 30 s by default) of its environment, target and region, and how many run what their canary cohort should; agrees with the PolicyDeployment''s status.coverage. pkg_deployment_coverage_within(ttl) takes one TTL for all.';

CREATE TABLE public.pkg_deployments (
    id bigint NOT NULL,
    snapshot_id bigint NOT NULL,
    deployment_name text,
    deployment_uid text,
    target text NOT NULL,
    region text DEFAULT 'global'::text NOT NULL,
    percent integer DEFAULT 0 NOT NULL,
    is_active boolean DEFAULT true NOT NULL,
    step integer,
    activated_by text,
    last_idempotency_key text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_ttl_seconds integer,
    CONSTRAINT pkg_deployments_heartbeat_ttl_check CHECK (((heartbeat_ttl_seconds IS NULL) OR (heartbeat_ttl_seconds > 0))),
    CONSTRAINT pkg_deployments_percent_check CHECK (((percent >= 0) AND (percent <= 100))),
    CONSTRAINT pkg_deployments_region_check CHECK ((region <> ''::text)),
    CONSTRAINT pkg_deployments_step_check CHECK (((step IS NULL) OR (step >= 0))),
    CONSTRAINT pkg_deployments_target_check CHECK ((target <> ''::text))
);

COMMENT ON TABLE public.pkg_deployments IS 'Canary deployments and targeted rollouts: one row per deployment, target, region and snapshot.';

COMMENT ON COLUMN public.pkg_deployments.heartbeat_ttl_seconds IS 'How recent a heartbeat must be for a device to count as live (spec.coverage.heartbeatTTLSeconds); NULL: 30.';

ALTER TABLE public.pkg_deployments ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.pkg_deployments_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE SEQUENCE public.pkg_desired_epoch_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

CREATE TABLE public.pkg_device_counters (
    environment text NOT NULL,
    device_id text NOT NULL,
    process_id text NOT NULL,
    process_started timestamp with time zone NOT NULL,
    requests bigint DEFAULT 0 NOT NULL,
    errors bigint DEFAULT 0 NOT NULL,
    activation_failures bigint DEFAULT 0 NOT NULL,
    shadow_samples bigint DEFAULT 0 NOT NULL,
    shadow_diffs bigint DEFAULT 0 NOT NULL,
    carried_requests bigint DEFAULT 0 NOT NULL,
    carried_errors bigint DEFAULT 0 NOT NULL,
    carried_activation_failures bigint DEFAULT 0 NOT NULL,
    carried_shadow_samples bigint DEFAULT 0 NOT NULL,
    carried_shadow_diffs bigint DEFAULT 0 NOT NULL,
    restarts bigint DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT pkg_device_counters_activation_failures_check CHECK ((activation_failures >= 0)),
    CONSTRAINT pkg_device_counters_errors_check CHECK ((errors >= 0)),
    CONSTRAINT pkg_device_counters_requests_check CHECK ((requests >= 0)),
    CONSTRAINT pkg_device_counters_shadow_diffs_check CHECK ((shadow_diffs >= 0)),
    CONSTRAINT pkg_device_counters_shadow_samples_check CHECK ((shadow_samples >= 0))
);

CREATE VIEW public.pkg_device_totals AS
 SELECT pkg_device_counters.environment,
    pkg_device_counters.device_id,
    pkg_device_counters.process_id,
    pkg_device_counters.restarts,
    (pkg_device_counters.requests + pkg_device_counters.carried_requests) AS requests,
    (pkg_device_counters.errors + pkg_device_counters.carried_errors) AS errors,
    (pkg_device_counters.activation_failures + pkg_device_counters.carried_activation_failures) AS activation_failures,
    (pkg_device_counters.shadow_samples + pkg_device_counters.carried_shadow_samples) AS shadow_samples,
    (pkg_device_counters.shadow_diffs + pkg_device_counters.carried_shadow_diffs) AS shadow_diffs,
    pkg_device_counters.updated_at
   FROM public.pkg_device_counters;

CREATE TABLE public.pkg_device_versions (
    device_id text NOT NULL,
    device_type text NOT NULL,
    region text DEFAULT 'global'::text NOT NULL,
    target text NOT NULL,
    snapshot_id bigint,
    version text,
    evaluations bigint,
    errors bigint,
    p99_latency_ms double precision,
    activation_failures bigint,
    last_seen timestamp with time zone DEFAULT now() NOT NULL,
    environment text NOT NULL,
    last_error text,
    policy_stale boolean,
    prepared_version text,
    CONSTRAINT pkg_device_versions_counters_check CHECK (((evaluations >= 0) AND (errors >= 0) AND (activation_failures >= 0))),
    CONSTRAINT pkg_device_versions_device_id_check CHECK ((device_id <> ''::text)),
    CONSTRAINT pkg_device_versions_environment_check CHECK ((environment <> ''::text)),
    CONSTRAINT pkg_device_versions_p99_check CHECK (((p99_latency_ms IS NULL) OR (p99_latency_ms >= (0)::double precision)))
);

COMMENT ON TABLE public.pkg_device_versions IS 'Latest heartbeat per device: what it runs and how it fares.';

COMMENT ON COLUMN public.pkg_device_versions.environment IS 'The environment the device reports (pkg_env text); ''unknown'' for rows that could not be placed.';

COMMENT ON COLUMN public.pkg_device_versions.last_error IS 'The device''s last activation error as its latest heartbeat reported it (NULL: none).';

COMMENT ON COLUMN public.pkg_device_versions.policy_stale IS 'The latest heartbeat said the device is past its maximum staleness (it cannot confirm what it should run).';

COMMENT ON COLUMN public.pkg_device_versions.prepared_version IS 'The version the device held prepared (two-phase activation) at its latest heartbeat.';

CREATE TABLE public.pkg_facts (
    id bigint NOT NULL,
    snapshot_id bigint,
    subject text NOT NULL,
    predicate text NOT NULL,
    object jsonb NOT NULL,
    valid_from timestamp with time zone,
    valid_to timestamp with time zone,
    "position" integer DEFAULT 0 NOT NULL,
    created_by text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    env public.pkg_env,
    CONSTRAINT pkg_facts_predicate_check CHECK ((predicate <> ''::text)),
    CONSTRAINT pkg_facts_subject_check CHECK ((subject <> ''::text)),
    CONSTRAINT pkg_facts_window_check CHECK (((valid_from IS NULL) OR (valid_to IS NULL) OR (valid_to > valid_from)))
);

COMMENT ON TABLE public.pkg_facts IS 'Temporal facts (subject, predicate, object) valid in [valid_from, valid_to).';

COMMENT ON COLUMN public.pkg_facts.env IS 'An environment fact''s environment (NULL with snapshot_id NULL: every environment); NULL for snapshot facts.';

ALTER TABLE public.pkg_facts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.pkg_facts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE SEQUENCE public.pkg_facts_version_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

CREATE TABLE public.pkg_facts_versions (
    env public.pkg_env NOT NULL,
    version bigint NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT pkg_facts_versions_version_check CHECK ((version >= 0))
);

COMMENT ON TABLE public.pkg_facts_versions IS 'The version of each environment''s fact set: grows on every change to its facts.';

CREATE TABLE public.pkg_policy_rules (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    snapshot_id bigint NOT NULL,
    rule_id text NOT NULL,
    rule_name text NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    rule_source text,
    disabled boolean DEFAULT false NOT NULL,
    "position" integer DEFAULT 0 NOT NULL,
    CONSTRAINT pkg_policy_rules_rule_id_check CHECK ((rule_id <> ''::text)),
    CONSTRAINT pkg_policy_rules_rule_name_check CHECK ((rule_name <> ''::text))
);

CREATE TABLE public.pkg_promotions (
    id bigint NOT NULL,
    snapshot_id bigint NOT NULL,
    env public.pkg_env NOT NULL,
    from_version text,
    to_version text NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    reason text,
    metrics jsonb DEFAULT '{}'::jsonb NOT NULL,
    success boolean DEFAULT true NOT NULL,
    idempotency_key text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT pkg_promotions_action_check CHECK ((action = ANY (ARRAY['promote'::text, 'rollback'::text]))),
    CONSTRAINT pkg_promotions_actor_check CHECK ((actor <> ''::text)),
    CONSTRAINT pkg_promotions_metrics_check CHECK ((jsonb_typeof(metrics) = 'object'::text))
);

ALTER TABLE public.pkg_promotions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.pkg_promotions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.pkg_rule_conditions (
    id bigint NOT NULL,
    rule_id uuid NOT NULL,
    condition_type public.pkg_condition_type NOT NULL,
    condition_key text NOT NULL,
    operator public.pkg_operator NOT NULL,
    value text,
    "position" integer DEFAULT 0 NOT NULL
);

ALTER TABLE public.pkg_rule_conditions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.pkg_rule_conditions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.pkg_rule_emissions (
    id bigint NOT NULL,
    rule_id uuid NOT NULL,
    snapshot_id bigint NOT NULL,
    subtask_type_id uuid NOT NULL,
    subtask_name text NOT NULL,
    relationship_type public.pkg_relation DEFAULT 'EMITS'::public.pkg_relation NOT NULL,
    params jsonb DEFAULT '{}'::jsonb NOT NULL,
    default_params jsonb,
    "position" integer DEFAULT 0 NOT NULL,
    CONSTRAINT pkg_rule_emissions_default_params_check CHECK (((default_params IS NULL) OR (jsonb_typeof(default_params) = 'object'::text))),
    CONSTRAINT pkg_rule_emissions_params_check CHECK ((jsonb_typeof(params) = 'object'::text))
);

ALTER TABLE public.pkg_rule_emissions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.pkg_rule_emissions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.pkg_subtask_types (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    snapshot_id bigint NOT NULL,
    name text NOT NULL,
    default_params jsonb DEFAULT '{}'::jsonb NOT NULL,
    declared boolean DEFAULT true NOT NULL,
    "position" integer DEFAULT 0 NOT NULL,
    CONSTRAINT pkg_subtask_types_default_params_check CHECK ((jsonb_typeof(default_params) = 'object'::text))
);

CREATE VIEW public.pkg_rules_expanded AS
 SELECT s.id AS snapshot_id,
    s.version,
    s.env,
    s.is_active,
    r.id AS rule_uuid,
    r.rule_id,
    r.rule_name,
    r.priority,
    r.disabled,
    r."position" AS rule_position,
    ( SELECT count(*) AS count
           FROM public.pkg_rule_conditions c
          WHERE (c.rule_id = r.id)) AS condition_count,
    e.id AS emission_id,
    e."position" AS emission_position,
    e.relationship_type,
    st.name AS subtask_type,
    e.subtask_name,
    e.params,
    COALESCE(e.default_params, st.default_params) AS default_params,
    st.snapshot_id AS subtask_type_snapshot_id
   FROM (((public.pkg_policy_rules r
     JOIN public.pkg_snapshots s ON ((s.id = r.snapshot_id)))
     LEFT JOIN public.pkg_rule_emissions e ON ((e.rule_id = r.id)))
     LEFT JOIN public.pkg_subtask_types st ON ((st.id = e.subtask_type_id)));

COMMENT ON VIEW public.pkg_rules_expanded IS 'Rules with their emissions flattened, for audits.';

CREATE TABLE public.pkg_shadow_diffs (
    id bigint NOT NULL,
    deployment_uid text NOT NULL,
    deployment_name text NOT NULL,
    step_started_at timestamp with time zone NOT NULL,
    device_id text NOT NULL,
    active_version text,
    candidate_version text NOT NULL,
    differs text NOT NULL,
    input jsonb NOT NULL,
    active_output jsonb NOT NULL,
    candidate_output jsonb NOT NULL,
    observed_at timestamp with time zone NOT NULL,
    recorded_at timestamp with time zone DEFAULT now() NOT NULL,
    fingerprint text NOT NULL
);

ALTER TABLE public.pkg_shadow_diffs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.pkg_shadow_diffs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE public.pkg_snapshots ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.pkg_snapshots_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.pkg_step_baseline_marks (
    deployment_uid text NOT NULL,
    step_started_at timestamp with time zone NOT NULL,
    target text NOT NULL,
    captured_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.pkg_step_baselines (
    deployment_uid text NOT NULL,
    step_started_at timestamp with time zone NOT NULL,
    device_id text NOT NULL,
    requests bigint NOT NULL,
    errors bigint NOT NULL,
    activation_failures bigint NOT NULL,
    shadow_samples bigint NOT NULL,
    shadow_diffs bigint NOT NULL
);

CREATE TABLE public.pkg_validation_fixtures (
    id bigint NOT NULL,
    snapshot_id bigint NOT NULL,
    name text NOT NULL,
    input jsonb DEFAULT '{}'::jsonb NOT NULL,
    expect jsonb DEFAULT '{}'::jsonb NOT NULL,
    "position" integer DEFAULT 0 NOT NULL,
    CONSTRAINT pkg_validation_fixtures_expect_check CHECK ((jsonb_typeof(expect) = 'object'::text)),
    CONSTRAINT pkg_validation_fixtures_input_check CHECK ((jsonb_typeof(input) = 'object'::text)),
    CONSTRAINT pkg_validation_fixtures_name_check CHECK ((name <> ''::text))
);

ALTER TABLE public.pkg_validation_fixtures ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.pkg_validation_fixtures_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.pkg_validation_runs (
    id bigint NOT NULL,
    snapshot_id bigint NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    success boolean,
    report jsonb,
    actor text,
    CONSTRAINT pkg_validation_runs_finished_check CHECK (((finished_at IS NULL) = (success IS NULL))),
    CONSTRAINT pkg_validation_runs_order_check CHECK (((finished_at IS NULL) OR (finished_at >= started_at)))
);

ALTER TABLE public.pkg_validation_runs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.pkg_validation_runs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL,
    duration_ms integer DEFAULT 0 NOT NULL
);

ALTER TABLE ONLY public.pkg_audit_head
    ADD CONSTRAINT pkg_audit_head_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY public.pkg_audit_log
    ADD CONSTRAINT pkg_audit_log_idempotency_key_key UNIQUE (idempotency_key);

ALTER TABLE ONLY public.pkg_audit_log
    ADD CONSTRAINT pkg_audit_log_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_deployments
    ADD CONSTRAINT pkg_deployments_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_device_counters
    ADD CONSTRAINT pkg_device_counters_pkey PRIMARY KEY (environment, device_id);

ALTER TABLE ONLY public.pkg_device_versions
    ADD CONSTRAINT pkg_device_versions_pkey PRIMARY KEY (environment, device_id);

ALTER TABLE ONLY public.pkg_facts
    ADD CONSTRAINT pkg_facts_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_facts_versions
    ADD CONSTRAINT pkg_facts_versions_pkey PRIMARY KEY (env);

ALTER TABLE ONLY public.pkg_policy_rules
    ADD CONSTRAINT pkg_policy_rules_id_snapshot_key UNIQUE (id, snapshot_id);

ALTER TABLE ONLY public.pkg_policy_rules
    ADD CONSTRAINT pkg_policy_rules_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_policy_rules
    ADD CONSTRAINT pkg_policy_rules_snapshot_rule_key UNIQUE (snapshot_id, rule_id);

ALTER TABLE ONLY public.pkg_promotions
    ADD CONSTRAINT pkg_promotions_idempotency_key_key UNIQUE (idempotency_key);

ALTER TABLE ONLY public.pkg_promotions
    ADD CONSTRAINT pkg_promotions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_rule_conditions
    ADD CONSTRAINT pkg_rule_conditions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_rule_emissions
    ADD CONSTRAINT pkg_rule_emissions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_shadow_diffs
    ADD CONSTRAINT pkg_shadow_diffs_deployment_uid_step_started_at_device_id_f_key UNIQUE (deployment_uid, step_started_at, device_id, fingerprint);

ALTER TABLE ONLY public.pkg_shadow_diffs
    ADD CONSTRAINT pkg_shadow_diffs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_snapshot_artifacts
    ADD CONSTRAINT pkg_snapshot_artifacts_pkey PRIMARY KEY (snapshot_id, artifact_type);

ALTER TABLE ONLY public.pkg_snapshots
    ADD CONSTRAINT pkg_snapshots_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_snapshots
    ADD CONSTRAINT pkg_snapshots_uid_key UNIQUE (uid);

ALTER TABLE ONLY public.pkg_snapshots
    ADD CONSTRAINT pkg_snapshots_version_key UNIQUE (version);

ALTER TABLE ONLY public.pkg_step_baseline_marks
    ADD CONSTRAINT pkg_step_baseline_marks_pkey PRIMARY KEY (deployment_uid, step_started_at);

ALTER TABLE ONLY public.pkg_step_baselines
    ADD CONSTRAINT pkg_step_baselines_pkey PRIMARY KEY (deployment_uid, step_started_at, device_id);

ALTER TABLE ONLY public.pkg_subtask_types
    ADD CONSTRAINT pkg_subtask_types_id_snapshot_key UNIQUE (id, snapshot_id);

ALTER TABLE ONLY public.pkg_subtask_types
    ADD CONSTRAINT pkg_subtask_types_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_subtask_types
    ADD CONSTRAINT pkg_subtask_types_snapshot_name_key UNIQUE (snapshot_id, name);

ALTER TABLE ONLY public.pkg_validation_fixtures
    ADD CONSTRAINT pkg_validation_fixtures_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.pkg_validation_fixtures
    ADD CONSTRAINT pkg_validation_fixtures_snapshot_name_key UNIQUE (snapshot_id, name);

ALTER TABLE ONLY public.pkg_validation_runs
    ADD CONSTRAINT pkg_validation_runs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

CREATE INDEX pkg_audit_log_action ON public.pkg_audit_log USING btree (action, id);

CREATE INDEX pkg_audit_log_entity ON public.pkg_audit_log USING btree (entity_type, entity_id, id);

CREATE INDEX pkg_audit_log_snapshot ON public.pkg_audit_log USING btree (snapshot_id, id) WHERE (snapshot_id IS NOT NULL);

CREATE UNIQUE INDEX pkg_deployments_identity ON public.pkg_deployments USING btree (COALESCE(deployment_uid, ''::text), target, region, snapshot_id);

CREATE INDEX pkg_deployments_snapshot ON public.pkg_deployments USING btree (snapshot_id);

CREATE INDEX pkg_deployments_target_region ON public.pkg_deployments USING btree (target, region) WHERE is_active;

CREATE INDEX pkg_device_versions_env_target_region ON public.pkg_device_versions USING btree (environment, target, region, last_seen);

CREATE INDEX pkg_device_versions_snapshot ON public.pkg_device_versions USING btree (snapshot_id);

CREATE INDEX pkg_facts_predicate ON public.pkg_facts USING btree (predicate);

CREATE INDEX pkg_facts_snapshot ON public.pkg_facts USING btree (snapshot_id, "position");

CREATE INDEX pkg_facts_subject_predicate ON public.pkg_facts USING btree (subject, predicate);

CREATE INDEX pkg_facts_valid_to ON public.pkg_facts USING btree (valid_to) WHERE (valid_to IS NOT NULL);

CREATE INDEX pkg_promotions_env ON public.pkg_promotions USING btree (env, id);

CREATE INDEX pkg_promotions_snapshot ON public.pkg_promotions USING btree (snapshot_id, id);

CREATE INDEX pkg_rule_conditions_rule_position ON public.pkg_rule_conditions USING btree (rule_id, "position");

CREATE INDEX pkg_rule_emissions_rule_position ON public.pkg_rule_emissions USING btree (rule_id, "position");

CREATE INDEX pkg_rule_emissions_subtask_type ON public.pkg_rule_emissions USING btree (subtask_type_id, snapshot_id);

CREATE INDEX pkg_shadow_diffs_by_candidate ON public.pkg_shadow_diffs USING btree (candidate_version, recorded_at);

CREATE INDEX pkg_snapshots_env_created ON public.pkg_snapshots USING btree (env, created_at DESC);

CREATE UNIQUE INDEX pkg_snapshots_one_active_per_env ON public.pkg_snapshots USING btree (env) WHERE is_active;

CREATE INDEX pkg_validation_runs_snapshot_latest ON public.pkg_validation_runs USING btree (snapshot_id, started_at DESC, id DESC);

CREATE TRIGGER pkg_audit_head_guard BEFORE DELETE OR UPDATE ON public.pkg_audit_head FOR EACH ROW EXECUTE FUNCTION public.pkg_audit_log_append_only();

CREATE TRIGGER pkg_audit_head_no_truncate BEFORE TRUNCATE ON public.pkg_audit_head FOR EACH STATEMENT EXECUTE FUNCTION public.pkg_audit_log_append_only();

CREATE TRIGGER pkg_audit_log_append_only BEFORE DELETE OR UPDATE ON public.pkg_audit_log FOR EACH ROW EXECUTE FUNCTION public.pkg_audit_log_append_only();

CREATE TRIGGER pkg_audit_log_chain BEFORE INSERT ON public.pkg_audit_log FOR EACH ROW EXECUTE FUNCTION public.pkg_audit_log_chain();

CREATE TRIGGER pkg_audit_log_no_truncate BEFORE TRUNCATE ON public.pkg_audit_log FOR EACH STATEMENT EXECUTE FUNCTION public.pkg_audit_log_append_only();

CREATE TRIGGER pkg_facts_versioned AFTER INSERT OR DELETE OR UPDATE ON public.pkg_facts FOR EACH ROW EXECUTE FUNCTION public.pkg_facts_changed();

CREATE TRIGGER pkg_promotions_notify AFTER INSERT ON public.pkg_promotions FOR EACH ROW EXECUTE FUNCTION public.pkg_notify_promotion();

CREATE TRIGGER pkg_snapshot_facts_frozen BEFORE INSERT OR DELETE OR UPDATE ON public.pkg_facts FOR EACH ROW EXECUTE FUNCTION public.pkg_snapshot_facts_frozen();

ALTER TABLE ONLY public.pkg_audit_log
    ADD CONSTRAINT pkg_audit_log_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE RESTRICT;

ALTER TABLE ONLY public.pkg_deployments
    ADD CONSTRAINT pkg_deployments_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE RESTRICT;

ALTER TABLE ONLY public.pkg_device_versions
    ADD CONSTRAINT pkg_device_versions_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.pkg_facts
    ADD CONSTRAINT pkg_facts_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.pkg_policy_rules
    ADD CONSTRAINT pkg_policy_rules_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.pkg_promotions
    ADD CONSTRAINT pkg_promotions_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE RESTRICT;

ALTER TABLE ONLY public.pkg_rule_conditions
    ADD CONSTRAINT pkg_rule_conditions_rule_id_fkey FOREIGN KEY (rule_id) REFERENCES public.pkg_policy_rules(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.pkg_rule_emissions
    ADD CONSTRAINT pkg_rule_emissions_rule_fkey FOREIGN KEY (rule_id, snapshot_id) REFERENCES public.pkg_policy_rules(id, snapshot_id) ON DELETE CASCADE;

ALTER TABLE ONLY public.pkg_rule_emissions
    ADD CONSTRAINT pkg_rule_emissions_subtask_type_fkey FOREIGN KEY (subtask_type_id, snapshot_id) REFERENCES public.pkg_subtask_types(id, snapshot_id) ON DELETE CASCADE;

ALTER TABLE ONLY public.pkg_snapshot_artifacts
    ADD CONSTRAINT pkg_snapshot_artifacts_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.pkg_step_baselines
    ADD CONSTRAINT pkg_step_baselines_deployment_uid_step_started_at_fkey FOREIGN KEY (deployment_uid, step_started_at) REFERENCES public.pkg_step_baseline_marks(deployment_uid, step_started_at) ON DELETE CASCADE;

ALTER TABLE ONLY public.pkg_subtask_types
    ADD CONSTRAINT pkg_subtask_types_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.pkg_validation_fixtures
    ADD CONSTRAINT pkg_validation_fixtures_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.pkg_validation_runs
    ADD CONSTRAINT pkg_validation_runs_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES public.pkg_snapshots(id) ON DELETE RESTRICT;
