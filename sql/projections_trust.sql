-- Projections and the sessions that feed them (issue 12, items 1, 2, 17):
-- a projection cannot change the appender's session, a revoked right stops
-- it at the next append, and it resolves names with its creator's
-- search_path, whoever appends.
CREATE DATABASE proj_trust;
\c proj_trust
CREATE EXTENSION evstore;
\set VERBOSITY default

CREATE ROLE regress_trust_low;
GRANT USAGE ON SCHEMA evstore TO regress_trust_low;
GRANT SELECT ON evstore.events TO regress_trust_low;
GRANT EXECUTE ON FUNCTION
    evstore.create_projection(text, regprocedure, text[], text[], regprocedure, boolean),
    evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[], boolean),
    evstore.drop_projection(text, boolean),
    evstore.rebuild_projection(text, integer)
TO regress_trust_low;
CREATE SCHEMA trap AUTHORIZATION regress_trust_low;

-- ---------------------------------------------------------------------
-- 1. The escalation: a role that may create projections makes its handler
-- put its own lower() first in the appender's search_path, and waits for a
-- superuser to append and then call lower().
-- ---------------------------------------------------------------------
SET ROLE regress_trust_low;
CREATE FUNCTION trap.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE regress_trust_low SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN pg_catalog.lower($1);
END $$;
CREATE FUNCTION trap.settings(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'trap, pg_catalog, public', false);
    PERFORM pg_catalog.set_config('statement_timeout', '4711s', false);
    SET default_transaction_read_only = on;
    SET LOCAL work_mem = '4711kB';
    PERFORM pg_catalog.pg_advisory_xact_lock(4712);	-- allowed: ends with the transaction
END $$;
SELECT evstore.create_projection('settings', 'trap.settings(evstore.events)',
    categories => ARRAY['settings']);
RESET ROLE;

SHOW search_path;
SHOW statement_timeout;
SHOW default_transaction_read_only;
SHOW work_mem;
SELECT stream_version FROM evstore.append_event('settings-1', 'Touched', '{}');
-- the superuser's session is as before
SHOW search_path;
SHOW statement_timeout;
SHOW default_transaction_read_only;
SHOW work_mem;
-- (read-write explicitly: were default_transaction_read_only still on, the
-- trap's ALTER ROLE would fail for that reason alone)
BEGIN READ WRITE;
SELECT lower('ESCALATED?');
COMMIT;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_trust_low';
-- inside a transaction too, where the appender's own SET LOCAL stays
BEGIN;
SET LOCAL statement_timeout = '5s';
SELECT stream_version FROM evstore.append_events('settings-2',
    '[{"type": "Touched", "data": {}}, {"type": "Touched", "data": {}}]');
SHOW statement_timeout;
SHOW search_path;
-- the handler's transaction-level advisory lock is the transaction's
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objid = 4712;
COMMIT;
SHOW statement_timeout;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_trust_low';
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- a session-level advisory lock is released and refused
SET ROLE regress_trust_low;
CREATE FUNCTION trap.session_lock(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_lock(4711);
    PERFORM pg_catalog.pg_advisory_lock_shared(4713);
END $$;
SELECT evstore.create_projection('session_lock', 'trap.session_lock(evstore.events)',
    categories => ARRAY['lock']);
RESET ROLE;
-- the appender's own advisory locks are left alone
SELECT pg_advisory_lock(4700);
SELECT stream_version FROM evstore.append_event('lock-1', 'Touched', '{}');
SELECT objid, mode FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid() ORDER BY objid;
SELECT pg_advisory_unlock(4700);
SELECT count(*) FROM evstore.events WHERE stream_id = 'lock-1';

-- statements that leave session state behind or reach the appender's
SET ROLE regress_trust_low;
CREATE FUNCTION trap.stmt(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE e.data->>'sql';
END $$;
SELECT evstore.create_projection('stmt', 'trap.stmt(evstore.events)',
    categories => ARRAY['stmt']);
RESET ROLE;
CREATE TEMP TABLE appender_temp (x int);	-- the session has a temporary schema
PREPARE appender_stmt AS SELECT 1;
SELECT evstore.append_event('stmt-1', 'Run', '{"sql": "PREPARE trap_stmt AS SELECT 1"}');
SELECT evstore.append_event('stmt-1', 'Run', '{"sql": "DEALLOCATE ALL"}');
SELECT evstore.append_event('stmt-1', 'Run', '{"sql": "EXECUTE appender_stmt"}');
SELECT evstore.append_event('stmt-1', 'Run', '{"sql": "LOAD ''plpgsql''"}');
SELECT evstore.append_event('stmt-1', 'Run', '{"sql": "CLOSE ALL"}');
\set VERBOSITY sqlstate
-- refused by the security-restricted operation itself
SELECT evstore.append_event('stmt-1', 'Run', '{"sql": "LISTEN trap"}');
SELECT evstore.append_event('stmt-1', 'Run', '{"sql": "CREATE TEMP TABLE trap_temp (x int)"}');
SELECT evstore.append_event('stmt-1', 'Run', '{"sql": "DISCARD ALL"}');
SELECT evstore.append_event('stmt-1', 'Run', '{"sql": "SET ROLE regress_trust_low"}');
\set VERBOSITY default
SELECT name FROM pg_prepared_statements ORDER BY name;
SELECT count(*) FROM pg_listening_channels();
SELECT count(*) FROM pg_class WHERE relname = 'trap_temp';
SELECT count(*) FROM evstore.events WHERE stream_id = 'stmt-1';

-- an attribute sync too: what its target fires runs under the same rules,
-- and resolves names with the creator's search_path
SET ROLE regress_trust_low;
CREATE TABLE trap.model (id text PRIMARY KEY, n int);
CREATE TABLE trap.model_log (id text);
CREATE FUNCTION trap.model_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('statement_timeout', '4711s', false);
    insert into model_log values (NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER model_trigger AFTER INSERT OR UPDATE ON trap.model
    FOR EACH ROW EXECUTE FUNCTION trap.model_trigger();
SET search_path = trap;
SELECT evstore.create_sync_projection('model', 'trap.model', 'id', 'stream_id',
    categories => ARRAY['model']);
RESET search_path;
RESET ROLE;
SELECT stream_version FROM evstore.append_event('model-1', 'Set', '{"n": 1}');
SHOW statement_timeout;
SHOW search_path;
SELECT * FROM trap.model;
SELECT * FROM trap.model_log;
SELECT evstore.drop_projection('model');

-- a rebuild by a superuser runs the reset function under the same rules
SET ROLE regress_trust_low;
CREATE FUNCTION trap.reset() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'trap, pg_catalog', false);
END $$;
SELECT evstore.drop_projection('settings');
SELECT evstore.create_projection('settings', 'trap.settings(evstore.events)',
    categories => ARRAY['settings'], reset_function => 'trap.reset()');
RESET ROLE;
SELECT evstore.rebuild_projection('settings', 0);
SHOW search_path;
SHOW statement_timeout;
SHOW default_transaction_read_only;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_trust_low';
SET ROLE regress_trust_low;
CREATE FUNCTION trap.reset_lock() RETURNS void LANGUAGE sql
    AS 'SELECT pg_catalog.pg_advisory_lock(4714)';
SELECT evstore.create_projection('reset_lock', 'trap.settings(evstore.events)',
    categories => ARRAY['none'], reset_function => 'trap.reset_lock()');
RESET ROLE;
SELECT evstore.rebuild_projection('reset_lock', 0);
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT evstore.drop_projection('settings'), evstore.drop_projection('session_lock'),
       evstore.drop_projection('stmt'), evstore.drop_projection('reset_lock');

-- ---------------------------------------------------------------------
-- 17. Names resolve with the creator's search_path, captured at creation,
-- whatever the appender's; the appender's temporary tables come last.
-- ---------------------------------------------------------------------
CREATE SCHEMA app AUTHORIZATION regress_trust_low;
SET ROLE regress_trust_low;
CREATE TABLE app.calls (stream_id text, n int);
CREATE FUNCTION app.count_call(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    insert into calls values (e.stream_id, 1);
END $$;
CREATE FUNCTION app.missing(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    insert into no_such_table values (e.stream_id);
END $$;
SET search_path = pg_temp, app, public;
SELECT evstore.create_projection('calls', 'count_call(evstore.events)',
    categories => ARRAY['call']);
SELECT evstore.create_projection('missing', 'missing(evstore.events)',
    categories => ARRAY['missing']);
RESET search_path;
RESET ROLE;
SELECT name, search_path FROM evstore.projections ORDER BY name;
-- the appender has its own "calls" first in line: temporary, then public
CREATE TEMP TABLE calls (stream_id text, n int);
CREATE TABLE public.calls (stream_id text, n int);
SET search_path = public;
SELECT stream_version FROM evstore.append_event('call-1', 'Called', '{}');
SELECT * FROM app.calls;
SELECT count(*) FROM pg_temp.calls;
SELECT count(*) FROM public.calls;
SHOW search_path;
RESET search_path;
-- a name the handler cannot resolve: the hint names the projection's search_path
\set SHOW_CONTEXT never
SELECT evstore.append_event('missing-1', 'Called', '{}');
\set SHOW_CONTEXT errors
-- the appender need not see the handlers' schema
CREATE ROLE regress_trust_appender;
GRANT USAGE ON SCHEMA evstore TO regress_trust_appender;
GRANT EXECUTE ON FUNCTION evstore.append_event(text, text, jsonb, jsonb, bigint, uuid)
    TO regress_trust_appender;
SET ROLE regress_trust_appender;
SELECT stream_version FROM evstore.append_event('call-2', 'Called', '{}');
RESET ROLE;
SELECT * FROM app.calls ORDER BY stream_id;
SELECT evstore.drop_projection('calls'), evstore.drop_projection('missing');
DROP TABLE pg_temp.calls, public.calls;

-- ---------------------------------------------------------------------
-- 2. A revoked right stops the projection at the next append, through
-- invalidation: SELECT on evstore.events, EXECUTE on the handler, a role
-- membership, a right on the sync target.  The append fails, naming the
-- projection; granting the right again restores it.
-- ---------------------------------------------------------------------
CREATE ROLE regress_trust_owner;
CREATE ROLE regress_trust_readers;
GRANT USAGE ON SCHEMA evstore TO regress_trust_owner;
GRANT EXECUTE ON FUNCTION
    evstore.create_projection(text, regprocedure, text[], text[], regprocedure, boolean),
    evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[], boolean),
    evstore.drop_projection(text, boolean)
TO regress_trust_owner;
GRANT SELECT ON evstore.events TO regress_trust_readers;
GRANT regress_trust_readers TO regress_trust_owner;
CREATE TABLE copied (stream_id text PRIMARY KEY, n int);
GRANT SELECT, INSERT, UPDATE ON copied TO regress_trust_owner;
CREATE TABLE copied_log (stream_id text);
GRANT INSERT ON copied_log TO regress_trust_owner;
CREATE FUNCTION copy_handler(e evstore.events) RETURNS void LANGUAGE sql
    AS 'INSERT INTO public.copied_log VALUES (e.stream_id)';
REVOKE EXECUTE ON FUNCTION copy_handler(evstore.events) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION copy_handler(evstore.events) TO regress_trust_owner;
SET ROLE regress_trust_owner;
SELECT evstore.create_projection('copy_handler', 'public.copy_handler(evstore.events)',
    categories => ARRAY['h']);
SELECT evstore.create_sync_projection('copy_sync', 'public.copied', 'stream_id',
    categories => ARRAY['s']);
RESET ROLE;
GRANT SELECT ON evstore.events TO regress_trust_owner;	-- directly too
SELECT stream_version FROM evstore.append_event('h-1', 'E', '{"n": 1}');
SELECT stream_version FROM evstore.append_event('s-1', 'E', '{"n": 1}');

-- SELECT on the events, revoked directly and through the role: both stop
REVOKE SELECT ON evstore.events FROM regress_trust_owner;
SELECT stream_version FROM evstore.append_event('h-2', 'E', '{"n": 2}');
REVOKE regress_trust_readers FROM regress_trust_owner;
SELECT evstore.append_event('h-2', 'E', '{"n": 2}');
SELECT evstore.append_event('s-2', 'E', '{"n": 2}');
SELECT count(*) FROM evstore.events WHERE stream_id IN ('h-2', 's-2');
GRANT regress_trust_readers TO regress_trust_owner;
SELECT stream_version FROM evstore.append_event('h-2', 'E', '{"n": 2}');
SELECT stream_version FROM evstore.append_event('s-2', 'E', '{"n": 2}');
REVOKE regress_trust_readers FROM regress_trust_owner;
GRANT SELECT ON evstore.events TO regress_trust_owner;
SELECT stream_version FROM evstore.append_event('h-3', 'E', '{"n": 3}');
-- now held directly only
REVOKE SELECT ON evstore.events FROM regress_trust_owner;
SELECT evstore.append_event('h-3', 'E', '{"n": 3}');
SELECT evstore.append_event('s-2', 'E', '{"n": 3}');
GRANT SELECT ON evstore.events TO regress_trust_owner;
SELECT stream_version FROM evstore.append_event('s-2', 'E', '{"n": 3}');

-- EXECUTE on the handler
REVOKE EXECUTE ON FUNCTION copy_handler(evstore.events) FROM regress_trust_owner;
SELECT evstore.append_event('h-4', 'E', '{"n": 4}');
GRANT EXECUTE ON FUNCTION copy_handler(evstore.events) TO regress_trust_owner;
SELECT stream_version FROM evstore.append_event('h-4', 'E', '{"n": 4}');

-- a right on the sync target
REVOKE INSERT ON copied FROM regress_trust_owner;
SELECT evstore.append_event('s-3', 'E', '{"n": 3}');
GRANT INSERT ON copied TO regress_trust_owner;
SELECT stream_version FROM evstore.append_event('s-3', 'E', '{"n": 3}');

SELECT * FROM copied_log ORDER BY stream_id;
SELECT * FROM copied ORDER BY stream_id;
SELECT name, last_error FROM evstore.projections ORDER BY name;
SELECT evstore.drop_projection('copy_handler'), evstore.drop_projection('copy_sync');

\c contrib_regression
DROP DATABASE proj_trust;
DROP ROLE regress_trust_low, regress_trust_owner, regress_trust_readers, regress_trust_appender;
