-- Sanity checks of a migrated PKG database, in psql:
--
--     psql "$PKG_DATABASE_URL" -X -f migrations/verify_pkg_migrations.sql
--
-- Exits non-zero (ON_ERROR_STOP, RAISE) when an expected table, view, type,
-- function, index or trigger is missing, when pkg_check_integrity() reports a
-- problem, or when the audit chain is broken; otherwise prints a report: active
-- snapshots, artifacts, rule/subtask integrity, temporal facts, deployment
-- coverage, applied migrations. Read-only.

\set ON_ERROR_STOP on
\pset pager off
SET client_min_messages = warning;
BEGIN READ ONLY;

\echo '== database objects'
DO $$
DECLARE
    v_missing text[] := '{}';
    v_name text;
BEGIN
    FOREACH v_name IN ARRAY ARRAY[
        'schema_migrations', 'pkg_snapshots', 'pkg_subtask_types', 'pkg_policy_rules',
        'pkg_rule_conditions', 'pkg_rule_emissions', 'pkg_snapshot_artifacts',
        'pkg_deployments', 'pkg_facts', 'pkg_validation_fixtures', 'pkg_validation_runs',
        'pkg_promotions', 'pkg_device_versions', 'pkg_audit_log', 'pkg_audit_head']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = to_regclass(v_name) AND c.relkind = 'r') THEN
            v_missing := v_missing || ('table ' || v_name);
        END IF;
    END LOOP;
    FOREACH v_name IN ARRAY ARRAY['pkg_active_artifact', 'pkg_rules_expanded', 'pkg_deployment_coverage']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = to_regclass(v_name) AND c.relkind = 'v') THEN
            v_missing := v_missing || ('view ' || v_name);
        END IF;
    END LOOP;
    FOREACH v_name IN ARRAY ARRAY['pkg_env', 'pkg_engine', 'pkg_condition_type', 'pkg_operator',
                                  'pkg_relation', 'pkg_artifact_type']
    LOOP
        IF to_regtype(v_name) IS NULL THEN
            v_missing := v_missing || ('type ' || v_name);
        END IF;
    END LOOP;
    FOREACH v_name IN ARRAY ARRAY[
        'pkg_check_integrity()', 'pkg_active_snapshot_id(pkg_env)',
        'pkg_cohort_bucket(text,text)', 'pkg_in_canary(text,text,double precision)',
        'pkg_promote_snapshot(bigint,pkg_env,text,text,text,jsonb,text)',
        'pkg_rollback_snapshot(pkg_env,text,text,bigint,jsonb,text)',
        'pkg_archive_snapshot(bigint,text,text)', 'pkg_restore_snapshot(bigint,text,text)',
        'pkg_deployment_coverage_within(interval)', 'pkg_audit_append(text,text,text,text,jsonb,bigint,text)',
        'pkg_verify_audit_chain()', 'pkg_next_desired_epoch(bigint)', 'pkg_notify_promotion()',
        'pkg_audit_hash(text,bigint,timestamp with time zone,text,text,text,text,bigint,jsonb,text)']
    LOOP
        -- By signature text, not to_regprocedure(): that errors when a type is missing.
        IF NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid::regprocedure::text = v_name) THEN
            v_missing := v_missing || ('function ' || v_name);
        END IF;
    END LOOP;
    FOREACH v_name IN ARRAY ARRAY['pkg_snapshots_one_active_per_env', 'pkg_deployments_identity',
                                  'pkg_validation_runs_snapshot_latest']
    LOOP
        IF to_regclass(v_name) IS NULL THEN
            v_missing := v_missing || ('index ' || v_name);
        END IF;
    END LOOP;
    FOREACH v_name IN ARRAY ARRAY['pkg_audit_log_chain', 'pkg_audit_log_append_only']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgname = v_name
                          AND t.tgrelid = to_regclass('pkg_audit_log')) THEN
            v_missing := v_missing || ('trigger ' || v_name);
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgname = 'pkg_promotions_notify'
                      AND t.tgrelid = to_regclass('pkg_promotions')) THEN
        v_missing := v_missing || 'trigger pkg_promotions_notify'::text;
    END IF;
    IF to_regclass('pkg_desired_epoch_seq') IS NULL THEN
        v_missing := v_missing || 'sequence pkg_desired_epoch_seq'::text;
    END IF;
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION 'PKG schema is incomplete: missing %', array_to_string(v_missing, ', ')
            USING HINT = 'Run pkg-migrate against this database; if it reports nothing to do, '
                         'compare the schema with migrations/schema.sql.';
    END IF;
END
$$;
SELECT 'ok' AS objects;

\echo '== active snapshot per environment'
SELECT env, id, version, engine, checksum, activated_at
  FROM pkg_snapshots WHERE is_active ORDER BY env;

\echo '== artifacts of active snapshots'
SELECT env, version, artifact_type, size_bytes, sha256 FROM pkg_active_artifact ORDER BY env;

\echo '== rule / subtask integrity (pkg_check_integrity)'
SELECT * FROM pkg_check_integrity();
SELECT count(DISTINCT rule_uuid) AS rules, count(emission_id) AS emissions,
       count(DISTINCT snapshot_id) AS snapshots,
       count(*) FILTER (WHERE subtask_type_snapshot_id <> snapshot_id) AS cross_snapshot_emissions
  FROM pkg_rules_expanded;
DO $$
DECLARE
    v_issues text;
BEGIN
    SELECT string_agg(format('%s: %s', check_name, detail), '; ') INTO v_issues
      FROM pkg_check_integrity();
    IF v_issues IS NOT NULL THEN
        RAISE EXCEPTION 'PKG integrity problems: %', v_issues
            USING HINT = 'See the rows above; fix or archive the snapshots named.';
    END IF;
END
$$;

\echo '== temporal facts'
SELECT coalesce(s.version, '(global)') AS snapshot,
       count(*) FILTER (WHERE (f.valid_from IS NULL OR f.valid_from <= now())
                          AND (f.valid_to IS NULL OR now() < f.valid_to)) AS valid_now,
       count(*) FILTER (WHERE f.valid_to IS NOT NULL AND f.valid_to <= now()) AS expired,
       count(*) FILTER (WHERE f.valid_from IS NOT NULL AND f.valid_from > now()) AS future
  FROM pkg_facts f LEFT JOIN pkg_snapshots s ON s.id = f.snapshot_id
 GROUP BY 1 ORDER BY 1;

\echo '== deployment coverage (active deployments)'
SELECT environment, target, region, snapshot_version, percent, devices_on_intended,
       devices_total, devices_on_snapshot, devices_expected_on_snapshot, devices_stale, last_seen
  FROM pkg_deployment_coverage ORDER BY environment, target, region;

\echo '== audit chain'
SELECT * FROM pkg_verify_audit_chain();
DO $$
DECLARE
    v_ok boolean;
    v_id bigint;
    v_problem text;
    v_expected text;
    v_stored text;
BEGIN
    SELECT ok, broken_id, problem, expected, stored
      INTO v_ok, v_id, v_problem, v_expected, v_stored
      FROM pkg_verify_audit_chain();
    IF NOT v_ok THEN
        RAISE EXCEPTION 'audit chain broken at row %: % (expected %, stored %)',
            v_id, v_problem, v_expected, v_stored
            USING HINT = 'Audit history was changed or removed: investigate before trusting it, '
                         'and compare pkg_audit_log with a backup.';
    END IF;
END
$$;

\echo '== applied migrations'
SELECT version, name, sha256, applied_at FROM schema_migrations ORDER BY version;

COMMIT;
\echo 'PKG verification passed'
