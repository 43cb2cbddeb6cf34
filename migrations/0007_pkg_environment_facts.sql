-- 0007 PKG environment facts: temporal facts as their own versioned data set per
-- environment, and snapshot facts frozen with their snapshot.
--
-- Before this, a fact stored without a snapshot reached no evaluator, and a fact
-- added to a stored snapshot changed an "immutable" snapshot without a new
-- version. Now:
--
-- * pkg_facts.env says which environment an environment fact (snapshot_id NULL)
--   belongs to. NULL there (rows written before this migration) means every
--   environment.
-- * Every change to environment facts (insert, update such as an early expiry,
--   delete) gives the environments it touches a new version in
--   pkg_facts_versions, drawn from one sequence so that versions only grow, and
--   sends NOTIFY pkg_facts with the environment. The operator publishes the
--   version as the facts level pkg:facts:{env} in Redis; sidecars load the set.
--   A fact that expires by its valid_to changes no version: validity is judged
--   at evaluation time.
-- * A snapshot's own facts (snapshot_id set) are part of its checksummed
--   content: they may only be written in the transaction that stores the
--   snapshot, and are deleted only with it.

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

ALTER TABLE pkg_facts ADD COLUMN env pkg_env;

COMMENT ON COLUMN pkg_facts.env IS 'An environment fact''s environment (NULL with snapshot_id NULL: every environment); NULL for snapshot facts.';

CREATE SEQUENCE pkg_facts_version_seq AS bigint MINVALUE 1;

CREATE TABLE pkg_facts_versions (
    env pkg_env PRIMARY KEY,
    version bigint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pkg_facts_versions_version_check CHECK (version >= 0)
);

COMMENT ON TABLE pkg_facts_versions IS 'The version of each environment''s fact set: grows on every change to its facts.';

INSERT INTO pkg_facts_versions (env, version)
SELECT e, 0 FROM unnest(enum_range(NULL::pkg_env)) AS e;

-- The version of an environment's fact set (0 before its first change).
CREATE FUNCTION pkg_facts_version(p_env pkg_env)
RETURNS bigint
LANGUAGE sql
STABLE
AS $$
    SELECT coalesce((SELECT version FROM pkg_facts_versions WHERE env = p_env), 0)
$$;

CREATE FUNCTION pkg_bump_facts_version(p_env pkg_env)
RETURNS void
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

CREATE FUNCTION pkg_facts_changed()
RETURNS trigger
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

CREATE TRIGGER pkg_facts_versioned
    AFTER INSERT OR UPDATE OR DELETE ON pkg_facts
    FOR EACH ROW EXECUTE FUNCTION pkg_facts_changed();

-- A snapshot's facts are written only by the transaction that stores the
-- snapshot (its row's xmin), and deleted only with it (the row is gone).
CREATE FUNCTION pkg_snapshot_facts_frozen()
RETURNS trigger
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

CREATE TRIGGER pkg_snapshot_facts_frozen
    BEFORE INSERT OR UPDATE OR DELETE ON pkg_facts
    FOR EACH ROW EXECUTE FUNCTION pkg_snapshot_facts_frozen();
