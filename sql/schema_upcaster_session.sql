-- A function upcaster runs another role's code inside the reader's session
-- (sandbox.c, shared with projection handlers): besides the settings it
-- changes (schema_upcasters), it leaves no session-level advisory lock,
-- prepared statement or loaded library behind, and cannot use the
-- reader's prepared statements or cursors.
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.err(sql text, OUT code text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    code := 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;

-- a session-level advisory lock is released and refused (55000)
CREATE FUNCTION public.locking_upcaster(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_lock(4811);
    PERFORM pg_catalog.pg_advisory_lock_shared(4813);
    RETURN d || '{"v": 2}';
END $$;
SELECT evstore.register_upcaster('Locking', 1, 2, function => 'public.locking_upcaster(jsonb)');
SELECT evstore.append_event('locking-1', 'Locking', '{}', '{"schema_version": 1}') IS NOT NULL AS appended;
-- the reader's own advisory lock is left alone
SELECT pg_advisory_lock(4800);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_stream('locking-1')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10)$$);
SELECT * FROM pg_temp.err($$SELECT evstore.upcast(e) FROM evstore.events e WHERE stream_id = 'locking-1'$$);
SELECT data FROM evstore.read_stream('locking-1');
SELECT objid, mode FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid() ORDER BY objid, mode;
SELECT pg_advisory_unlock(4800);
-- raw reads do not run it
SET evstore.upcast = off;
SELECT data FROM evstore.read_stream('locking-1');
RESET evstore.upcast;

-- a transaction-level advisory lock is the transaction's business
CREATE FUNCTION public.xact_locking_upcaster(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(4812);
    RETURN d || '{"v": 2}';
END $$;
SELECT evstore.register_upcaster('XactLocking', 1, 2, function => 'public.xact_locking_upcaster(jsonb)');
SELECT evstore.append_event('xact-locking-1', 'XactLocking', '{}', '{"schema_version": 1}') IS NOT NULL AS appended;
SELECT evstore.append_event('xact-locking-1', 'XactLocking', '{}', '{"schema_version": 1}') IS NOT NULL AS appended;
BEGIN;
SELECT data FROM evstore.read_stream('xact-locking-1');
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objid = 4812;
COMMIT;
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- statements that leave session state behind or reach the reader's (42501)
CREATE FUNCTION public.stmt_upcaster(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE d->>'sql';
    RETURN d || '{"v": 2}';
END $$;
SELECT evstore.register_upcaster('Stmt', 1, 2, function => 'public.stmt_upcaster(jsonb)');
SELECT evstore.append_event('stmt-' || n, 'Stmt', jsonb_build_object('sql', s), '{"schema_version": 1}') IS NOT NULL AS appended
  FROM (VALUES (1, 'PREPARE upcaster_stmt AS SELECT 1'), (2, 'DEALLOCATE ALL'),
               (3, 'EXECUTE reader_stmt'), (4, 'LOAD ''plpgsql'''),
               (5, 'CLOSE ALL'), (6, 'SELECT 1')) v(n, s);
PREPARE reader_stmt AS SELECT 1;
SELECT n, e.* FROM generate_series(1, 6) n,
    LATERAL pg_temp.err(format($$SELECT * FROM evstore.read_stream('stmt-%s')$$, n)) e;
SELECT name FROM pg_prepared_statements ORDER BY name;
DEALLOCATE reader_stmt;

-- upcasting for a projection: the upcaster answers for what it leaves,
-- not the projection (nor the other way round)
CREATE TABLE public.seen (data jsonb);
CREATE FUNCTION public.seen_handler(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen VALUES (e.data);
END $$;
SELECT evstore.create_projection('seen', 'public.seen_handler(evstore.events)', event_types => ARRAY['Locking']);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('locking-2', 'Locking', '{}', '{"schema_version": 1}')$$);
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT evstore.drop_projection('seen');
-- a projection that takes a session lock and reads through a (clean)
-- function upcaster: the projection is refused, the upcaster is not blamed
CREATE FUNCTION public.clean_upcaster(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d || '{"v": 2}' $$;
SELECT evstore.register_upcaster('Clean', 1, 2, function => 'public.clean_upcaster(jsonb)');
SELECT evstore.append_event('clean-1', 'Clean', '{}', '{"schema_version": 1}') IS NOT NULL AS appended;
CREATE FUNCTION public.clean_handler(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen SELECT r.data FROM evstore.read_stream('clean-1') r;
END $$;
SELECT evstore.create_projection('clean', 'public.clean_handler(evstore.events)', event_types => ARRAY['Trigger']);
SELECT evstore.append_event('trigger-0', 'Trigger', '{}') IS NOT NULL AS appended;
SELECT data FROM public.seen;
SELECT evstore.drop_projection('clean');
CREATE FUNCTION public.reading_handler(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_lock(4820);
    INSERT INTO public.seen SELECT r.data FROM evstore.read_stream('clean-1') r;
END $$;
SELECT evstore.create_projection('reading', 'public.reading_handler(evstore.events)', event_types => ARRAY['Trigger']);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('trigger-1', 'Trigger', '{}')$$);
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT count(*) FROM public.seen;
SELECT evstore.drop_projection('reading');
DROP TABLE public.seen;
