-- Bad input: every case fails with a clear message and SQLSTATE and writes nothing.
-- every test file starts from an empty store
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.err(sql text, OUT code text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    code := 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END $$;
CREATE FUNCTION pg_temp.ctx(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE c text;
BEGIN
    EXECUTE sql;
    RETURN 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS c = PG_EXCEPTION_CONTEXT;
    RETURN split_part(c, E'\n', 1);
END $$;

-- append_event
SELECT * FROM pg_temp.err($$SELECT evstore.append_event(NULL, 'T', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('', 'T', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event(repeat('s', 1025), 'T', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('s-1', NULL, '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('s-1', '', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('s-1', repeat('t', 1025), '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('s-1', 'T', NULL)$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('s-1', 'T', 'not json')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('s-1', 'T', '{}', '[1, 2]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('s-1', 'T', '{}', '"text"')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('s-1', 'T', '{}', NULL, -3)$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('s-1', 'T', '{}', NULL, NULL, 'not-a-uuid')$$);

-- append_events
SELECT * FROM pg_temp.err($$SELECT evstore.append_events(NULL, '[{"type":"T","data":{}}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', NULL)$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '{"type":"T","data":{}}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '"x"')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '42')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[1]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[[{"type":"T","data":{}}]]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"data":{}}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"type":null,"data":{}}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"type":7,"data":{}}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"type":"","data":{}}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"type":"T"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"type":"T","data":{},"metadata":[1]}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"type":"T","data":{},"metadata":"m"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"type":"T","data":{},"id":"zzz"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"type":"T","data":{},"id":17}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', '[{"type":"T","data":{},"event_type":"T"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('s-1', 'not json')$$);
-- the error names the offending event of the batch
SELECT pg_temp.ctx($$SELECT evstore.append_events('s-1', '[{"type":"T","data":{}},{"type":"T","data":{}},{"type":"T"}]')$$);

-- size limits: a 10 MB payload and a 10,000-event batch exceed the defaults
SHOW evstore.max_event_size;
SHOW evstore.max_batch_events;
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('big-1', 'Big', jsonb_build_object('blob', repeat('x', 10 * 1024 * 1024)))$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('big-2', (SELECT jsonb_agg(jsonb_build_object('type', 'T', 'data', i)) FROM generate_series(1, 10000) i))$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('big-3', jsonb_build_array(jsonb_build_object('type', 'T', 'data', repeat('x', 2 * 1024 * 1024))))$$);
SELECT count(*) AS events_written FROM evstore.events;
-- raised limits let them through
SET evstore.max_event_size = '16MB';
SET evstore.max_batch_events = 10000;
SELECT * FROM evstore.append_event('big-1', 'Big', jsonb_build_object('blob', repeat('x', 10 * 1024 * 1024)));
SELECT * FROM evstore.append_events('big-2', (SELECT jsonb_agg(jsonb_build_object('type', 'T', 'data', i)) FROM generate_series(1, 10000) i));
SELECT length(data->>'blob') FROM evstore.read_stream('big-1');
SELECT count(*), min(stream_version), max(stream_version), sum((data)::int) FROM evstore.read_stream('big-2');
RESET evstore.max_event_size;
RESET evstore.max_batch_events;
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('big-1', 'Big', jsonb_build_object('blob', repeat('x', 2 * 1024 * 1024)))$$);
SELECT * FROM pg_temp.err($$SET evstore.max_batch_events = 0$$);

-- read_stream / stream_version / read_all
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_stream(NULL)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_stream('')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_stream('big-2', -1)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_stream('big-2', 0, -1)$$);
SELECT evstore.stream_version(NULL);
SELECT * FROM pg_temp.err($$SELECT evstore.stream_version('')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(-1)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 0)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, -5)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, group_member => 0)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, group_size => 2)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, group_member => 2, group_size => 2)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, group_member => -1, group_size => 2)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, group_member => 0, group_size => 0)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, group_member => 0, group_size => 257)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, categories => ARRAY['a', NULL])$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, event_types => ARRAY[NULL]::text[])$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, categories => ARRAY[['a'], ['b']])$$);

-- prepared transactions cannot hold appends (they would block subscriptions)
BEGIN;
SELECT stream_version FROM evstore.append_event('prep-1', 'T', '{}');
PREPARE TRANSACTION 'evstore_prep';
SELECT evstore.stream_version('prep-1');
SELECT count(*) FROM pg_prepared_xacts;
