-- 0008 PKG sidecar reader: a least-privilege PostgreSQL role for the evaluator sidecars.
--
-- Sidecars only read snapshots (evaluator_sidecar/store/snapshot_reads.py:
-- get_active_snapshot, get_snapshot_by_version) and their environment's fact
-- set with its version (store/temporal_facts.py: environment_facts,
-- facts_version, which reads pkg_facts_versions). The NOLOGIN role
-- pkg_sidecar_reader may SELECT exactly the tables those reads touch and
-- nothing else: no INSERT/UPDATE/DELETE anywhere, no sequence, and no table of
-- promotions, deployments, devices or audit. Give a sidecar's login that role:
--
--     CREATE ROLE pkg_sidecar LOGIN PASSWORD '...' IN ROLE pkg_sidecar_reader;
--
-- Roles belong to the whole server, not to one database, hence:
-- - CREATE ROLE runs only when the role does not exist yet, so this migration
--   works in a second database of the same server, and two runners racing on
--   two databases do not fail (duplicate_object is taken as "exists");
-- - a migrating user without CREATEROLE (common on managed PostgreSQL) gets a
--   WARNING instead of a failure: an administrator creates the role
--   (CREATE ROLE pkg_sidecar_reader NOLOGIN;) and then runs
--   SELECT pkg_grant_sidecar_reader(); which applies the grants below. The
--   grants are per database: run it in each database the sidecars read.
-- Run twice, the function's GRANTs change nothing (GRANT is idempotent).

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pkg_sidecar_reader') THEN
        BEGIN
            CREATE ROLE pkg_sidecar_reader NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a runner on another database of this server
            WHEN insufficient_privilege THEN
                RAISE WARNING 'cannot create role pkg_sidecar_reader (%): as an administrator, '
                    'run CREATE ROLE pkg_sidecar_reader NOLOGIN; then SELECT '
                    'pkg_grant_sidecar_reader(); in this database', SQLERRM;
        END;
    END IF;
END
$$;

-- The sidecar's grants in the current database; false when the role is missing.
CREATE FUNCTION pkg_grant_sidecar_reader()
RETURNS boolean
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

SELECT pkg_grant_sidecar_reader();
