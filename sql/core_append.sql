-- Appending: expected-version modes, batches, idempotency, errors.
-- every test file starts from an empty store
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

-- err(sql): run a statement, show its SQLSTATE, message, detail and hint.
CREATE FUNCTION pg_temp.err(sql text, OUT code text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    code := 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END $$;

-- The lead example: 7 events, versions 0..6, "Version: 6".
SELECT * FROM evstore.append_event('lead-1', 'LeadCreated', '{"name": "Kim", "phone": "010-1234"}', expected_version => -1);
SELECT * FROM evstore.append_event('lead-1', 'LeadContacted', '{}', '{"correlation_id": "c1"}', 0);
SELECT * FROM evstore.append_events('lead-1', '[
    {"type": "FollowUpSet", "data": {"at": "2026-12-01"}},
    {"type": "ContactDetailsUpdated", "data": {"phone": "010-9999"}},
    {"type": "FollowUpSet", "data": {"at": "2026-12-05"}, "metadata": {"causation_id": "x"}},
    {"type": "OrderSubmitted", "data": {"amount": 100}},
    {"type": "PaymentConfirmed", "data": {"ok": true}}
]', 1);
SELECT evstore.stream_version('lead-1');
SELECT stream_version, event_type, data, metadata, category, stream_bucket = evstore.stream_hash('lead-1') % 256 AS bucket_ok
FROM evstore.read_stream('lead-1');
SELECT stream_id, category, version, first_version, deleted_at, tombstoned FROM evstore.streams;

-- positions are strictly increasing in append order, versions consecutive
SELECT bool_and(global_position > prev) AS increasing FROM (
    SELECT global_position, lag(global_position, 1, 0::bigint) OVER (ORDER BY stream_version) AS prev
    FROM evstore.events WHERE stream_id = 'lead-1') s;

-- expected_version modes
SELECT * FROM evstore.append_event('lead-1', 'X', '{}', NULL, 6);         -- exact: ok
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lead-1', 'X', '{}', NULL, 6)$$);   -- exact: stale
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lead-1', 'X', '{}', NULL, 99)$$);  -- exact: ahead
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lead-1', 'X', '{}', NULL, -1)$$);  -- no stream
SELECT * FROM evstore.append_event('lead-1', 'X', '{}', NULL, -4);        -- exists: ok
SELECT * FROM evstore.append_event('lead-1', 'X', '{}', NULL, -2);        -- any
SELECT * FROM evstore.append_event('lead-1', 'X', '{}');                  -- any (NULL)
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('new-1', 'X', '{}', NULL, -4)$$);   -- exists on missing stream
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('new-1', 'X', '{}', NULL, 0)$$);    -- exact on missing stream
SELECT * FROM evstore.append_event('new-1', 'X', '{}', NULL, -1);         -- no stream: ok
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lead-1', 'X', '{}', NULL, -3)$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lead-1', 'X', '{}', NULL, -5)$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('lead-1', '[{"type":"X","data":1}]', -100)$$);
SELECT evstore.stream_version('lead-1'), evstore.stream_version('new-1'), evstore.stream_version('nothing');

-- a failed append writes nothing (the batch is atomic)
SELECT count(*) AS before FROM evstore.events \gset
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('batch-1', '[{"type":"A","data":1},{"type":"B","data":2},{"type":""}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('batch-1', '[{"type":"A","data":1},{"type":"B"}]')$$);
SELECT count(*) = :before AS nothing_written FROM evstore.events;
SELECT evstore.stream_version('batch-1');

-- an append inside a transaction that rolls back leaves no trace but a gap in positions
BEGIN;
SELECT stream_version FROM evstore.append_event('rolled-1', 'X', '{}');
ROLLBACK;
SELECT evstore.stream_version('rolled-1'), count(*) FROM evstore.streams WHERE stream_id = 'rolled-1';

-- several appends to one stream in one transaction and in one statement
BEGIN;
SELECT stream_version FROM evstore.append_event('multi-1', 'A', '{}', NULL, -1);
SELECT stream_version FROM evstore.append_event('multi-1', 'B', '{}', NULL, 0);
SELECT (evstore.append_event('multi-1', 'C', to_jsonb(i))).stream_version FROM generate_series(1, 3) i;
COMMIT;
SELECT string_agg(event_type || ':' || stream_version, ' ' ORDER BY stream_version) FROM evstore.read_stream('multi-1');

-- event ids: given ids are kept, generated ids are version 7 and time-ordered
SELECT * FROM evstore.append_event('ids-1', 'A', '{}', NULL, NULL, 'a81bc81b-dead-4e5d-abff-90865d1e13b1');
SELECT event_id FROM evstore.read_stream('ids-1');
SELECT * FROM evstore.append_events('ids-2', '[{"type":"A","data":1},{"type":"B","data":2},{"type":"C","data":3}]');
SELECT bool_and(substr(event_id::text, 15, 1) = '7') AS v7,
       bool_and(substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS variant,
       array_agg(event_id ORDER BY stream_version) = array_agg(event_id ORDER BY event_id) AS ordered
FROM evstore.read_stream('ids-2');
SELECT abs(extract(epoch FROM now()) * 1000 -
           ('x' || replace(substr(evstore.uuid_generate_v7()::text, 1, 13), '-', ''))::bit(48)::bigint) < 60000 AS v7_time_is_now;

-- idempotent retries: same ids, same stream, same versions => original result, nothing written
SELECT * FROM evstore.append_events('idem-1', '[
  {"type":"A","data":1,"id":"00000000-0000-7000-8000-000000000001"},
  {"type":"B","data":2,"id":"00000000-0000-7000-8000-000000000002"}]', -1);
SELECT count(*) AS before FROM evstore.events \gset
SELECT * FROM evstore.append_events('idem-1', '[
  {"type":"A","data":1,"id":"00000000-0000-7000-8000-000000000001"},
  {"type":"B","data":2,"id":"00000000-0000-7000-8000-000000000002"}]', -1);
SELECT * FROM evstore.append_events('idem-1', '[
  {"type":"A","data":1,"id":"00000000-0000-7000-8000-000000000001"},
  {"type":"B","data":2,"id":"00000000-0000-7000-8000-000000000002"}]', 5);
SELECT * FROM evstore.append_event('idem-1', 'B', '2', NULL, NULL, '00000000-0000-7000-8000-000000000002');
SELECT count(*) = :before AS nothing_written FROM evstore.events;
-- the same id in another stream, or in a different batch shape: ES003
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('idem-2', 'A', '1', NULL, NULL, '00000000-0000-7000-8000-000000000001')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('idem-1', '[
  {"type":"A","data":1,"id":"00000000-0000-7000-8000-000000000001"},
  {"type":"C","data":3,"id":"00000000-0000-7000-8000-000000000003"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('idem-1', '[
  {"type":"C","data":3,"id":"00000000-0000-7000-8000-000000000003"},
  {"type":"A","data":1,"id":"00000000-0000-7000-8000-000000000001"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('idem-3', '[
  {"type":"C","data":3,"id":"00000000-0000-7000-8000-000000000009"},
  {"type":"D","data":4,"id":"00000000-0000-7000-8000-000000000009"}]')$$);
SELECT count(*) = :before AS nothing_written FROM evstore.events;

-- append_events accepts any JSON as data, metadata objects or null, ids or null
SELECT * FROM evstore.append_events('shapes-1', '[
  {"type":"S","data":"text"}, {"type":"N","data":42}, {"type":"Z","data":null},
  {"type":"A","data":[1,[2]]}, {"type":"M","data":{},"metadata":null,"id":null},
  {"type":"U","data":{"k":"ü ✓"},"metadata":{"correlation_id":"c"}}]');
SELECT stream_version, event_type, data, metadata FROM evstore.read_stream('shapes-1');

-- like any DML, an append keeps its table locks until the transaction ends
-- (so DDL on the store waits for appends in flight)
BEGIN;
SELECT stream_version FROM evstore.append_event('locks-1', 'T', '{}');
SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE l.pid = pg_backend_pid() AND c.relname IN ('events', 'streams') ORDER BY 1;
COMMIT;
