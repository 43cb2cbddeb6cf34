-- 0003 A tamper-evident audit log: a hash chain over every governance event.
--
-- Each row's hash covers its own content and the previous row's hash, so an
-- edited row no longer matches its hash, and a deleted row breaks the link of
-- the row after it. pkg_audit_head holds the last id and hash: it detects rows
-- cut off the end, and its row lock serializes appends so the chain is linear.
-- Appends happen in the same transaction as the change they record.
--
-- The hashed message is a sequence of netstrings ("<bytes>:<text>," or "~" for
-- NULL) of: 'pkg-audit-v1', prev_hash, id, created_at as integer microseconds
-- since the Unix epoch, action, actor, entity_type, entity_id, snapshot_id,
-- details as jsonb text, idempotency_key; hash = sha256 hex of its UTF-8 bytes.
-- evaluator_sidecar.db.audit_chain recomputes the same thing in Python, so a
-- verifier need not trust these functions.

-- Never queue behind a long lock, never run unbounded: both apply to this
-- file's transaction only.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE pkg_audit_log (
    -- Assigned under the head lock (not from a sequence): ids are gap-free and
    -- their order is the chain's order even when transactions interleave.
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    action text NOT NULL,
    actor text NOT NULL,
    entity_type text NOT NULL,
    entity_id text NOT NULL,
    -- RESTRICT: audit history outlives nothing it mentions; snapshots are archived.
    snapshot_id bigint REFERENCES pkg_snapshots (id) ON DELETE RESTRICT,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Every idempotency key a writer ever used (rollout steps, operator events).
    idempotency_key text,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    CONSTRAINT pkg_audit_log_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT pkg_audit_log_action_check
        CHECK (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    CONSTRAINT pkg_audit_log_actor_check CHECK (actor <> ''),
    CONSTRAINT pkg_audit_log_entity_type_check CHECK (entity_type <> ''),
    CONSTRAINT pkg_audit_log_details_check CHECK (jsonb_typeof(details) = 'object'),
    CONSTRAINT pkg_audit_log_prev_hash_check CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT pkg_audit_log_hash_check CHECK (hash ~ '^[0-9a-f]{64}$')
);

CREATE INDEX pkg_audit_log_entity ON pkg_audit_log (entity_type, entity_id, id);
CREATE INDEX pkg_audit_log_snapshot ON pkg_audit_log (snapshot_id, id) WHERE snapshot_id IS NOT NULL;
CREATE INDEX pkg_audit_log_action ON pkg_audit_log (action, id);

COMMENT ON TABLE pkg_audit_log IS 'Append-only hash chain of governance events; verify with pkg_verify_audit_chain().';

CREATE TABLE pkg_audit_head (
    singleton boolean PRIMARY KEY DEFAULT true,
    last_id bigint NOT NULL,
    last_hash text NOT NULL,
    CONSTRAINT pkg_audit_head_singleton_check CHECK (singleton),
    CONSTRAINT pkg_audit_head_last_hash_check CHECK (last_hash ~ '^[0-9a-f]{64}$')
);

INSERT INTO pkg_audit_head (singleton, last_id, last_hash) VALUES (true, 0, repeat('0', 64));

CREATE FUNCTION pkg_audit_netstring(value text) RETURNS text
    LANGUAGE sql STABLE
    AS $$
        SELECT CASE WHEN value IS NULL THEN '~'
                    ELSE octet_length(convert_to(value, 'UTF8'))::text || ':' || value || ','
               END
    $$;

CREATE FUNCTION pkg_audit_hash(
    prev_hash text, id bigint, created_at timestamptz, action text, actor text,
    entity_type text, entity_id text, snapshot_id bigint, details jsonb, idempotency_key text
) RETURNS text
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

-- Fills id, created_at, prev_hash and hash of every new row, whoever inserts
-- it, and moves the head. The head's row lock is held until commit: writers
-- append last in their transactions so the lock is short.
CREATE FUNCTION pkg_audit_log_chain() RETURNS trigger
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

CREATE TRIGGER pkg_audit_log_chain BEFORE INSERT ON pkg_audit_log
    FOR EACH ROW EXECUTE FUNCTION pkg_audit_log_chain();

-- Ordinary roles cannot rewrite history; a superuser who bypasses triggers
-- (session_replication_role = replica) still leaves a break that
-- pkg_verify_audit_chain() reports.
CREATE FUNCTION pkg_audit_log_append_only() RETURNS trigger
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

CREATE TRIGGER pkg_audit_log_append_only BEFORE UPDATE OR DELETE ON pkg_audit_log
    FOR EACH ROW EXECUTE FUNCTION pkg_audit_log_append_only();
CREATE TRIGGER pkg_audit_log_no_truncate BEFORE TRUNCATE ON pkg_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION pkg_audit_log_append_only();
CREATE TRIGGER pkg_audit_head_guard BEFORE UPDATE OR DELETE ON pkg_audit_head
    FOR EACH ROW EXECUTE FUNCTION pkg_audit_log_append_only();
CREATE TRIGGER pkg_audit_head_no_truncate BEFORE TRUNCATE ON pkg_audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION pkg_audit_log_append_only();

-- The one way to append from SQL; the client calls it too.
CREATE FUNCTION pkg_audit_append(
    p_action text, p_actor text, p_entity_type text, p_entity_id text,
    p_details jsonb DEFAULT '{}'::jsonb, p_snapshot_id bigint DEFAULT NULL,
    p_idempotency_key text DEFAULT NULL
) RETURNS bigint
    LANGUAGE sql
    AS $$
        -- id, created_at, prev_hash and hash come from the chain trigger.
        INSERT INTO pkg_audit_log (action, actor, entity_type, entity_id, details, snapshot_id,
                                   idempotency_key)
        VALUES (p_action, p_actor, p_entity_type, p_entity_id, coalesce(p_details, '{}'::jsonb),
                p_snapshot_id, p_idempotency_key)
        RETURNING id
    $$;

-- Walks the chain up to the head and reports the first broken link: ok is
-- true and broken_id NULL when the chain is whole. problem is one of
-- missing_rows, prev_hash_mismatch, hash_mismatch, head_mismatch.
CREATE FUNCTION pkg_verify_audit_chain()
RETURNS TABLE (ok boolean, rows_checked bigint, broken_id bigint, problem text,
               expected text, stored text)
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
