-- 0005 PKG desired levels: epochs for the desired states in Redis come from
-- PostgreSQL, and every promotion is announced to the operator.
--
-- Redis may run without persistence. Its counter pkg:epoch restarted at 1 after
-- a restart, so a promotion written then carried an epoch below the one the
-- sidecars held, and they ignored it. The sequence below survives any Redis:
-- epochs only ever grow. pkg_next_desired_epoch(floor) also moves past a floor
-- the caller found in Redis (a level written by hand with a huge epoch), so the
-- repair of such a level is newer than it.
--
-- pkg_promotions gets a trigger that sends NOTIFY pkg_promotions with the
-- environment, so the operator rewrites the level at once after a promotion made
-- by any path (the operator, PKGClient.promote_snapshot(), SQL by hand).

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE SEQUENCE pkg_desired_epoch_seq AS bigint MINVALUE 1;

-- The next epoch, greater than p_floor. Callers serialize on an advisory lock
-- so that two of them moving the sequence past a floor never get one epoch.
CREATE FUNCTION pkg_next_desired_epoch(p_floor bigint DEFAULT 0)
RETURNS bigint
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

CREATE FUNCTION pkg_notify_promotion()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('pkg_promotions', NEW.env::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER pkg_promotions_notify
    AFTER INSERT ON pkg_promotions
    FOR EACH ROW EXECUTE FUNCTION pkg_notify_promotion();
